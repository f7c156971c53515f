"""A real HTTP receiver for outgoing deliveries: records each request, answers as told."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """`Receiver()` listens on 127.0.0.1; `answers` queues (status, headers) for the next requests
    (then 200). `stop()` and `start()` take it away and bring it back on the same port."""

    def __init__(self, port: int = 0):
        self.requests: list[dict] = []
        self.answers: deque = deque()
        self.lock = threading.Lock()
        self.port = port
        self.start()

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"at": time.monotonic(), "path": self.path, "body": body,
                                              "headers": {k.lower(): v for k, v in self.headers.items()}})
                    status, headers = receiver.answers.popleft() if receiver.answers else (200, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                answer = b"ok" if status < 300 else b"not now"
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def wait(self, count: int, seconds: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + seconds
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.requests) >= count, f"{len(self.requests)} of {count} deliveries arrived"
        return self.requests

    def payloads(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]
