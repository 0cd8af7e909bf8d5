"""The one guarded fetcher for users' URLs (campaign and step images; webhook endpoints' POSTs).

A URL typed by a tenant must never reach the server's own network: every address a name resolves
to is checked before connecting (and the connection goes to that checked address, so a second DNS
answer cannot swap it), and again for every redirect. Size and total time are capped: the
deadline covers the whole fetch, redirects included, however slowly the server drips bytes.
Errors say what to fix without telling which private ports answered."""
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

MAX_URL_LENGTH = 2048
MAX_BYTES = 10 * 1024 * 1024
TOTAL_SECONDS = 15.0
MAX_REDIRECTS = 3
_REDIRECTS = {301, 302, 303, 307, 308}


class FetchError(Exception):
    """The URL cannot be used; the message says why, for the person who typed it."""


# Not public, though Python's is_global (3.11) says so: IETF protocol assignments, the NAT64
# local-use prefix, documentation addresses.
_NOT_PUBLIC = [ipaddress.ip_network(n) for n in ("192.0.0.0/24", "64:ff9b:1::/48", "2001:db8::/32")]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(ip):
    """True for an address on the public internet: not loopback, private, link-local (cloud
    metadata), shared (carrier NAT), multicast, reserved or unspecified — nor an IPv6 address
    carrying such an IPv4 address (mapped, 6to4, NAT64)."""
    ip = ipaddress.ip_address(ip)
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            return is_public_address(embedded)
    return ip.is_global and not ip.is_multicast and not any(ip in net for net in _NOT_PUBLIC)


def check_url(url, what="image URL"):
    """The URL's parts when it is an http(s) URL we may try; FetchError otherwise."""
    if not isinstance(url, str) or not url:
        raise FetchError(f"the {what} is empty")
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(f"the {what} is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"the {what} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"the {what} must start with http:// or https:// and name a host")
    if parts.username is not None or parts.password is not None:
        raise FetchError(f"the {what} must not carry a user name or password")
    if any(ch in url for ch in "\r\n\t "):
        raise FetchError(f"the {what} must not contain spaces or line breaks")
    return parts, port


def resolve(host, port, allowed=is_public_address):
    """The address to connect to: the first one `host` resolves to, if every one is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"the host {host[:100]} does not resolve") from None
    addresses = [info[4][0] for info in infos]
    if not addresses or not all(allowed(a) for a in addresses):
        raise FetchError(f"the host {host[:100]} is not a public internet address")
    return addresses[0]


def _connection(parts, port, address, seconds):
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=seconds,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=seconds)
    # Connect to the checked address; Host header and TLS name stay the URL's host.
    conn._create_connection = lambda _addr, timeout=None, source_address=None: \
        socket.create_connection((address, port), timeout)
    return conn


def _cut(conn):
    """At the deadline: end whatever the connection is waiting for."""
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@contextmanager
def _guarded(parts, port, deadline, allowed):
    """A connection to the checked address of the URL's host, cut at the deadline."""
    address = resolve(parts.hostname, port, allowed)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    conn = _connection(parts, port, address, remaining)
    watchdog = threading.Timer(remaining, _cut, [conn])
    watchdog.daemon = True
    watchdog.start()
    try:
        yield conn
    finally:
        watchdog.cancel()
        conn.close()


def _target(parts):
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _get(url, deadline, max_bytes, allowed):
    """One request: (None, location) for a redirect, (body, None) for a 200."""
    parts, port = check_url(url)
    with _guarded(parts, port, deadline, allowed) as conn:
        conn.request("GET", _target(parts), headers={"User-Agent": "wa-broadcast-media/1", "Accept": "image/*"})
        resp = conn.getresponse()
        if resp.status in _REDIRECTS:
            location = resp.getheader("Location")
            if not location:
                raise FetchError(f"the server answered HTTP {resp.status} without a Location")
            return None, urljoin(url, location)
        if resp.status != 200:
            raise FetchError(f"the server answered HTTP {resp.status}")
        declared = resp.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"the image is larger than {max_bytes // (1024 * 1024)} MB")
        body = bytearray()
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(f"the image is larger than {max_bytes // (1024 * 1024)} MB")
            if time.monotonic() >= deadline:
                raise TimeoutError
        if time.monotonic() >= deadline:   # the watchdog cut it: an end of file that is no end
            raise TimeoutError
        return bytes(body), None


def fetch(url, *, max_bytes=MAX_BYTES, seconds=TOTAL_SECONDS, deadline=None, allowed=is_public_address):
    """The body behind an http(s) URL, following at most MAX_REDIRECTS redirects, each target
    checked like the first. `deadline` (time.monotonic()) bounds several fetches together."""
    deadline = min(deadline or float("inf"), time.monotonic() + seconds)
    host = None
    try:
        for _ in range(MAX_REDIRECTS + 1):
            host = check_url(url)[0].hostname
            body, location = _get(url, deadline, max_bytes, allowed)
            if body is not None:
                return body
            url = location
    except (OSError, http.client.HTTPException):
        # One message for refused, reset, silent, slow and TLS failures alike: which ports answer
        # how is nobody's business.
        raise FetchError(f"the image at {host} could not be downloaded "
                         f"(no complete answer within {seconds:g} s)") from None
    raise FetchError(f"the image URL redirects more than {MAX_REDIRECTS} times")


def post(url, body, headers, *, seconds=10.0, allowed=is_public_address):
    """POSTs `body` (bytes) to an http(s) URL, checked like fetch's; returns the HTTP status.
    Redirects are not followed (a 3xx is the answer). FetchError when no answer came in time."""
    deadline = time.monotonic() + seconds
    parts, port = check_url(url, "endpoint URL")
    try:
        with _guarded(parts, port, deadline, allowed) as conn:
            conn.request("POST", _target(parts), body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(4096)   # the answer's body is not ours to keep
            return resp.status
    except (OSError, http.client.HTTPException):
        raise FetchError(f"{parts.hostname} gave no complete answer within {seconds:g} s") from None
