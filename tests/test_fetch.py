"""The guarded fetcher (SSRF). The address filter is tested as a function on private and
link-local addresses; real fetches and redirects go only to a local server on 127.0.0.1, and
every connection the fetcher opens is recorded to prove nothing else was ever contacted."""
import socket
import ssl
import subprocess
import time

import pytest

from common import fetch as guarded
from common.fetch import FetchError, fetch, is_public_address
from tests.local_http import local_http

ONLY_LOCAL = "127.0.0.1".__eq__     # the tests' policy: our local server and nothing else


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "10.0.0.1", "172.16.5.4", "192.168.1.1",
    "169.254.169.254", "fe80::1", "fc00::1", "fd12:3456::1", "100.64.0.1", "192.0.0.8", "198.18.0.1",
    "224.0.0.1", "239.255.255.250", "255.255.255.255", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "::ffff:10.1.2.3", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2002:a00:1::1", "2001:db8::1",
])
def test_private_loopback_link_local_and_reserved_addresses_are_not_public(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "93.184.216.34"])
def test_public_addresses_are(address):
    assert is_public_address(address)          # a function call: nothing is contacted


def _png(h):
    h.send_response(200)
    h.send_header("Content-Length", "4")
    h.end_headers()
    h.wfile.write(b"\x89PNG")


def _redirect(to):
    def handler(h):
        h.send_response(302)
        h.send_header("Location", to(h))
        h.end_headers()
    return handler


def _drip_body(h):
    h.send_response(200)
    h.end_headers()
    for _ in range(200):                      # 1 byte per 50 ms: each read is quick, the whole is not
        h.wfile.write(b"x")
        h.wfile.flush()
        time.sleep(0.05)


def _drip_headers(h):
    h.wfile.write(b"HTTP/1.1 200 OK\r\n")
    for n in range(200):
        h.wfile.write(f"X-{n}: y\r\n".encode())
        h.wfile.flush()
        time.sleep(0.05)


def _big(h):
    h.send_response(200)
    h.end_headers()
    for _ in range(40):
        h.wfile.write(b"x" * 65536)


ROUTES = {
    "/img.png": _png,
    "/to-metadata": _redirect(lambda h: "http://169.254.169.254/latest/meta-data/"),
    "/to-private": _redirect(lambda h: "http://10.0.0.1:8080/x"),
    "/to-image": _redirect(lambda h: "/img.png"),
    "/loop": _redirect(lambda h: "/loop"),
    "/drip-body": _drip_body,
    "/drip-headers": _drip_headers,
    "/big": _big,
}


@pytest.fixture(scope="module")
def server():
    with local_http(ROUTES) as srv:
        yield srv


@pytest.fixture
def connections(monkeypatch):
    """Every address the fetcher connects to."""
    seen = []
    real = socket.create_connection

    def recording(address, *args, **kw):
        seen.append(address)
        return real(address, *args, **kw)
    monkeypatch.setattr(guarded.socket, "create_connection", recording)
    return seen


def url(server, path):
    return f"http://127.0.0.1:{server.server_port}{path}"


def test_a_local_fetch_and_a_redirect_work_under_a_policy_that_allows_it(server, connections):
    assert fetch(url(server, "/img.png"), allowed=ONLY_LOCAL) == b"\x89PNG"
    assert fetch(url(server, "/to-image"), allowed=ONLY_LOCAL) == b"\x89PNG"
    assert {a for a, _ in connections} == {"127.0.0.1"}


@pytest.mark.parametrize("path, message", [
    ("/to-metadata", "169.254.169.254 is not a public internet address"),
    ("/to-private", "10.0.0.1 is not a public internet address"),
])
def test_a_redirect_to_a_private_address_is_refused_before_connecting(server, connections, path, message):
    with pytest.raises(FetchError, match=message):
        fetch(url(server, path), allowed=ONLY_LOCAL)
    assert {a for a, _ in connections} == {"127.0.0.1"}      # only the first hop was contacted


def test_the_public_only_policy_refuses_loopback_and_names_resolving_to_it(server, connections):
    before = len(server.paths)
    for target in (url(server, "/img.png"), f"http://localhost:{server.server_port}/img.png",
                   "http://[::1]:9/", "http://[::ffff:127.0.0.1]:9/"):
        with pytest.raises(FetchError, match="not a public internet address"):
            fetch(target)
    assert connections == [] and len(server.paths) == before


@pytest.mark.parametrize("target, message", [
    ("ftp://example.com/a.png", "must start with http"), ("file:///etc/passwd", "must start with http"),
    ("http://user:pw@example.com/a.png", "user name or password"), ("http:///nohost", "name a host"),
    ("http://example.com/" + "a" * 2100, "longer than 2048"), ("http://exa mple.com/", "spaces"),
    ("http://example.com:99999/", "not a valid URL"),
])
def test_urls_that_are_never_tried(connections, target, message):
    with pytest.raises(FetchError, match=message):
        fetch(target)
    assert connections == []


@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers"])
def test_a_slow_drip_ends_at_the_total_deadline_not_per_read(server, path):
    started = time.monotonic()
    with pytest.raises(FetchError, match="no complete answer within 0.5 s"):
        fetch(url(server, path), seconds=0.5, allowed=ONLY_LOCAL)
    assert time.monotonic() - started < 5


def test_size_cap_and_redirect_limit(server):
    with pytest.raises(FetchError, match="larger than 1 MB"):
        fetch(url(server, "/big"), max_bytes=1024 * 1024, allowed=ONLY_LOCAL)
    with pytest.raises(FetchError, match="redirects more than 3 times"):
        fetch(url(server, "/loop"), allowed=ONLY_LOCAL)


def test_a_closed_port_and_a_silent_one_give_the_same_message(server):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()                           # accepts, never answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))             # bound, not listening: refused
    try:
        messages = set()
        for port in (silent.getsockname()[1], closed.getsockname()[1]):
            with pytest.raises(FetchError) as caught:
                fetch(f"http://127.0.0.1:{port}/", seconds=0.5, allowed=ONLY_LOCAL)
            messages.add(str(caught.value).replace(str(port), "PORT"))
    finally:
        silent.close()
        closed.close()
    assert len(messages) == 1 and "refused" not in messages.pop().lower()


def test_https_verifies_the_certificate_against_the_url_host(tmp_path, monkeypatch):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=local",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with local_http({"/img.png": _png}) as srv:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
        target = f"https://127.0.0.1:{srv.server_port}/img.png"
        with pytest.raises(FetchError, match="could not be downloaded"):
            fetch(target, seconds=5, allowed=ONLY_LOCAL)             # self-signed: not trusted
        trusting = ssl.create_default_context(cafile=str(cert))
        monkeypatch.setattr(guarded.ssl, "create_default_context", lambda: trusting)
        assert fetch(target, seconds=5, allowed=ONLY_LOCAL) == b"\x89PNG"
