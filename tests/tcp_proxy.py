"""A TCP proxy that tests put between a client and a server to make faults.

    proxy = TcpProxy("127.0.0.1", 5432)     # listens on 127.0.0.1:<proxy.port>
    ...connect through proxy.port...
    proxy.cut()       # every current connection reset in both directions; new ones reset at once
    proxy.restore()   # new connections pass again
    proxy.hold()      # nothing moves: current connections stall, new ones are accepted and left waiting
    proxy.restore()   # held bytes and waiting connections go through
    proxy.close()

One plain thread runs a selectors loop over every socket, so the proxy works
in the test process whatever the other side is (a gevent gunicorn, psycopg,
a browser). The control methods run their change on that thread and return
once it is done: after `cut()` returns, every connection that existed is
closed. `close()` ends the thread and closes every socket it opened.

A cut resets (RST) both sides, as a dead network path or a killed server
would look to a client, and the server side sees its client go, so a
PostgreSQL backend ends. A new connection during a cut is accepted by the
kernel and reset at once, which clients see as "server closed the
connection" (the listening port stays ours, so `restore()` cannot lose it).
"""
from __future__ import annotations

import collections
import errno
import selectors
import socket
import struct
import threading

BUFFER_LIMIT = 256 * 1024  # bytes buffered per direction before the proxy stops reading
CHUNK = 64 * 1024
PASS, CUT, HOLD, CLOSED = "pass", "cut", "hold", "closed"


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Link:
    """One client connection and its upstream connection, with a buffer per direction."""

    def __init__(self, client: socket.socket):
        self.client = client
        self.upstream: socket.socket | None = None
        self.connected = False
        self.buffers = {"client": bytearray(), "upstream": bytearray()}  # bytes waiting to be written to each side
        self.eof = {"client": False, "upstream": False}  # that side has sent FIN
        self.shut = {"client": False, "upstream": False}  # we have sent FIN to that side
        self.registered: dict[socket.socket, int] = {}

    def side(self, sock: socket.socket) -> str:
        return "client" if sock is self.client else "upstream"

    def sock(self, side: str) -> socket.socket | None:
        return self.client if side == "client" else self.upstream

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to (target_host, target_port) until told otherwise."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1"):
        self.target = (target_host, int(target_port))
        family, _, _, _, address = socket.getaddrinfo(target_host, int(target_port), type=socket.SOCK_STREAM)[0]
        self._target_family, self._target_address = family, address
        self._listener = socket.create_server((host, 0), backlog=128)
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._commands: collections.deque = collections.deque()
        self._mode = PASS
        self._links: set[_Link] = set()
        self._accepted = 0
        self._forwarded = 0
        self._closed = False
        self.error: BaseException | None = None  # what ended the proxy's thread, if it crashed
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name=f"TcpProxy:{self.port}", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- control

    def cut(self) -> int:
        """Reset every current connection in both directions, and every new
        one until `restore()`. Returns how many connections were cut."""
        return self._call(self._do_cut)

    def hold(self) -> None:
        """Pass no bytes: current connections stall (their bytes wait in the
        kernel), new ones are accepted and wait unconnected, until `restore()`."""
        self._call(self._set_mode, HOLD)

    def restore(self) -> None:
        """Pass traffic again (after a hold, what waited goes through)."""
        self._call(self._set_mode, PASS)

    def stats(self) -> dict:
        """A snapshot taken on the proxy's thread: `active` connections,
        `accepted` in total, bytes `forwarded` (taken in from either side to
        pass on) in total, and the `mode`. It waits behind every command
        given before it."""
        return self._call(lambda: {"active": len(self._links), "accepted": self._accepted,
                                   "forwarded": self._forwarded, "mode": self._mode})

    def close(self) -> None:
        """Reset every connection, stop listening and end the thread."""
        if self._closed:
            return
        if self._thread.is_alive():
            self._call(self._do_close)
            self._thread.join(10)
        self._closed = True
        if self.error is not None:
            raise RuntimeError("the proxy's thread failed") from self.error

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn, *args):
        if self._closed or not self._thread.is_alive():
            raise RuntimeError("the proxy is closed") from self.error
        done, outcome = threading.Event(), {}
        self._commands.append((fn, args, done, outcome))
        self._wake_write.send(b"\0")
        if not done.wait(10):
            raise RuntimeError("the proxy's thread did not answer")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    # ------------------------------------------------------ the proxy thread

    def _run(self) -> None:
        try:
            while self._mode != CLOSED:
                for key, events in self._selector.select():
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._run_commands()
                    elif key.fileobj in key.data.registered:  # still open after earlier events of this round
                        self._on_ready(key.data, key.fileobj, events)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._shutdown()

    def _run_commands(self) -> None:
        try:
            while self._wake_read.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._commands:
            fn, args, done, outcome = self._commands.popleft()
            try:
                outcome["value"] = fn(*args)
            except Exception as exc:  # handed to the caller
                outcome["error"] = exc
            done.set()

    def _do_cut(self) -> int:
        links = list(self._links)
        for link in links:
            self._drop(link)
        self._mode = CUT
        return len(links)

    def _set_mode(self, mode: str) -> None:
        self._mode = mode
        for link in list(self._links):
            if mode == PASS and link.upstream is None:
                self._connect_upstream(link)
            else:
                self._update(link)

    def _do_close(self) -> None:
        for link in list(self._links):
            self._drop(link)
        self._mode = CLOSED

    def _shutdown(self) -> None:
        for link in list(self._links):
            self._drop(link)
        self._selector.close()
        self._listener.close()
        self._wake_read.close()
        self._wake_write.close()
        # Anyone still waiting on a command gets an answer.
        while self._commands:
            _, _, done, outcome = self._commands.popleft()
            outcome["error"] = RuntimeError("the proxy is closed")
            done.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up before we took it
            except OSError as exc:  # out of descriptors, say: leave it in the backlog
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            self._accepted += 1
            if self._mode in (CUT, CLOSED):
                _reset(client)
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client)
            self._links.add(link)
            if self._mode == PASS:
                self._connect_upstream(link)
            else:
                self._update(link)

    def _connect_upstream(self, link: _Link) -> None:
        upstream = socket.socket(self._target_family, socket.SOCK_STREAM)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.upstream = upstream
        if upstream.connect_ex(self._target_address) not in (0, errno.EINPROGRESS):
            self._drop(link)
            return
        self._update(link)

    def _on_ready(self, link: _Link, sock: socket.socket, events: int) -> None:
        if sock is link.upstream and not link.connected:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._drop(link)  # the target refused: so do we
                return
            link.connected = True
        if self._mode != PASS:
            self._update(link)
            return
        side = link.side(sock)
        try:
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(CHUNK)
                except (BlockingIOError, InterruptedError):
                    data = None
                if data:
                    link.buffers["upstream" if side == "client" else "client"] += data
                    self._forwarded += len(data)
                elif data == b"":
                    link.eof[side] = True
            self._flush(link, "client")
            self._flush(link, "upstream")
        except OSError:
            self._drop(link)  # reset or broken pipe on one side: end both
            return
        if link.shut["client"] and link.shut["upstream"]:
            self._close_link(link)
        else:
            self._update(link)

    def _flush(self, link: _Link, end: str) -> None:
        """Write what waits for `end`, then pass on a FIN from the other side
        once every byte before it is through."""
        sock = link.sock(end)
        if sock is None or (end == "upstream" and not link.connected):
            return
        buffer = link.buffers[end]
        if buffer:
            try:
                del buffer[:sock.send(buffer)]
            except (BlockingIOError, InterruptedError):
                return
        source = "upstream" if end == "client" else "client"
        if link.eof[source] and not buffer and not link.shut[end]:
            sock.shutdown(socket.SHUT_WR)
            link.shut[end] = True

    def _update(self, link: _Link) -> None:
        """Register each socket of `link` for what it can do now."""
        for sock in link.sockets():
            side = link.side(sock)
            other = "upstream" if side == "client" else "client"
            wanted = 0
            if sock is link.upstream and not link.connected:
                wanted = selectors.EVENT_WRITE  # the connect's outcome
            elif self._mode == PASS:
                # The client is read once there is somewhere to send its bytes.
                if link.connected and not link.eof[side] and len(link.buffers[other]) < BUFFER_LIMIT:
                    wanted |= selectors.EVENT_READ
                if link.buffers[side]:
                    wanted |= selectors.EVENT_WRITE
            current = link.registered.get(sock, 0)
            if wanted == current:
                continue
            if not wanted:
                self._selector.unregister(sock)
                del link.registered[sock]
            elif current:
                self._selector.modify(sock, wanted, link)
                link.registered[sock] = wanted
            else:
                self._selector.register(sock, wanted, link)
                link.registered[sock] = wanted

    def _unregister(self, link: _Link) -> None:
        for sock in list(link.registered):
            self._selector.unregister(sock)
        link.registered.clear()

    def _drop(self, link: _Link) -> None:
        """Reset both sides of a connection."""
        self._unregister(link)
        for sock in link.sockets():
            _reset(sock)
        self._links.discard(link)

    def _close_link(self, link: _Link) -> None:
        """Both sides said FIN and every byte went through: an ordinary close."""
        self._unregister(link)
        for sock in link.sockets():
            sock.close()
        self._links.discard(link)
