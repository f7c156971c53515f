"""The SSRF guard: rule URLs that reach this machine, the private network or
a metadata service are refused at resolution, unless the operator allows them.

A connect guard fails the test if any socket to an address off this machine
is ever opened: refusals must happen before a connection, never after.
"""
from __future__ import annotations

import ipaddress
import socket

import pytest

from activityweb.rules.egress import AllowList, Refused, check_url, post
from receiver import Receiver

_connect = socket.socket.connect


@pytest.fixture(autouse=True)
def connect_guard(monkeypatch):
    opened = []

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(host).is_loopback:
            pytest.fail(f"a connection to {address} was opened")
        opened.append(address)
        return _connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return opened


NOTHING = AllowList()


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://10.0.0.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://localhost:8080/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://192.168.1.10/", "private"),
    ("http://100.100.100.200/", "metadata"),
    ("http://0.0.0.0/", "private"),
    ("http://240.0.0.1/", "private|not a public address"),
])
def test_private_addresses_are_refused_at_resolution(url, why, connect_guard):
    with pytest.raises(Refused, match=why):
        check_url(url, NOTHING)
    result = post(url, b"{}", {}, NOTHING)
    assert not result.ok and result.error.startswith("refused:")
    assert connect_guard == []


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "http://user:pw@example.com/", "nonsense"])
def test_what_is_not_an_http_url_is_refused(url):
    with pytest.raises(Refused):
        check_url(url, NOTHING)


def test_the_operator_allow_list_lets_named_hosts_and_networks_through():
    assert check_url("http://localhost:9/hook", AllowList.parse(["localhost"]))[2] == "localhost"
    assert check_url("http://10.0.0.1/hook", AllowList.parse(["10.0.0.0/8"]))[3] == "10.0.0.1"
    with pytest.raises(Refused):
        check_url("http://10.0.0.1/hook", AllowList.parse(["192.168.0.0/16", "localhost"]))


def test_a_redirect_is_not_followed():
    receiver = Receiver()
    try:
        receiver.answers.append((302, {"Location": "http://169.254.169.254/latest/meta-data/"}))
        result = post(receiver.url, b"{}", {}, AllowList.parse(["127.0.0.1"]))
    finally:
        receiver.stop()
    assert not result.ok and result.status == 302 and "not followed" in result.error
    assert len(receiver.requests) == 1


def test_the_answer_is_read_up_to_a_cap():
    import http.server
    import threading

    class Big(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024 * 1024))
            self.end_headers()
            try:
                self.wfile.write(b"x" * (10 * 1024 * 1024))
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = post(f"http://127.0.0.1:{server.server_port}/", b"{}", {}, AllowList.parse(["127.0.0.1"]))
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok and len(result.body) == 64 * 1024
