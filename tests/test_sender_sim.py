"""The simulated WhatsApp on its own: deterministic under a seed, its record survives the process,
and WhatsApp's rules hold at a scaled clock: QR codes rotate on WhatsApp's schedule and expire,
connections drop and come back, a burst to new contacts earns a reach-out timelock, sustained
overload a temporary ban, and so do new contacts' spam reports; receipts come as WhatsApp's do
(some at once, some never, some twice); contacts answer some messages, now and then with a photo,
from their number or their @lid identity. (The lifecycle against a sender is in test_transport_contract.py.)"""
import io
import queue
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from common.config import ROOT
from sender.transport.base import (PAIRING_WINDOW, Connected, DeviceSession, Disconnected, IncomingMessage, LoggedOut,
                                   NotSent, OutgoingMessage, PairingExpired, QRCode, ReachOutRefused, ReachOutTimelock,
                                   Receipt, SendError, TemporaryBan)
from sender.transport.sim import SimConfig, SimNetwork, SimTransport, lid_of


def next_of(events, kind, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        ev = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(ev, kind):
            return ev


@pytest.fixture
def make_sim(tmp_path):
    made = []

    def make(**config):
        events, emitted_at = queue.SimpleQueue(), {}

        def emit(event):
            emitted_at[event] = time.monotonic()   # when the sim sent it, however late a loaded test reads it
            events.put(event)
        sim = SimTransport(emit, SimConfig(**{"store_dir": tmp_path, "receipts": False, **config}))
        sim.emitted_at = emitted_at
        made.append(sim)
        return sim, events

    yield make
    for sim in made:
        sim.close()


def connected(sim, events, device_id=1):
    sim.start(DeviceSession(device_id, jid=f"j{device_id}"))
    next_of(events, Connected)


def send(sim, n, to, device_id=1):
    return sim.send(OutgoingMessage(n, device_id, to, f"m{n}"))


def run_sends(make_sim, store_dir, seed, n=200):
    """The outcomes of n sends on a network of its own (one that saw them before would remember them)."""
    sim, events = make_sim(seed=seed, failure_rate=0.2, store_dir=store_dir)
    outcomes = []
    for device_id in (1, 2):
        connected(sim, events, device_id)
    for i in range(n):
        try:
            outcomes.append(send(sim, i, "60123456789", 1 + i % 2).wa_message_id)
        except SendError as exc:
            outcomes.append(str(exc))
    return outcomes


def test_same_seed_same_story(make_sim, tmp_path):
    a, b, c = (run_sends(make_sim, tmp_path / f"network{n}", seed) for n, seed in enumerate((42, 42, 43)))
    assert a == b and a != c
    failures = [o for o in a if o in ("simulated network failure",   # before it left, or after: the answer lost
                                      "info query timed out: the message may have been delivered")]
    assert 0.1 < len(failures) / len(a) < 0.3 and len(set(failures)) == 2


ONE_SEND = """
import queue, sys, tempfile
from sender.transport.base import Connected, DeviceSession, OutgoingMessage
from sender.transport.sim import SimConfig, SimTransport
events = queue.SimpleQueue()
sim = SimTransport(events.put, SimConfig(store_dir=tempfile.mkdtemp(), rules=False, receipts=False))
sim.start(DeviceSession(1, jid="j1"))
while not isinstance(events.get(timeout=20), Connected):
    pass
print(sim.send(OutgoingMessage(1, 1, "60123456789", "hi")).wa_message_id)
sim.close()
"""


def test_message_ids_are_unique_across_the_processes_that_run_a_device():
    """A device moves between sender processes (a lease, a restart) and its seeded story starts
    again in each: WhatsApp's ids stay unique, or a receipt would mark another process's message
    and a reply be dropped as a repeat of another."""
    ids = {subprocess.run([sys.executable, "-c", ONE_SEND], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip() for _ in range(2)}
    assert len(ids) == 2 and all(i.startswith("SIM") for i in ids)


def test_the_record_is_on_disk_before_send_returns(make_sim, tmp_path):
    sim, events = make_sim()
    connected(sim, events, 7)
    send(sim, 99, "60123456789", 7)
    # Read by another reader while the transport is still open (as after a crash).
    (rec,) = SimNetwork.received(tmp_path)
    assert (rec["message_id"], rec["device_id"], rec["to"], rec["text"]) == (99, 7, "60123456789", "m99")


def test_qr_codes_rotate_on_whatsapps_schedule_then_expire(make_sim):
    sim, events = make_sim(time_scale=0.01)              # 60 s -> 0.6 s, 20 s -> 0.2 s
    sim.start(DeviceSession(1))
    shown = [next_of(events, QRCode) for _ in range(PAIRING_WINDOW.codes)] + [next_of(events, PairingExpired)]
    at = [sim.emitted_at[event] for event in shown]
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert len({qr.code for qr in shown[:-1]}) == PAIRING_WINDOW.codes
    assert gaps[0] >= 0.59 and all(g >= 0.19 for g in gaps[1:])   # never sooner than WhatsApp's schedule
    assert sim.state(1) == "stopped"


def test_nothing_can_be_scanned_before_the_first_qr_shows(make_sim):
    """A phone scans a code on screen: before the first QR of a pairing there is none."""
    sim, events = make_sim(qr_after_s=600)
    sim.start(DeviceSession(1))
    assert sim.state(1) == "pairing" and not sim.showing_code(1)
    with pytest.raises(ValueError, match="nothing to scan"):
        sim.scan(1)
    assert sim.pair_phone(1, "60123456789") and sim.showing_code(1)    # a phone code is on screen at once
    sim.scan(1, "60123456789")
    assert next_of(events, Connected) and sim.state(1) == "connected"


def test_a_connection_drops_and_comes_back_and_sends_meanwhile_are_not_sent(make_sim):
    sim, events = make_sim(drop_every_s=0.3, drop_for_s=(0.3, 0.4))
    connected(sim, events)
    next_of(events, Disconnected)
    with pytest.raises(NotSent):
        send(sim, 1, "60123456789")
    next_of(events, Connected)
    assert send(sim, 2, "60123456789").wa_message_id


def test_a_burst_to_new_contacts_earns_a_reach_out_timelock(make_sim):
    sim, events = make_sim(timelock_s=100, time_scale=0.001)   # a 0.1 s lock
    connected(sim, events)
    sim.reply(1, "60100000000", "hi")                    # a contact who wrote first is warm
    *contacts, last = [p for p in (f"6011{n:08d}" for n in range(100)) if sim.on_whatsapp(p)][:31]
    for n, phone in enumerate(contacts):
        send(sim, n, phone)
    with pytest.raises(SendError, match=r"reach-out timelock \(error 463\)") as refused:
        send(sim, 30, last)
    assert not isinstance(refused.value, NotSent)        # refused by WhatsApp: failed, never retried
    assert next_of(events, ReachOutTimelock).ends_at is None   # reported as through neonize: the 463 alone
    assert send(sim, 31, "60100000000") and send(sim, 32, contacts[1])   # warm contacts still get theirs
    time.sleep(0.1)
    assert send(sim, 33, last)                           # the lock ended


def test_sustained_overload_earns_a_temporary_ban(make_sim):
    sim, events = make_sim(time_scale=0.001)             # a one-hour ban: 3.6 s -> 3.6 ms
    connected(sim, events)
    for n in range(121):
        send(sim, n, "60123456789")
    ban = next_of(events, TemporaryBan)
    assert ban.code == "SEND_TO_TOO_MANY_PEOPLE"
    next_of(events, Connected)                           # back after the ban


def test_spam_reports_from_new_contacts_earn_a_temporary_ban(make_sim):
    """Contacts the device never talked with report some of its messages; enough reports within a
    day ban it ("too many people blocked you"). A contact who wrote first never reports."""
    sim, events = make_sim(report_rate=1.0, reports_to_ban=3, drop_every_s=1e9)     # no drop in the way
    connected(sim, events)
    for n in range(5):
        sim.reply(1, f"6010{n:08d}", "hi")               # warm: they wrote first
        send(sim, n, f"6010{n:08d}")
    cold = [p for p in (f"6011{n:08d}" for n in range(20)) if sim.on_whatsapp(p)][:3]
    send(sim, 10, cold[0])
    send(sim, 11, cold[1])
    assert sim.state(1) == "connected"                   # two reports: not yet
    send(sim, 12, cold[2])
    ban = next_of(events, TemporaryBan)
    assert ban.code == "BLOCKED_BY_USERS" and sim.state(1) == "banned"
    with pytest.raises(NotSent):
        send(sim, 13, cold[0])


def test_a_new_number_reaching_out_too_fast_in_its_first_day_is_banned(make_sim):
    """A number that joined WhatsApp within a day is banned once it messages more new contacts than
    WhatsApp lets new numbers (20 by default); contacts who wrote first do not count, and a number
    older than a day may message as many (up to the reach-out timelock)."""
    sim, events = make_sim(new_number_cold_limit=3, report_rate=0, drop_every_s=1e9)
    new, old = "60111000001", "60111000002"
    sim.joined_whatsapp(new)
    sim.joined_whatsapp(old, at=time.time() - 86400 - 60)
    for device_id, phone in ((1, new), (2, old)):
        sim.start(DeviceSession(device_id, jid=f"{phone}.0:1@s.whatsapp.net", phone=phone))
        next_of(events, Connected)
    cold = [p for p in (f"6013{n:08d}" for n in range(40)) if sim.on_whatsapp(p)]
    for n in range(5):
        sim.reply(1, f"6010{n:08d}", "hi")               # warm: they wrote first
        send(sim, n, f"6010{n:08d}")
    for n, phone in enumerate(cold[:3]):
        send(sim, 10 + n, phone)
    assert sim.state(1) == "connected"                   # three new contacts: as many as it may
    send(sim, 13, cold[3])                               # the fourth goes out, and the ban follows
    ban = next_of(events, TemporaryBan)
    assert (ban.device_id, ban.code, sim.state(1)) == (1, "SEND_TO_TOO_MANY_PEOPLE", "banned")
    assert ban.expires_at > datetime.now(timezone.utc) + timedelta(hours=23)
    with pytest.raises(NotSent):
        send(sim, 14, cold[4])
    for n, phone in enumerate(cold[:10]):                # the older number: no ban
        send(sim, 20 + n, phone, device_id=2)
    assert sim.state(2) == "connected"


def test_the_networks_new_numbers_are_known_to_every_process(tmp_path):
    """The soak registers its new numbers before it starts the senders: a network opened in another
    process after that knows when each joined."""
    SimNetwork.join(tmp_path, ["60111000003"], at=1000.0)
    net = SimNetwork(tmp_path)
    try:
        assert (net.joined("60111000003"), net.joined("60111000004")) == (1000.0, None)
    finally:
        net.close()


def test_whatsapp_remembers_a_number_whichever_process_runs_it(make_sim):
    """A device whose lease moves to another sender process meets what WhatsApp knows of its number:
    its ban until it ends, its reach-out timelock and warm contacts, its spam reports so far, its
    sessions removed on the phone."""
    first, first_events = make_sim(report_rate=1.0, reports_to_ban=3, drop_every_s=1e9)
    second, second_events = make_sim(report_rate=1.0, reports_to_ban=3, drop_every_s=1e9)
    cold = [p for p in (f"6014{n:08d}" for n in range(20)) if first.on_whatsapp(p)]

    def runs(sim, events, device_id):
        sim.start(DeviceSession(device_id, jid=f"6015000000{device_id}.0:1@s.whatsapp.net",
                                phone=f"6015000000{device_id}"))
        return next_of(events, (Connected, TemporaryBan, LoggedOut))

    for device_id in (1, 2, 3, 4):
        assert isinstance(runs(first, first_events, device_id), Connected)
    first.ban(1, 3600)
    banned_until = next_of(first_events, TemporaryBan).expires_at
    first.timelock(2)
    with pytest.raises(ReachOutRefused):
        send(first, 1, cold[0], device_id=2)
    send(first, 2, cold[1], device_id=3)                  # two spam reports of three
    send(first, 3, cold[2], device_id=3)
    first.remote_logout(4)
    for device_id in (1, 2, 3, 4):
        first.stop(device_id)                            # the leases move

    ban = runs(second, second_events, 1)
    assert isinstance(ban, TemporaryBan) and abs((ban.expires_at - banned_until).total_seconds()) < 5
    with pytest.raises(NotSent):
        send(second, 10, cold[3], device_id=1)
    assert isinstance(runs(second, second_events, 2), Connected)
    with pytest.raises(ReachOutRefused):
        send(second, 11, cold[4], device_id=2)           # still timelocked for new contacts
    assert isinstance(runs(second, second_events, 3), Connected)
    send(second, 12, cold[1], device_id=3)               # a contact it wrote to: no report
    assert second.state(3) == "connected"
    send(second, 13, cold[5], device_id=3)               # the third report
    assert next_of(second_events, TemporaryBan).code == "BLOCKED_BY_USERS"
    assert isinstance(runs(second, second_events, 4), LoggedOut)
    first.close()                                        # the process that let them go: no stale word on them
    third, third_events = make_sim(drop_every_s=1e9)
    assert runs(third, third_events, 3).code == "BLOCKED_BY_USERS"


def test_what_whatsapp_knows_of_a_number_outlives_a_process_that_dies(make_sim):
    """A sender process that dies, rather than letting its devices go, loses nothing WhatsApp keeps:
    the next process meets the spam reports so far, the contacts written to and those who wrote."""
    dying, dying_events = make_sim(report_rate=1.0, reports_to_ban=3, drop_every_s=1e9)
    nxt, nxt_events = make_sim(report_rate=1.0, reports_to_ban=3, drop_every_s=1e9)
    cold = [p for p in (f"6014{n:08d}" for n in range(20)) if dying.on_whatsapp(p)]
    sessions = {d: DeviceSession(d, jid=f"6015000000{d}.0:1@s.whatsapp.net", phone=f"6015000000{d}") for d in (1, 2)}
    for session in sessions.values():
        dying.start(session)
        next_of(dying_events, Connected)
    send(dying, 1, cold[0], device_id=1)                 # two spam reports of three
    send(dying, 2, cold[1], device_id=1)
    send(dying, 3, cold[0], device_id=2)                 # one report, a contact written to
    dying.reply(2, cold[2], "Interested")                # and one who wrote
    # the process dies here: nothing let go, no rule fired since the devices started

    for device_id in (1, 2):
        nxt.start(sessions[device_id])
        next_of(nxt_events, Connected)
    for n, phone in enumerate((cold[0], cold[2], cold[3])):   # two warm contacts, the second report
        send(nxt, 10 + n, phone, device_id=2)
    assert nxt.state(2) == "connected"
    send(nxt, 20, cold[3], device_id=1)                  # the third report
    assert next_of(nxt_events, TemporaryBan).code == "BLOCKED_BY_USERS"
    assert nxt.state(1) == "banned"


def test_most_new_contacts_do_not_report(make_sim, tmp_path):
    """At the default rate (2 %) a device writing to 100 new contacts within a day is reported a few
    times, rarely five: the same seed, the same story."""
    networks = iter(range(100))

    def reports(seed):   # (banned, reports): no drops, timelocks or overload bans in the way; a network each
        sim, events = make_sim(seed=seed, cold_limit=1000, burst_limit=1000, drop_every_s=1e9,
                               store_dir=tmp_path / f"network{next(networks)}")
        connected(sim, events)
        for n, phone in enumerate([p for p in (f"6012{n:08d}" for n in range(200)) if sim.on_whatsapp(p)][:100]):
            try:
                send(sim, n, phone)
            except NotSent:
                return True, 5                           # banned: its fifth report
        return False, len(sim._devices[1].reports)
    seen = [reports(seed) for seed in range(10)]
    assert seen == [reports(seed) for seed in range(10)]
    assert sum(banned for banned, _ in seen) <= 2
    assert 5 <= sum(n for _, n in seen) <= 40


def test_receipts_are_as_unreliable_as_whatsapps(make_sim):
    """Some delivery receipts come before the send returns and many within 100 ms (ahead of the
    send's completion), others ~1 s later; some never come; a recipient with a linked device sends a
    second one; a read receipt may come without its delivery receipt."""
    # the late receipts 0.5-1.5 s after their send: far enough from the fast ones' 100 ms that a busy
    # machine's timer lag (up to 300 ms here) cannot move one group into the other
    sim, events = make_sim(seed=7, receipts=True, rules=False, delivered_after_s=1.0, read_after_s=0.1)
    connected(sim, events)
    sent_at, returned_at = {}, {}
    for n in range(500):
        started = time.monotonic()
        wa_id = send(sim, n, f"6013{n:08d}").wa_message_id
        sent_at[wa_id], returned_at[wa_id] = started, time.monotonic()
    receipts = []
    while True:   # until the network is quiet for longer than a linked device's receipt can lag (2 s) and more
        try:
            ev = events.get(timeout=3.5)
        except queue.Empty:
            break
        if isinstance(ev, Receipt):
            receipts.append(ev)
    delivered, read = {}, set()
    for r in receipts:
        (wa_id,) = r.wa_message_ids
        if r.kind == "delivered":
            delivered.setdefault(wa_id, []).append(sim.emitted_at[r] - sent_at[wa_id])
        else:
            read.add(wa_id)
    firsts = [min(times) for times in delivered.values()]
    ahead = [r for r in receipts if sim.emitted_at[r] <= returned_at[r.wa_message_ids[0]]]
    assert 30 <= len(ahead) <= 80                                # ~10 %: before the send returned
    assert sum(t < 0.4 for t in firsts) >= 120                   # ~40 % planned within 100 ms (below)
    assert sum(t > 0.4 for t in firsts) >= 200                   # the others 0.5-1.5 s later
    assert 3 <= 500 - len(delivered) <= 25                       # ~2 % never delivered-receipted
    assert 50 <= sum(len(times) == 2 for times in delivered.values()) <= 150   # ~20 % twice
    assert 150 <= len(read) <= 350 and read - set(delivered)     # read, sometimes without a delivery receipt
    # The plan itself, free of timer lag: 10 % before the send returns, 30 % after it within 100 ms.
    rng = random.Random(7)
    planned = [sim._receipt_plan(rng)[0] for _ in range(1000)]
    assert 70 <= sum(d == 0.0 for d in planned) <= 130
    assert 250 <= sum(0.0 < d <= 0.1 for d in planned) <= 350
    assert all(d == 0.0 or d <= 0.1 or d >= 0.5 for d in planned)


def test_contacts_write_from_their_number_or_their_lid_identity(tmp_path):
    """A property of the contact, stable under a seed: most by number, ~30 % from their @lid
    identity with the number alongside, ~3 % from it without the number."""
    sim = SimTransport(lambda event: None, SimConfig(store_dir=tmp_path))
    try:
        identities = Counter(sim.identity_of(f"6013{n:08d}") for n in range(2000))
        assert sim.identity_of("60130000001") == sim.identity_of("60130000001")
    finally:
        sim.close()
    assert 1100 <= identities["phone"] <= 1500 and 480 <= identities["lid"] <= 720 and 30 <= identities["hidden"] <= 100
    assert len(lid_of("60130000001")) == 15 and lid_of("60130000001") != lid_of("60130000002")


def test_contacts_answer_some_messages_with_text_or_a_photo(tmp_path):
    events = queue.SimpleQueue()
    sim = SimTransport(events.put, SimConfig(store_dir=tmp_path, rules=False, delivered_after_s=0.01, read_rate=0.0,
                                             reply_rate=1.0, reply_after_s=0.01))
    try:
        connected(sim, events, 5)
        for n in range(40):
            send(sim, n, f"601300000{n:02d}", 5)
        replies = [next_of(events, IncomingMessage) for _ in range(40)]
    finally:
        sim.close()
    # Each from the contact written to, as that contact writes: its number's JID, or its @lid
    # identity with the number alongside or without it.
    jid = {"phone": lambda p: f"{p}@s.whatsapp.net", "lid": lambda p: f"{lid_of(p)}@lid",
           "hidden": lambda p: f"{lid_of(p)}@lid"}
    expected = {(jid[sim.identity_of(p)](p), None if sim.identity_of(p) == "hidden" else p)
                for p in (f"601300000{n:02d}" for n in range(40))}
    assert {(r.sender_jid, r.sender_phone) for r in replies} == expected
    assert {r.chat_jid for r in replies} == {j for j, _ in expected}
    photos = [r for r in replies if r.message_type == "image"]
    assert 0 < len(photos) < 40 and all(r.thumbnail is None for r in replies if r.message_type == "text")
    for p in photos:   # a real JPEG preview, small like WhatsApp's
        assert p.thumbnail[:2] == b"\xff\xd8" and len(p.thumbnail) < 10_000
        assert Image.open(io.BytesIO(p.thumbnail)).size == (96, 72)
