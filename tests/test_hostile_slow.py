"""Slow clients against a real server: a raw-body upload trickling in and an export read by
nobody must not hold pooled database connections (the pool is 10; a few slow clients would
otherwise stall every page)."""
import socket
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import make_device, make_user
from tests.liveserver import DEADLINE, serving
from tests.webutil import csrf_token, login


@pytest.fixture(scope="module")
def account(app, module_db_url):
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        uid = make_user(c)
        email = c.execute("SELECT email FROM users WHERE id = %s", [uid]).fetchone()["email"]
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone, niche)
                     SELECT %s, %s, repeat('n', 200), (60100000000 + g)::text, repeat('x', 800)
                       FROM generate_series(1, 20000) g""", [uid, make_device(c, uid)])
    client = app.test_client()
    assert login(client, email).status_code == 302
    token = csrf_token(client, "/dashboard")
    return {"cookie": client.get_cookie("session").value, "token": token}


def in_use(app):
    stats = app.extensions["db_pool"].get_stats()
    return stats["pool_size"] - stats["pool_available"]


def requests_made(app):
    return app.extensions["db_pool"].get_stats().get("requests_num", 0)


def wait_for(condition, what):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def raw_request(host, head, receive_buffer=None):
    hostname, port = host.split(":")
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(DEADLINE)
    sock.connect((hostname, int(port)))
    sock.sendall(head.encode())
    return sock


def test_a_trickling_upload_holds_no_database_connection(app, account):
    body = b"name,phone\n" + b"".join(b"L%d,6019%07d\n" % (n, n) for n in range(200))
    with serving(app) as host:
        before = requests_made(app)
        sock = raw_request(host, f"POST /api/leads/import?filename=slow.csv HTTP/1.1\r\nHost: {host}\r\n"
                                 f"Cookie: session={account['cookie']}\r\nX-CSRFToken: {account['token']}\r\n"
                                 f"Content-Type: text/csv\r\nContent-Length: {len(body)}\r\n\r\n")
        try:
            sent = 100
            sock.sendall(body[:sent])
            wait_for(lambda: requests_made(app) > before and in_use(app) == 0, "the request to be signed in")
            watch_until = time.monotonic() + 1.0          # a byte every 50 ms: nothing may be held meanwhile
            while time.monotonic() < watch_until:
                assert in_use(app) == 0
                sock.sendall(body[sent:sent + 1])
                sent += 1
                time.sleep(0.05)
            sock.sendall(body[sent:])
            assert sock.recv(200).startswith(b"HTTP/1.1 202")
        finally:
            sock.close()


def test_an_export_nobody_reads_gives_its_connection_back(app, account):
    with serving(app) as host:
        before = requests_made(app)
        sock = raw_request(host, f"GET /leads/export.csv HTTP/1.1\r\nHost: {host}\r\n"
                                 f"Cookie: session={account['cookie']}\r\n\r\n", receive_buffer=4096)
        try:
            wait_for(lambda: requests_made(app) >= before + 2, "the export to start")
            wait_for(lambda: in_use(app) == 0, "the export's connection back in the pool")   # 20 MB unread
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        finally:
            sock.close()
