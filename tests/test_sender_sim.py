"""The simulated WhatsApp on its own: deterministic under a seed, its record survives the process,
and every lifecycle event can be scripted."""
import io
import queue

import pytest
from PIL import Image

from sender.transport.base import (Connected, ConnectFailed, DeviceSession, IncomingMessage, LoggedOut, NotSent,
                                   OutgoingMessage, Paired, QRCode, Receipt, SendError, StreamReplaced, TemporaryBan)
from sender.transport.sim import SimConfig, SimNetwork, SimTransport


def run_sends(tmp_path, seed, n=200):
    events = queue.SimpleQueue()
    sim = SimTransport(events.put, SimConfig(seed=seed, failure_rate=0.2, receipts=False, store_dir=tmp_path))
    outcomes = []
    try:
        for device_id in (1, 2):
            sim.start(DeviceSession(device_id, jid=f"j{device_id}"))
        wait_connected(events, 2)
        for i in range(n):
            try:
                outcomes.append(sim.send(OutgoingMessage(i, 1 + i % 2, "60123456789", f"m{i}")).wa_message_id)
            except SendError as exc:
                outcomes.append(str(exc))
    finally:
        sim.close()
    return outcomes


def wait_connected(events, n):
    got = 0
    while got < n:
        if isinstance(events.get(timeout=20), Connected):
            got += 1


def test_same_seed_same_story(tmp_path):
    a = run_sends(tmp_path / "a", seed=42)
    b = run_sends(tmp_path / "b", seed=42)
    c = run_sends(tmp_path / "c", seed=43)
    assert a == b and a != c
    assert 0.1 < sum(o == "simulated network failure" for o in a) / len(a) < 0.3


def test_the_record_is_on_disk_before_send_returns(tmp_path):
    events = queue.SimpleQueue()
    sim = SimTransport(events.put, SimConfig(receipts=False, store_dir=tmp_path))
    sim.start(DeviceSession(7, jid="j7"))
    wait_connected(events, 1)
    sim.send(OutgoingMessage(99, 7, "60123456789", "hello"))
    # Read by another reader while the transport is still open (as after a crash).
    (rec,) = SimNetwork.received(tmp_path)
    assert (rec["message_id"], rec["device_id"], rec["to"], rec["text"]) == (99, 7, "60123456789", "hello")
    sim.close()


def test_scripted_lifecycle(tmp_path):
    events = queue.SimpleQueue()
    cfg = SimConfig(store_dir=tmp_path, qr_every_s=0.05, qr_codes=2, delivered_after_s=0.01, read_rate=1.0,
                    read_after_s=0.01, reply_rate=1.0, reply_after_s=0.01)
    sim = SimTransport(events.put, cfg)

    def next_of(kind):
        while True:
            ev = events.get(timeout=20)
            if isinstance(ev, kind):
                return ev

    sim.start(DeviceSession(1))                      # no session: pairing by QR
    assert next_of(QRCode).code.startswith("2@")
    assert isinstance(next_of(ConnectFailed), ConnectFailed)   # nobody scanned: pairing times out
    sim.start(DeviceSession(1))
    next_of(QRCode)
    jid = sim.scan(1, phone="60111222333")
    assert next_of(Paired).jid == jid
    next_of(Connected)
    sim.send(OutgoingMessage(1, 1, "60199999999", "hi"))
    kinds = {next_of(Receipt).kind, next_of(Receipt).kind}
    assert kinds == {"delivered", "read"}
    sim.ban(1, seconds=0.05)
    assert isinstance(next_of(TemporaryBan), TemporaryBan)
    with pytest.raises(NotSent):
        sim.send(OutgoingMessage(2, 1, "60199999999", "while banned"))
    next_of(Connected)                                # the ban expired
    sim.replace_stream(1)
    next_of(StreamReplaced)
    sim.reconnect(1)
    next_of(Connected)
    sim.remote_logout(1)
    next_of(LoggedOut)
    assert sim.state(1) == "stopped"
    sim.close()


def test_contacts_answer_some_messages_with_text_or_a_photo(tmp_path):
    events = queue.SimpleQueue()
    sim = SimTransport(events.put, SimConfig(store_dir=tmp_path, delivered_after_s=0.01, read_rate=0.0,
                                             reply_rate=1.0, reply_after_s=0.01))
    sim.start(DeviceSession(5, jid="j5"))
    wait_connected(events, 1)
    for n in range(40):
        sim.send(OutgoingMessage(n, 5, f"601300000{n:02d}", "offer"))
    replies = []
    while len(replies) < 40:
        ev = events.get(timeout=20)
        if isinstance(ev, IncomingMessage):
            replies.append(ev)
    sim.close()
    assert {r.sender_phone for r in replies} == {f"601300000{n:02d}" for n in range(40)}
    photos = [r for r in replies if r.message_type == "image"]
    assert 0 < len(photos) < 40 and all(r.thumbnail is None for r in replies if r.message_type == "text")
    for p in photos:   # a real JPEG preview, small like WhatsApp's
        assert p.thumbnail[:2] == b"\xff\xd8" and len(p.thumbnail) < 10_000
        assert Image.open(io.BytesIO(p.thumbnail)).size == (96, 72)
