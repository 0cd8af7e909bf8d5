"""Plan guards on a database of its own (tests/test_plan_guards.py says what a guard refuses).

An empty queue: a new deployment, or a queue drained and analyzed since, makes the statistics say
message_queue holds nothing. The fan-out's insert probes the queue for each draft while the same
statement fills it; planned for an empty table, each probe was a sequential scan of what the statement
had written so far (a first chunk of 50k: 33 s instead of 1.5 s).

Deleting a campaign deletes its messages; the rollup's trigger looked, for every deleted row, for a
retry of it among the deleted rows by scanning them all (a 150k-message campaign: minutes).

An idle sender holding many devices claims on every wake-up: asking each device's due index for
work made that O(devices leased).

An idle sender asks when its next send is due (next_dispatch_at, planned per call): planned on a
tiny queue, it read the queue by a sequential scan once per device leased, of a queue a big batch
may be filling meanwhile; and with few rows waiting it probed every device it leased, on every
wake-up, where reading those rows was enough.

The claim's plan is cached for the sender's session. A plan built while the queue was nearly empty
must not outlive the queue's growth before the statistics catch up (batches committed in the same
second, before any writer counts them): with sequential scans that suited five rows, a claim of 300
rows after 30,000 arrived took 5.5 s and read 27M rows; with ties between every way to read a tiny
table, the soak's claims probed each claimed row by a full scan of the queue for 30 s.

A completion (or a release) takes a few of the many rows its sender has in flight, planned with
statistics taken while nothing was: it read every row in flight to find its own. A completion looks
up each settled row's device: the table is small, and once vacuumed all visible, so the cached plan
read it by the id at the end of an index keyed by owner first -- the whole index for every row.

Tables that grow for as long as the fleet runs (warm contacts, the webhook outbox, the rollups' rows
per device or quarter hour, a campaign's live rows, sequence enrollments, received
messages, device events) and backlogs that wait for hours (step messages behind the caps, a banned
device's queue): each read below was found reading all of such a table, or all of an owner's,
campaign's or chat's rows, where it shows or needs a few. It must read about what it returns,
whatever the table holds.
"""
import json
from datetime import timedelta

from tests.factories import make_device, make_user
from tests.superuser import superuser
from tests.test_plan_guards import MESSAGE_TABLES, Plans, _nodes, rows_read, violations

LEADS = 2000


def test_a_first_chunk_on_an_empty_queue_and_the_campaigns_delete_stay_linear(module_db_url):
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone)
                     SELECT %s, %s, 'Lead ' || g, (60130000000 + g)::text FROM generate_series(1, %s) g""",
                  [uid, dev, LEADS])
        campaign = c.execute("""SELECT create_campaign(%s, 'broadcast', 'empty queue', '', 'all', 'hi {name}', NULL,
                                                       NULL, NULL, current_date - 1, '00:00', 0, 0) AS id""",
                             [uid]).fetchone()["id"]
        c.execute("SELECT _trigger_due_campaigns()")
        c.execute("VACUUM ANALYZE")
        assert c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"] == 0
        c.execute("LOAD 'auto_explain'")
        with Plans(c) as plans:
            queued = c.execute("SELECT expand_campaign_chunk(%s, 5000) AS n", [campaign]).fetchone()["n"]
        assert queued == LEADS // 2   # the first of its two fan-out lanes
        assert violations(plans) == []

        # Other work queued meanwhile: the campaign is a tenth of the queue, its failed rows in the history.
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                     SELECT %s, %s, (60140000000 + g)::text, 'other' FROM generate_series(1, 20000) g""", [uid, dev])
        c.execute("""UPDATE broadcast_messages SET status = 'failed', claimed_at = now(), claimed_by = 's',
                                                   failed_at = now(), error_message = 'no'
                      WHERE campaign_id = %s AND id %% 4 = 0""", [campaign])
        c.execute("ANALYZE")
        with Plans(c) as plans:
            c.execute("DELETE FROM campaigns WHERE id = %s", [campaign])
        assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE campaign_id = %s", [campaign]).fetchone()["n"] == 0
        assert violations(plans) == []


def test_completions_and_releases_read_their_rows_and_devices_by_key(module_db_url):
    """A sender completes (or releases) a few of the many rows it has in flight, planned with
    statistics taken while nothing was: each read the in-flight index whole (every queued row, of
    every sender, fetched and compared with every id) rather than its own rows by key. And a fleet's
    device table is small and, vacuumed, all visible: the completion's cached plan read each row's
    device by the id at the end of the (user_id, name, id) index, a walk of the whole index per row
    (200 devices: 9 ms of a 1,000-row completion)."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        try:
            devices = [make_device(c, uid) for _ in range(100)]
            c.execute("SELECT register_sender('by-key', 'test', 1, 10000)")
            c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                         SELECT d, 'by-key', now(), now() + interval '1 hour' FROM unnest(%s::bigint[]) d""", [devices])
            c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                         SELECT %s, d, (60180000000 + g * 1000 + k)::text, 'by key'
                           FROM unnest(%s::bigint[]) WITH ORDINALITY AS x(d, k), generate_series(1, 10) g""",
                      [uid, devices])
            c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
                         SELECT %s, %s, (60190000000 + g)::text, 'tomorrow', now() + interval '1 day'
                           FROM generate_series(1, 20000) g""", [uid, devices[0]])   # a queue, not a handful
            c.execute("VACUUM ANALYZE")   # nothing in flight; the device table as autovacuum leaves it
            ids = [r["id"] for r in c.execute("SELECT * FROM claim_messages('by-key', 1000, 100)")]
            assert len(ids) == 1000
            c.execute("LOAD 'auto_explain'")
            with Plans(c, analyze=True) as plans:
                for batch in (ids[:100], ids[100:200]):   # past the first call, as a sender's session goes on
                    c.execute("SELECT complete_messages('by-key', %s, %s)", [batch, [f"K{i}" for i in batch]])
            takes_its_rows = lambda query: "UPDATE broadcast_messages m" in query
            assert rows_read(plans, "message_queue", takes_its_rows) == 200   # not the 1,000 and 900 in flight
            assert violations(plans) == []
            with Plans(c, analyze=True) as plans:   # a device dropped: what it never sent goes back
                assert c.execute("SELECT release_messages('by-key', %s) AS n", [ids[200:300]]).fetchone()["n"] == 100
            assert rows_read(plans, "message_queue", takes_its_rows) == 100   # not the 800 in flight
            c.execute("SELECT complete_messages('by-key', %s, %s)", [ids[300:], [f"K{i}" for i in ids[300:]]])
            assert {r["status"]: r["n"] for r in c.execute(
                "SELECT status, count(*) AS n FROM broadcast_messages WHERE id = ANY(%s) GROUP BY 1", [ids])} == {
                "sent": 900, "pending": 100}
        finally:
            c.execute("DELETE FROM senders WHERE id = 'by-key'")
            c.execute("DELETE FROM users WHERE id = %s", [uid])   # its devices, leases and messages with it


def test_an_idle_claim_reads_the_queue_once_whatever_the_devices_leased(module_db_url):
    """A sender holds up to 1,550 devices and claims on every wake-up. Asking each device's due index
    for work cost an idle claim 1.5 ms instead of 0.13 (11 ms instead of 0.35 over a drained queue):
    the devices with due work are read off the due rows in time order, one scan."""
    with superuser(module_db_url) as c:
        c.execute("DELETE FROM broadcast_messages WHERE status = 'pending'")   # the other test's: due
        uid = make_user(c)
        for _ in range(40):
            make_device(c, uid)
        c.execute("SELECT register_sender('idle-sender', 'test', 1, 10000)")
        assert c.execute("SELECT count(*) AS n FROM acquire_leases('idle-sender', 10000, '1 hour')").fetchone()["n"] >= 40
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
                     SELECT %s, d.id, '60150000001', 'later', now() + interval '1 day'
                       FROM user_devices d WHERE d.user_id = %s""", [uid, uid])   # pending, none due
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT * FROM claim_messages('idle-sender', 1000, 100)").fetchall() == []
        loops = [node["Actual Loops"] for _, plan in plans.plans for node in _nodes(plan)
                 if node.get("Relation Name", "").startswith(MESSAGE_TABLES)]
        assert loops and max(loops) == 1, loops


def test_a_claim_planned_on_a_tiny_queue_stays_linear_when_the_queue_grows_unanalyzed(module_db_url):
    with superuser(module_db_url) as c:
        c.execute("DELETE FROM broadcast_messages WHERE status = 'pending'")   # the other tests'
        c.execute("ALTER TABLE message_queue SET (autovacuum_enabled = false)")   # the claim's ANALYZE, not autovacuum's
        uid = make_user(c)
        devices = [make_device(c, uid) for _ in range(30)]
        c.execute("SELECT register_sender('stale-sender', 'test', 1, 10000)")
        leased = {r["device_id"] for r in c.execute("SELECT device_id FROM acquire_leases('stale-sender', 10000, '1 hour')")}
        assert set(devices) <= leased
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                     SELECT %s, d, '60150000002', 'few' FROM unnest(%s::bigint[]) d LIMIT 5""", [uid, devices])
        c.execute("VACUUM ANALYZE")
        assert len(c.execute("SELECT * FROM claim_messages('stale-sender', 1000, 100)").fetchall()) == 5   # plan cached
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                     SELECT %s, (%s::bigint[])[1 + g %% 30], (60160000000 + g)::text, 'many'
                       FROM generate_series(1, 6000) g""", [uid, devices])   # no ANALYZE since
        c.execute("UPDATE device_pacing SET next_send_at = now() - interval '1 second' WHERE device_id = ANY (%s)", [devices])
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            claimed = len(c.execute("SELECT * FROM claim_messages('stale-sender', 1000, 1)").fetchall())
        assert claimed == 30
        # It saw the due rows the statistics did not know of, re-analyzed and was planned again.
        assert c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"] >= 5000
        # The statement that takes the rows (the look for devices with due work before it reads at most
        # 5,001 due rows, once): a few rows examined per row claimed.
        examined = sum((node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1)
                       for query, plan in plans.plans if "WITH dev AS" in query for node in _nodes(plan)
                       if node.get("Relation Name", "").startswith(MESSAGE_TABLES))
        assert examined <= 5 * claimed, f"the claim examined {examined:,.0f} queue rows for {claimed}"
        assert violations(plans) == []


def _idle_sender(c, n_devices, n_waiting):
    """A sender leasing n_devices online devices, n_waiting pending rows due in an hour spread over them."""
    c.execute("DELETE FROM broadcast_messages WHERE status = 'pending'")   # the other tests'
    uid = make_user(c)
    devices = [make_device(c, uid) for _ in range(n_devices)]
    c.execute("SELECT register_sender('wake-sender', 'test', 1, 10000)")
    c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                 SELECT d, 'wake-sender', now(), now() + interval '1 hour' FROM unnest(%s::bigint[]) d
                 ON CONFLICT (device_id) DO UPDATE SET sender_id = excluded.sender_id, expires_at = excluded.expires_at""",
              [devices])
    c.execute("UPDATE user_devices SET status = 'online' WHERE id = ANY (%s)", [devices])
    c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
                 SELECT %s, (%s::bigint[])[1 + g %% %s], '60150000003', 'later', now() + interval '1 hour'
                   FROM generate_series(1, %s) g""", [uid, devices, n_devices, n_waiting])
    c.execute("VACUUM ANALYZE")
    return uid


def test_an_idle_senders_next_wake_up_probes_each_device_whatever_the_queue_size(module_db_url):
    """next_dispatch_at is planned per call, often on a tiny queue. There its look for each leased
    device's first due row was a sequential scan of the queue per device, or (scans off) a walk of
    the time-ordered due index filtered by device, sorted: 1,550 walks per call, each over every due
    row, of a queue a big batch may be filling meanwhile (caught by auto_explain: both senders 94 s
    in one call at the start of a 1M drain). One probe of the device's due index at any size, once
    more rows wait than it reads whole (below). (The sequential scan shows here on the code before;
    the walk came from a tie this setup does not make.)"""
    with superuser(module_db_url) as c:
        uid = _idle_sender(c, 20, 5001)
        c.execute("LOAD 'auto_explain'")
        with Plans(c) as plans:
            assert c.execute("SELECT next_dispatch_at('wake-sender') AS at").fetchone()["at"] is not None
        reads = [node for query, plan in plans.plans if "first_due" in query
                 for node in _nodes(plan) if node.get("Relation Name", "").startswith(MESSAGE_TABLES)]
        assert reads and all(node.get("Index Name") == "message_queue_due" and "device_id" in node.get("Index Cond", "")
                             for node in reads), [(n["Node Type"], n.get("Index Name"), n.get("Filter")) for n in reads]
        c.execute("DELETE FROM broadcast_messages WHERE user_id = %s", [uid])


def test_an_idle_senders_next_wake_up_reads_the_few_waiting_rows_not_every_device(module_db_url):
    """Every sender asks next_dispatch_at after each claim that found nothing: on every wake-up of an
    idle fleet. With few rows waiting it reads them and looks their devices up, rather than probing
    each of its leased devices (1,500 a sender: 6.4 ms a wake-up over an empty queue, 0.5 ms now)."""
    with superuser(module_db_url) as c:
        uid = _idle_sender(c, 20, 3)
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            at = c.execute("SELECT next_dispatch_at('wake-sender') - now() AS t").fetchone()["t"]
        assert timedelta(minutes=59) < at <= timedelta(hours=1)
        nodes = [node for _, plan in plans.plans for node in _nodes(plan)]
        queue_reads = sum(n["Actual Loops"] for n in nodes if n.get("Relation Name", "").startswith(MESSAGE_TABLES))
        device_rows = sum(n["Actual Loops"] * n["Actual Rows"] for n in nodes
                          if n.get("Relation Name") in ("user_devices", "device_pacing", "device_leases"))
        assert (queue_reads, device_rows <= 9) == (1, True), (queue_reads, device_rows)   # not 20 probes, 20+ devices
        c.execute("DELETE FROM broadcast_messages WHERE user_id = %s", [uid])



def test_sends_probe_the_warm_contacts_however_many_and_whatever_the_statistics_say(module_db_url):
    """Every completion counts its cold sends (to numbers that never wrote to the device) and a
    timelocked device's claim takes warm contacts only: both ask the device's chats (talked_at) about
    each row, and the completion opens or lifts each recipient's chat. The table grows with every first send, far faster than its statistics in a fleet's first
    drain, and a sender's session keeps the plans it made when the table was small: hashing all of
    it, once per completion, was the cheapest way then (in a 100k drain, 15 % of the database's CPU;
    1M contacts: 370 ms a completion). A few rows read per row sent, whatever the table holds."""
    with superuser(module_db_url) as c:
        c.execute("DELETE FROM broadcast_messages WHERE status = 'pending'")   # the other tests'
        c.execute("ALTER TABLE chats SET (autovacuum_enabled = false)")
        uid = make_user(c)
        devices = [make_device(c, uid) for _ in range(10)]
        c.execute("SELECT register_sender('warm-sender', 'test', 1, 10000)")
        leased = {r["device_id"] for r in c.execute("SELECT device_id FROM acquire_leases('warm-sender', 10000, '1 hour')")}
        assert set(devices) <= leased
        c.execute("SELECT device_timelocked(%s, NULL)", [devices[0]])

        def send(phones):
            """Queues one message per (device, phone) and sends what the claim takes; returns the ids sent."""
            c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                         SELECT %s, p.d, p.phone, 'hi' FROM unnest(%s::bigint[], %s::text[]) AS p(d, phone)""",
                      [uid, [d for d, _ in phones], [p for _, p in phones]])
            c.execute("UPDATE device_pacing SET next_send_at = now() - interval '1 second' WHERE device_id = ANY (%s)",
                      [devices])
            ids = [r["id"] for r in c.execute("SELECT * FROM claim_messages('warm-sender', 1000, 100)")]
            c.execute("SELECT complete_messages('warm-sender', %s, %s)", [ids, [f"W{i}" for i in ids]])
            return ids

        # The session's first sends, while the fleet knows few numbers: plans made and kept.
        c.execute("VACUUM ANALYZE chats")
        for k in range(8):
            assert len(send([(d, str(60190000000 + k * 100 + i)) for i, d in enumerate(devices[1:])])) == 9
        c.execute("""INSERT INTO chats (user_id, device_id, chat_jid, phone, talked_at)
                     SELECT %s, (%s::bigint[])[1 + g %% 10], (60170000000 + g) || '@s.whatsapp.net', (60170000000 + g)::text,
                            now()
                       FROM generate_series(1, 50000) g""", [uid, devices])   # no ANALYZE since
        # Per device: three numbers it knows (warm) and three it does not.
        phones = [(d, str(base + k * 10 + i)) for i, d in enumerate(devices)
                  for base, ks in ((60170000000, (1, 2, 3)), (60180000000, (4, 5, 6))) for k in ks]
        c.execute("LOAD 'auto_explain'")
        try:
            with Plans(c, analyze=True) as plans:
                sent = send(phones)
            assert len(sent) == 9 * 6 + 3   # the timelocked device: its warm contacts only
            assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE id = ANY (%s) AND status = 'sent'",
                             [sent]).fetchone()["n"] == len(sent)
            read = rows_read(plans, "chats")
            assert read <= 5 * len(sent), f"{read:,.0f} chats read for {len(sent)} sends"
        finally:
            c.execute("DELETE FROM chats WHERE device_id = ANY (%s)", [devices])
            c.execute("ALTER TABLE chats RESET (autovacuum_enabled)")
            c.execute("DELETE FROM broadcast_messages WHERE user_id = %s", [uid])


def test_a_devices_reply_rate_reads_the_contacts_who_wrote_not_every_number_it_sent_to(module_db_url):
    """Device health counts the contacts who first wrote in the last 48 hours. Every number a device
    ever sent to is one of its warm contacts (~150k within half a year at 800 sends a day), and the
    count read all of them for each device: the owner's device page, 20 such devices, 250 ms."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        c.execute("""INSERT INTO chats (user_id, device_id, chat_jid, phone, talked_at)
                     SELECT %s, %s, (60210000000 + g) || '@s.whatsapp.net', (60210000000 + g)::text, now()
                       FROM generate_series(1, 20000) g""", [uid, dev])
        c.execute("""UPDATE chats SET wrote_at = now() - make_interval(hours => h)
                      FROM (VALUES ('60210000001', 1), ('60210000002', 47), ('60210000003', 72)) AS w(phone, h)
                     WHERE device_id = %s AND chats.phone = w.phone""", [dev])
        c.execute("VACUUM ANALYZE chats")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT health_score FROM device_health WHERE device_id = %s", [dev]).fetchone()
        counted = sum(n.get("Actual Rows", 0) * n.get("Actual Loops", 1) for query, plan in plans.plans
                      for n in _nodes(plan) if n.get("Relation Name") == "chats")
        assert counted == 2   # those of the last 48 h
        read = rows_read(plans, "chats")
        assert read <= 10, f"{read:,.0f} chats read for one device's reply rate"
        c.execute("DELETE FROM chats WHERE device_id = %s", [dev])


def test_webhook_pages_and_metrics_read_the_backlog_not_every_delivery_ever_made(module_db_url):
    """The outbox keeps delivered rows (~3 a message for message.status subscribers). /metrics counted
    the backlog by a scan of all of them (1M: 72 ms a scrape), the endpoint list counted each
    endpoint's delivered rows (1M: 185 ms) and an owner's delivery list read every tenant's rows to
    find theirs (1M: 83 ms). Each now reads the rows it shows and the backlog."""
    with superuser(module_db_url) as c:
        busy, quiet = make_user(c), make_user(c)
        endpoints = {uid: c.execute("SELECT create_webhook_endpoint(%s, 'https://hooks.example.com/wa', %s, "
                                    "ARRAY['message.status']) AS id", [uid, "s" * 40]).fetchone()["id"]
                     for uid in (quiet, busy)}
        deliveries = """INSERT INTO webhook_deliveries (endpoint_id, user_id, event_id, event_type, payload, status,
                                                        delivered_at, attempts, last_attempt_at, last_status_code)
                        SELECT %(ep)s, %(uid)s, gen_random_uuid(), 'message.status', '{}', %(status)s,
                               CASE WHEN %(status)s = 'delivered' THEN now() END, 1, now(), 200
                          FROM generate_series(1, %(n)s)"""
        c.execute(deliveries, dict(ep=endpoints[quiet], uid=quiet, status="delivered", n=5))   # the quiet owner's, long ago
        c.execute(deliveries, dict(ep=endpoints[busy], uid=busy, status="delivered", n=20000))
        c.execute(deliveries, dict(ep=endpoints[busy], uid=busy, status="dead", n=2))
        c.execute("""INSERT INTO webhook_deliveries (endpoint_id, user_id, event_id, event_type, payload)
                     SELECT %s, %s, gen_random_uuid(), 'message.status', '{}' FROM generate_series(1, 3)""",
                  [endpoints[busy], busy])   # the backlog
        c.execute("VACUUM ANALYZE webhook_deliveries")
        # A delivery made counts on its endpoint (the rows inserted above bypassed the deliverer).
        head = c.execute("SELECT * FROM claim_webhook_deliveries(10, 30)").fetchall()
        assert [h["endpoint_id"] for h in head] == [endpoints[busy]]
        assert c.execute("SELECT finish_webhook_delivery(%s, 200, NULL, 10, 86400) AS s",
                         [head[0]["delivery_id"]]).fetchone()["s"] == "delivered"
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            metrics = c.execute("SELECT * FROM metrics_webhooks").fetchone()
            listed = c.execute("SELECT * FROM webhook_endpoint_list(%s)", [busy]).fetchall()
            quiets = c.execute("SELECT * FROM webhook_delivery_list(%s, NULL, NULL, 50)", [quiet]).fetchall()
            dead = c.execute("SELECT * FROM webhook_delivery_list(%s, NULL, 'dead', 50)", [busy]).fetchall()
        assert (metrics["pending"], metrics["dead"]) == (2, 2)
        assert [(e["pending"], e["dead"], e["delivered"]) for e in listed] == [(2, 2, 1)]
        assert len(quiets) == 5 and len(dead) == 2
        read = rows_read(plans, "webhook_deliveries")
        assert read <= 100, f"{read:,.0f} webhook deliveries read for a backlog of 2, 2 dead and a page of 5"
        c.execute("DELETE FROM webhook_endpoints WHERE id = ANY (%s)", [list(endpoints.values())])


def test_the_campaigns_page_and_metrics_read_totals_not_a_row_per_device_or_quarter_hour(module_db_url):
    """campaign_report (the campaigns page: 200 campaigns) summed each campaign's rollup rows, one per
    device and writer shard (200 campaigns on 1,000 devices: 811 ms); /metrics summed every owner's
    quarter hours ever (1M rows: 71 ms a scrape, growing for good). Each reads its totals now."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        cid = c.execute("""SELECT create_campaign(%s, 'broadcast', 'wide', '', 'all', 'hi', NULL, NULL, NULL,
                                                  current_date + 1, '09:00', 0, 0) AS id""", [uid]).fetchone()["id"]
        # What 2,000 devices' completions add, as their writer adds it: per device, and per campaign.
        c.execute("""SELECT _add_campaign_counts(array(
                       SELECT ROW(%s, d, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0)::campaign_counts
                         FROM generate_series(1, 2000) d))""", [cid])
        c.execute("""SELECT _add_message_outcomes(
                       array_fill(%s::bigint, ARRAY[3000]),
                       array(SELECT _message_outcome_bucket(now()) - make_interval(mins => 15 * g)
                               FROM generate_series(1, 3000) g),
                       array_fill(2::bigint, ARRAY[3000]), array_fill(1::bigint, ARRAY[3000]))""", [uid])
        c.execute("VACUUM ANALYZE campaign_counts, campaign_totals, message_outcome_counts, message_outcome_totals")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            report = c.execute("SELECT * FROM campaign_report WHERE campaign_id = %s", [cid]).fetchone()
            metrics = {r["status"]: r["messages"] for r in c.execute("SELECT * FROM metrics_messages")}
        assert (report["should_send"], report["sent"], report["delivered"]) == (2000, 2000, 2000)
        assert metrics["sent"] >= 6000 and metrics["failed"] >= 3000
        read = {t: rows_read(plans, t)
                for t in ("campaign_counts", "campaign_totals", "message_outcome_counts", "message_outcome_totals")}
        assert read["campaign_counts"] == read["message_outcome_counts"] == 0, read
        assert read["campaign_totals"] <= 16 and read["message_outcome_totals"] <= 16, read
        c.execute("DELETE FROM campaigns WHERE id = %s", [cid])


def test_the_hourly_purge_drops_received_messages_and_device_events_past_their_time_reading_those(module_db_url):
    """Received chat messages and device events were never dropped (a row per message received,
    a row per connection change). They now leave after message_retention_days (received messages,
    by when they were sent) and 90 days (events, bans kept for good: device health counts them),
    an hour's worth a run, read through an index of their time."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        chat = c.execute("""INSERT INTO chats (user_id, device_id, chat_jid, phone) VALUES (%s, %s, '60240000000@s.whatsapp.net',
                            '60240000000') RETURNING id""", [uid, dev]).fetchone()["id"]
        # a year of messages and events, one every 6 minutes
        c.execute("""INSERT INTO chat_inbound (user_id, device_id, chat_id, wa_message_id, from_me, content, sent_at)
                     SELECT %s, %s, %s, 'in' || m, false, 'hi', now() - make_interval(mins => m)
                       FROM generate_series(0, 365 * 24 * 60, 6) m""", [uid, dev, chat])
        c.execute("""INSERT INTO device_events (device_id, event, at)
                     SELECT %s, CASE WHEN m %% 60000 = 0 THEN 'banned' ELSE 'offline' END, now() - make_interval(mins => m)
                       FROM generate_series(0, 365 * 24 * 60, 6) m""", [dev])
        bans = c.execute("SELECT bans_total FROM device_health WHERE device_id = %s", [dev]).fetchone()["bans_total"]
        c.execute("VACUUM ANALYZE chat_inbound, device_events")
        c.execute("SELECT purge_history()")   # the months kept before: caught up in one run
        left = c.execute("""SELECT (SELECT min(sent_at) > now() - interval '180 days 1 minute' FROM chat_inbound
                                     WHERE chat_id = %s) AS chat_ok,
                                   (SELECT min(at) > now() - interval '90 days 1 minute' FROM device_events
                                     WHERE device_id = %s AND event <> 'banned') AS events_ok""", [chat, dev]).fetchone()
        assert left == {"chat_ok": True, "events_ok": True}
        assert c.execute("SELECT bans_total FROM device_health WHERE device_id = %s", [dev]).fetchone()["bans_total"] == bans == 9
        # An hour later: the next run reads the hour it drops
        c.execute("UPDATE chat_inbound SET sent_at = sent_at - interval '1 hour' WHERE chat_id = %s", [chat])
        c.execute("UPDATE device_events SET at = at - interval '1 hour' WHERE device_id = %s", [dev])
        c.execute("VACUUM ANALYZE chat_inbound, device_events")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            c.execute("SELECT purge_history()")
        read = rows_read(plans, ("chat_inbound", "device_events"))
        assert read <= 60, f"{read:,.0f} received messages and device events read to drop 10 of each"


def test_the_overviews_health_bands_score_each_device_once(module_db_url):
    """The overview counts the owner's devices per health band on every refresh; joined to the four
    bands, each device's score was computed once per band (3,000 devices: 171 ms a refresh). The
    score is inlined (tests/test_deliverability.py), so the plan says how often it is computed: the
    node that outputs it, over all its loops, once a device."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        devices = [make_device(c, uid) for _ in range(12)]
        plan = c.execute("EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) SELECT * FROM device_health_distribution(%s)",
                         [uid]).fetchone()["QUERY PLAN"][0]["Plan"]
        scoring = [n for n in _nodes(plan) if any("LEAST('100'::numeric" in o for o in n.get("Output", []))]
        assert scoring, "no node computes the health score: was it inlined?"
        scored = sum(n["Actual Rows"] * n["Actual Loops"] for n in scoring)
        assert scored == len(devices), f"{scored} scores computed for {len(devices)} devices"


def test_settling_a_campaign_stops_at_the_first_live_message(module_db_url):
    """settle_campaign asks whether a campaign has any live message (every minute for each running one,
    and after each chunk of its fan-out). As a bitmap scan it marked every live row of the campaign
    first (1M: 122 ms a call); an index probe stops at the first."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone)
                     SELECT %s, %s, 'Lead ' || g, (60220000000 + g)::text FROM generate_series(1, 20000) g""", [uid, dev])
        campaign = c.execute("""SELECT create_campaign(%s, 'broadcast', 'live', '', 'all', 'hi', NULL, NULL, NULL,
                                                       current_date - 1, '00:00', 0, 0) AS id""", [uid]).fetchone()["id"]
        c.execute("SELECT _trigger_due_campaigns()")
        queued = 0
        while (n := c.execute("SELECT expand_campaign_chunk(%s, 50000) AS n", [campaign]).fetchone()["n"]) is not None:
            queued += n
        assert queued == 20000
        c.execute("VACUUM ANALYZE")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT settle_campaign(%s) AS s", [campaign]).fetchone()["s"] == "processing"
        read = rows_read(plans, MESSAGE_TABLES)
        assert read <= 10, f"{read:,.0f} message rows read to settle a campaign with 20,000 live"
        c.execute("DELETE FROM campaigns WHERE id = %s", [campaign])


def test_the_sequence_tick_reads_the_contacts_it_can_move_not_every_step_still_in_the_queue(module_db_url):
    """Each minute the tick activates due steps and completes contacts past their last step, both
    only once the contact's step message has left the queue. It found those by probing the queue for
    every due (or finished) enrollment, so a backlog of step messages waiting behind the caps was
    re-read every minute (1M: 1.08 s a tick). Each chunk now reads the enrollments it can move."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        for _ in range(3):
            make_device(c, uid, hourly_limit=100_000, daily_limit=100_000)
        steps = lambda n: [{"day_number": d, "content": f"day {d}", "trigger_delay_hours": 0} for d in range(1, n + 1)]
        for trigger, n in (("twosteps", 2), ("onestep", 1)):
            sid = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps(
                {"name": trigger, "trigger": trigger, "steps": steps(n)})]).fetchone()["id"]
            c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
        # 2,000 contacts each: their first steps are queued and wait there (no sender); the two-step
        # ones are due for their second step (no delay), the one-step ones past their last.
        c.execute("""INSERT INTO leads (user_id, name, phone, trigger)
                     SELECT %s, 'Lead ' || g, (60230000000 + g)::text, CASE WHEN g %% 2 = 0 THEN 'twosteps' ELSE 'onestep' END
                       FROM generate_series(1, 4000) g""", [uid])
        assert c.execute("SELECT activate_due_steps(5000) AS n").fetchone()["n"] == 4000
        c.execute("VACUUM ANALYZE")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT complete_finished_enrollments(5000) AS n").fetchone()["n"] == 0
            assert c.execute("SELECT activate_due_steps(5000) AS n").fetchone()["n"] == 0
        read = rows_read(plans, ("sequence_enrollments",) + MESSAGE_TABLES)
        assert read <= 20, f"{read:,.0f} enrollment and message rows read by a tick with nothing to move"

        # One contact of each kind sees its message sent: the next chunk moves exactly those two.
        c.execute("""UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 't'
                      WHERE id IN (SELECT min(id) FROM broadcast_messages WHERE user_id = %s GROUP BY sequence_id)""", [uid])
        ids = [r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE status = 'queued' AND user_id = %s", [uid])]
        c.execute("SELECT complete_messages('t', %s, %s)", [ids, [f"w{i}" for i in ids]])
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT complete_finished_enrollments(5000) AS n").fetchone()["n"] == 1
            assert c.execute("SELECT activate_due_steps(5000) AS n").fetchone()["n"] == 1
        read = rows_read(plans, ("sequence_enrollments",) + MESSAGE_TABLES)
        assert read <= 60, f"{read:,.0f} enrollment and message rows read to move two contacts"


def test_a_sequences_contacts_page_reads_its_own_passes_not_every_older_one(module_db_url):
    """The contacts page (its passes, oldest first, with their total) counted the sequence's
    enrollments and, planned without the sequence's id, read them in the primary key's order past
    every other sequence's: a new sequence's first page beside 1M older enrollments read them all
    (80 ms). The total comes from the rollup and the page from an index by sequence."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        sids = []
        for name in ("old", "new"):
            sids.append(c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps(
                {"name": name, "trigger": name, "steps": [{"day_number": 1, "content": "hi"}]})]).fetchone()["id"])
        old, new = sids
        for sid, n, base in ((old, 20000, 60250000000), (new, 150, 60260000000)):
            c.execute("""INSERT INTO sequence_enrollments (sequence_id, user_id, contact_phone, status, completed_at, steps_done)
                         SELECT %s, %s, (%s + g)::text, 'completed', now(), 1 FROM generate_series(1, %s) g""",
                      [sid, uid, base, n])
        c.execute("VACUUM ANALYZE sequence_enrollments")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            page = c.execute("SELECT sequence_contacts_page(%s, %s, 100, 0) AS p", [uid, new]).fetchone()["p"]
        assert (page["total"], len(page["contacts"])) == (150, 100)
        assert [p["enrollment_id"] for p in page["contacts"]] == sorted(p["enrollment_id"] for p in page["contacts"])
        read = rows_read(plans, "sequence_enrollments")
        assert read <= 150, f"{read:,.0f} enrollments read for a page of 100 of a sequence's 150"
        page = c.execute("SELECT sequence_contacts_page(%s, %s, 100, 19950) AS p", [uid, old]).fetchone()["p"]
        assert (page["total"], len(page["contacts"])) == (20000, 50)


def test_a_busy_chats_page_reads_the_page_not_the_whole_chat(module_db_url):
    """A chat's page merged every received message with the sent ones before cutting the page, so
    each page of a busy group chat read and sorted all of it (100k messages: 49 ms)."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        chat = c.execute("""INSERT INTO chats (user_id, device_id, chat_jid) VALUES (%s, %s, '1203630@g.us')
                            RETURNING id""", [uid, dev]).fetchone()["id"]
        c.execute("""INSERT INTO chat_inbound (user_id, device_id, chat_id, wa_message_id, from_me, content, sent_at)
                     SELECT %s, %s, %s, 'g' || g, false, 'msg ' || g, now() - make_interval(secs => g / 2)
                       FROM generate_series(1, 20000) g""", [uid, dev, chat])   # two a second: ties on sent_at
        c.execute("VACUUM ANALYZE chat_inbound")
        c.execute("LOAD 'auto_explain'")
        pages, before = [], (None, None)
        with Plans(c, analyze=True) as plans:
            for _ in range(3):
                rows = c.execute("SELECT * FROM chat_messages(%s, %s, 50, %s, %s)", [uid, chat, *before]).fetchall()
                pages.append([r["content"] for r in rows])
                before = (rows[-1]["at"], rows[-1]["key"])
        newest_first = sorted(range(1, 20001), key=lambda g: (g // 2, -g))   # a tie on sent_at: newest row first
        assert [p for page in pages for p in page] == [f"msg {g}" for g in newest_first[:150]]
        read = rows_read(plans, "chat_inbound")
        assert read <= 3 * 60, f"{read:,.0f} received messages read for three pages of 50"


def test_deleting_a_device_reads_its_own_enrollments_not_every_one(module_db_url):
    """Deleting a device nulls its enrollments' device (the foreign key's action): with no index by
    device it read every enrollment (1M: 55-69 ms a device, once per device of a clean-up)."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        keep, gone = make_device(c, uid), make_device(c, uid)
        sid = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps(
            {"name": "devices", "trigger": "devices", "steps": [{"day_number": 1, "content": "hi"}]})]).fetchone()["id"]
        c.execute("""INSERT INTO sequence_enrollments (sequence_id, user_id, device_id, contact_phone, status, completed_at, steps_done)
                     SELECT %s, %s, CASE WHEN g <= 20 THEN %s ELSE %s END, (60270000000 + g)::text, 'completed', now(), 1
                       FROM generate_series(1, 20000) g""", [sid, uid, gone, keep])
        c.execute("VACUUM ANALYZE sequence_enrollments")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            c.execute("SELECT _delete_device(%s, %s)", [uid, gone])
        assert c.execute("SELECT count(*) AS n FROM sequence_enrollments WHERE sequence_id = %s AND device_id IS NULL",
                         [sid]).fetchone()["n"] == 20
        read = rows_read(plans, "sequence_enrollments")
        assert read <= 100, f"{read:,.0f} enrollments read to delete a device with 20"


def test_failover_reads_no_waiting_message_of_an_owner_without_failover(module_db_url):
    """Each minute the failover looked at every waiting message of every lost device (banned for a
    while, offline for minutes) and only then dropped those whose campaign or sequence has failover
    off (the default): through a temporary ban, the same rows every minute for hours (1M: 142 ms)."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        banned = make_device(c, uid, status="banned")
        c.execute("UPDATE user_devices SET banned_until = now() + interval '1 day' WHERE id = %s", [banned])
        make_device(c, uid)   # somewhere to move them, were failover on
        campaign = c.execute("""SELECT create_campaign(%s, 'broadcast', 'no failover', '', 'all', 'hi', NULL, NULL, NULL,
                                                       current_date, '00:00', 0, 0) AS id""", [uid]).fetchone()["id"]
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content)
                     SELECT %s, %s, %s, (60280000000 + g)::text, 'm' FROM generate_series(1, 20000) g""",
                  [uid, banned, campaign])
        c.execute("VACUUM ANALYZE")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT skip_undeliverable() AS n").fetchone()["n"] == 0
        read = rows_read(plans, MESSAGE_TABLES)
        assert read <= 20, f"{read:,.0f} waiting messages read with failover off everywhere"
        c.execute("DELETE FROM campaigns WHERE id = %s", [campaign])


def _rows_handled(plans, where):
    """Every row each plan node of the matching plans produced or threw away, times its loops: the
    work of a statement whatever tables, CTEs or functions the rows came from."""
    total = 0
    for query, plan in plans.plans:
        if where(query):
            for node in _nodes(plan):
                total += (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                          + node.get("Rows Removed by Join Filter", 0)) * node.get("Actual Loops", 1)
    return total


def test_a_step_chunk_picks_each_contacts_device_without_pairing_it_with_every_device(module_db_url):
    """A chunk of activation picks each contact's device: one that talked with it, else its own, else
    the next by score. Joined row by row with the sequence's devices (which the planner is told are
    a few), every contact was paired with every device three times: 5,000 contacts on 300 devices
    read 4.5M rows and probed the warm contacts 1.5M times (1.9 s a chunk; 3,000 devices: ten times)."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        devices = [make_device(c, uid, hourly_limit=100_000, daily_limit=100_000) for _ in range(60)]
        sid = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps(
            {"name": "spread", "trigger": "spread", "steps": [{"day_number": d, "content": f"day {d}", "trigger_delay_hours": 0}
                                                              for d in (1, 2)]})]).fetchone()["id"]
        c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone, trigger)
                     SELECT %s, (%s::bigint[])[1 + g %% 60], 'Lead ' || g, (60290000000 + g)::text, 'spread'
                       FROM generate_series(1, 2000) g""", [uid, devices])
        assert c.execute("SELECT activate_due_steps(5000) AS n").fetchone()["n"] == 2000
        ids = [r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE sequence_id = %s", [sid])]
        c.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 't' WHERE id = ANY (%s)", [ids])
        c.execute("SELECT complete_messages('t', %s, %s)", [ids, [f"w{i}" for i in ids]])   # every contact warm now
        c.execute("VACUUM ANALYZE")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT activate_due_steps(5000) AS n").fetchone()["n"] == 2000
        step2 = c.execute("""SELECT count(*) FILTER (WHERE m.device_id = l.device_id) AS own, count(*) AS n
                               FROM broadcast_messages m JOIN leads l ON l.phone = m.recipient_phone AND l.user_id = m.user_id
                              WHERE m.sequence_id = %s AND m.status = 'pending'""", [sid]).fetchone()
        assert step2 == {"own": 2000, "n": 2000}   # each to the device that sent it step 1 (warm)
        handled = _rows_handled(plans, lambda q: "open_sequences" in q)
        assert handled <= 60 * 2000, f"{handled:,.0f} rows handled to pick devices for 2,000 contacts on 60 devices"


def test_a_stop_reply_reads_that_numbers_waiting_messages_not_the_whole_queue(module_db_url):
    """A STOP reply drops the number's waiting campaign and sequence messages. No index of the queue
    leads with the number, and asked for it alone the queue read every campaign and step message
    waiting (1M waiting: 36 ms a reply)."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid, hourly_limit=100_000, daily_limit=100_000)
        campaign = c.execute("""SELECT create_campaign(%s, 'broadcast', 'stop', '', 'all', 'hi', NULL, NULL, NULL,
                                                       current_date, '00:00', 0, 0) AS id""", [uid]).fetchone()["id"]
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content)
                     SELECT %s, %s, %s, (60300000000 + g)::text, 'm' FROM generate_series(1, 20000) g""",
                  [uid, dev, campaign])
        sid = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps(
            {"name": "stop", "trigger": "stop", "steps": [{"day_number": 1, "content": "day 1", "trigger_delay_hours": 0}]})]
        ).fetchone()["id"]
        c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone, trigger)
                     SELECT %s, %s, 'Lead ' || g, (60300000000 + g)::text, 'stop' FROM generate_series(1, 2000) g""",
                  [uid, dev])
        assert c.execute("SELECT activate_due_steps(5000) AS n").fetchone()["n"] == 2000
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                     VALUES (%s, %s, '60300000007', 'by hand')""", [uid, dev])
        c.execute("VACUUM ANALYZE")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT opt_out_phone(%s, '60300000007', 'STOP') AS n", [uid]).fetchone()["n"] == 1
        read = rows_read(plans, MESSAGE_TABLES)
        assert read <= 20, f"{read:,.0f} waiting messages read for one number's STOP"
        left = c.execute("""SELECT campaign_id IS NOT NULL AS campaign, sequence_id IS NOT NULL AS step, status, skip_reason
                              FROM broadcast_messages WHERE recipient_phone = '60300000007' AND user_id = %s
                             ORDER BY 1, 2""", [uid]).fetchall()
        assert left == [{"campaign": False, "step": False, "status": "pending", "skip_reason": None},   # by hand: stays
                        {"campaign": False, "step": True, "status": "skipped", "skip_reason": "sequence_stopped"},
                        {"campaign": True, "step": False, "status": "skipped", "skip_reason": "opted_out"}]
        assert c.execute("SELECT opt_out_phone(%s, '60300000008', 'STOP') AS n", [uid]).fetchone()["n"] == 1
        assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE user_id = %s AND status = 'pending'",
                         [uid]).fetchone()["n"] == 20000 + 2000 + 1 - 4
        c.execute("SELECT _skip_messages(array(SELECT id FROM broadcast_messages WHERE user_id = %s AND status = 'pending'), "
                  "'device_logged_out')", [uid])   # out of the way of the module's other tests


def test_a_completion_finds_the_receipts_that_overtook_it_without_reading_the_history(module_db_url):
    """Receipts that arrive before their message's completion wait in early_receipts, and so do
    receipts of messages typed on the phone, for a day: most completions find some waiting. Each
    then looked its own just-settled rows up again by id in every week of the history."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid, hourly_limit=100_000, daily_limit=100_000)
        c.execute("SELECT register_sender('early-sender', 'test', 1, 10000)")
        c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                     VALUES (%s, 'early-sender', now(), now() + interval '1 hour')""", [dev])   # this device only
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                     SELECT %s, %s, (60360000000 + g)::text, 'm' FROM generate_series(1, 200) g""", [uid, dev])
        c.execute("UPDATE device_pacing SET next_send_at = now() - interval '1 second' WHERE device_id = %s", [dev])
        ids = [r["id"] for r in c.execute("SELECT id FROM claim_messages('early-sender', 1000, 1000)")]
        assert len(ids) == 200
        c.execute("SELECT record_receipts(%s, %s, 'delivered', now())", [dev, ["wa-early-1", "typed-on-the-phone"]])
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            c.execute("SELECT complete_messages('early-sender', %s, %s)", [ids, [f"wa-early-{i}" for i in range(1, 201)]])
        lookups = [plan for query, plan in plans.plans if "DELETE FROM early_receipts" in query]
        assert lookups, "the early receipts were not looked up"
        scanned = {node["Relation Name"] for plan in lookups for node in _nodes(plan)
                   if node.get("Relation Name", "").startswith(MESSAGE_TABLES)}
        assert scanned == set(), f"the settled rows read again from {sorted(scanned)}"
        assert c.execute("SELECT delivered_at IS NOT NULL AS d FROM broadcast_messages WHERE wa_message_id = 'wa-early-1'"
                         ).fetchone()["d"]
        assert [r["wa_message_id"] for r in c.execute("SELECT wa_message_id FROM early_receipts WHERE device_id = %s",
                                                      [dev])] == ["typed-on-the-phone"]


def make_history_weeks(c):
    """The history's weeks from seven weeks back: at least five that ended more than eight days ago
    whatever the day (from six weeks back a Monday had four: the tests below failed every Monday)."""
    c.execute("SELECT maintain_message_history(now() - interval '7 weeks', 7)")


def old_history_weeks(c):
    """The history's weekly partitions that ended more than eight days ago."""
    return {r["name"] for r in c.execute(
        """SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'message_history'::regclass AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
              AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz
                  < now() - interval '8 days'""")}


def history_weeks_executed(plans, where=lambda query: True):
    """The history partitions the plans captured with analyze=True whose query text passes `where`
    scanned (not those pruned, at their start or as they ran)."""
    return {node["Relation Name"] for query, plan in plans.plans if where(query) for node in _nodes(plan)
            if node.get("Relation Name", "").startswith("message_history") and node.get("Actual Loops")}


def draft_insert(query):
    """Whether a captured plan is _insert_drafts' statement (the writer of new messages)."""
    return "settled_campaigns" in query


def test_receipts_and_status_webhooks_search_the_weeks_of_their_messages_not_the_whole_history(module_db_url):
    """Receipts come within days of their message, one per linked device of the recipient for a
    delivery, and a subscriber's message.status events look up the rows a statement just settled or
    marked. Both searched every week of the history (26 at the default retention) by id; now the last
    seven days' weeks first, the older ones only for ids not found there."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        c.execute("SELECT create_webhook_endpoint(%s, 'https://hooks.example.com/wa', 's' || repeat('x', 31), "
                  "ARRAY['message.status'])", [uid])
        make_history_weeks(c)
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, status,
                                                     claimed_at, sent_at, wa_message_id)
                     VALUES (%(u)s, %(d)s, '60370000002', 'm', 'sent', now() - interval '5 weeks', now() - interval '5 weeks', 'wa-old')""",
                  {"u": uid, "d": dev})
        c.execute("SELECT register_sender('weeks-sender', 'test', 1, 10000)")
        c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                     VALUES (%s, 'weeks-sender', now(), now() + interval '1 hour')""", [dev])
        c.execute("INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content) VALUES (%s, %s, '60370000001', 'm')",
                  [uid, dev])
        c.execute("UPDATE device_pacing SET next_send_at = now() - interval '1 second' WHERE device_id = %s", [dev])
        old_weeks = old_history_weeks(c)
        assert len(old_weeks) >= 5

        def weeks_read(sql, args):
            with Plans(c, analyze=True) as plans:
                n = c.execute(sql, args).fetchone()["n"]
            return n, history_weeks_executed(plans)

        c.execute("LOAD 'auto_explain'")
        [claimed] = [r["id"] for r in c.execute("SELECT id FROM claim_messages('weeks-sender', 10, 10)")]
        n, read = weeks_read("SELECT complete_messages('weeks-sender', %s, %s) AS n", [[claimed], ["wa-recent"]])
        assert n == 1 and read & old_weeks == set(), f"a completion read {sorted(read & old_weeks)}"
        for kind, changed in (("delivered", 1), ("delivered", 0), ("read", 1)):   # the second: another linked device's
            n, read = weeks_read("SELECT record_receipts(%s, %s, %s, now()) AS n", [dev, ["wa-recent"], kind])
            assert n == changed
            assert read & old_weeks == set(), f"a {kind} receipt of a recent message read {sorted(read & old_weeks)}"
        # An old message is still found, and an unknown id still waits for its completion.
        n, read = weeks_read("SELECT record_receipts(%s, %s, 'read', now()) AS n", [dev, ["wa-old", "wa-not-yet"]])
        assert n == 1 and read & old_weeks
        marks = c.execute("""SELECT wa_message_id, delivered_at IS NOT NULL AS delivered, read_at IS NOT NULL AS read
                               FROM broadcast_messages WHERE device_id = %s ORDER BY wa_message_id""", [dev]).fetchall()
        assert marks == [{"wa_message_id": "wa-old", "delivered": True, "read": True},
                         {"wa_message_id": "wa-recent", "delivered": True, "read": True}]
        assert [r["wa_message_id"] for r in c.execute("SELECT wa_message_id FROM early_receipts WHERE device_id = %s",
                                                      [dev])] == ["wa-not-yet"]
        events = [(r["data"]["message_id"], r["data"]["status"]) for r in c.execute(
            """SELECT d.payload -> 'data' AS data FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                WHERE e.user_id = %s ORDER BY d.id""", [uid])]
        old = c.execute("SELECT id FROM broadcast_messages WHERE wa_message_id = 'wa-old'").fetchone()["id"]
        assert events == [(claimed, "sent"), (claimed, "delivered"), (claimed, "read"), (old, "read")]


def _sending_broadcast(c):
    """A broadcast whose first chunk (phones ..02, on two devices, ..04 and ..06: one fan-out lane of
    two, even last digits) is partly sent (..02 and ..04, from the one leased device), with six weeks
    of history behind it; ..08 is left for a later chunk."""
    uid = make_user(c)
    first, second = make_device(c, uid), make_device(c, uid)
    make_history_weeks(c)
    c.execute("""INSERT INTO leads (user_id, device_id, name, phone)
                 VALUES (%(u)s, %(a)s, 'A', '60380000002'), (%(u)s, %(a)s, 'B', '60380000004'),
                        (%(u)s, %(b)s, 'A again', '60380000002'), (%(u)s, %(b)s, 'C', '60380000006'),
                        (%(u)s, %(a)s, 'D', '60380000008')""",
              {"u": uid, "a": first, "b": second})
    campaign = c.execute("""SELECT create_campaign(%s, 'broadcast', 'sending', '', 'all', 'hi {name}', NULL,
                                                   NULL, NULL, current_date - 1, '00:00', 0, 0) AS id""",
                         [uid]).fetchone()["id"]
    c.execute("SELECT _trigger_due_campaigns()")
    # two leads a lane: the owner's first four leads in phone order, ending on a whole phone (..06)
    assert c.execute("SELECT expand_campaign_chunk(%s, 2) AS n", [campaign]).fetchone()["n"] == 3
    c.execute("SELECT register_sender('chunk-sender', 'test', 1, 10000)")
    c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                 VALUES (%s, 'chunk-sender', now(), now() + interval '1 hour')""", [first])
    c.execute("UPDATE device_pacing SET next_send_at = now() - interval '1 second' WHERE device_id = %s", [first])
    claimed = [r["id"] for r in c.execute("SELECT id FROM claim_messages('chunk-sender', 10, 10)")]
    c.execute("SELECT complete_messages('chunk-sender', %s, %s)", [claimed, [f"wa-{i}" for i in claimed]])
    assert c.execute("""SELECT count(*) AS n FROM message_history WHERE campaign_id = %s AND status = 'sent'""",
                     [campaign]).fetchone()["n"] == 2
    return campaign


def _expand_to_the_end(c, campaign):
    queued = 0
    while (n := c.execute("SELECT expand_campaign_chunk(%s, 2) AS n", [campaign]).fetchone()["n"]) is not None:
        queued += n
    return queued


def test_a_broadcasts_later_chunks_probe_no_earlier_message_of_their_phones(module_db_url):
    """A broadcast bigger than a chunk starts sending while its later chunks are queued. Each of
    their drafts was checked against the campaign's live rows and its sent ones (one message per
    campaign and phone): an index descent in the queue and one in each week since the campaign was
    created, 47 % of the insert of 150k drafts. A lane now reads its leads in phone order and a chunk
    takes whole phones, so no later chunk meets an earlier one's phone: the chunk probes neither."""
    with superuser(module_db_url) as c:
        campaign = _sending_broadcast(c)
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            queued = _expand_to_the_end(c, campaign)
        inserts = [plan for query, plan in plans.plans if draft_insert(query)]
        probed = sorted({node.get("Index Name") or node["Relation Name"] for plan in inserts
                         for node in _nodes(plan) if node.get("Actual Loops") and (
                             node.get("Relation Name", "").startswith("message_history")
                             or node.get("Index Name") == "message_queue_campaign_phone")})
        assert inserts and probed == [], f"a fresh chunk probed {probed}"
        assert queued == 1
        assert [r["recipient_phone"] for r in c.execute(
            "SELECT recipient_phone FROM broadcast_messages WHERE campaign_id = %s ORDER BY id", [campaign])] \
            == ["60380000002", "60380000004", "60380000006", "60380000008"]


def test_a_restarted_lane_of_a_sending_campaign_reads_only_the_weeks_since_it_was_created(module_db_url):
    """A lane expanding when the phone cursor came (migration 2132) starts again from the first phone
    with the duplicate guards on, which check each draft against the campaign's sent rows. That
    check read every week of the history (26 at the default retention, 32 partitions) for each lead:
    beside 1.1M rows of history in 26 weeks such a fan-out ran at 0.41-0.77 of the same with none. A
    campaign's rows settle after it was created, so the check reads the weeks since."""
    with superuser(module_db_url) as c:
        campaign = _sending_broadcast(c)
        c.execute("UPDATE campaign_fanout_lanes SET phone_cursor = '', guarded = true WHERE campaign_id = %s",
                  [campaign])
        old_weeks = old_history_weeks(c)
        assert len(old_weeks) >= 5
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            queued = _expand_to_the_end(c, campaign)
        read = history_weeks_executed(plans, where=draft_insert)
        assert read & old_weeks == set(), f"a chunk of a campaign created today read {sorted(read & old_weeks)}"
        assert read, "the restarted lane's chunks checked no sent row"
        # ... and the check holds: the sent phones are left out, the new one queued.
        assert queued == 1
        assert [r["recipient_phone"] for r in c.execute(
            "SELECT recipient_phone FROM broadcast_messages WHERE campaign_id = %s ORDER BY id", [campaign])] \
            == ["60380000002", "60380000004", "60380000006", "60380000008"]


def test_settling_a_campaign_reads_only_the_weeks_since_it_was_created(module_db_url):
    """settle_campaign runs every minute for each running campaign and when one's last message
    settles; it asks whether the campaign has sent, failed and skipped rows, and a probe with no hit
    (no failed message, say) went through every week of the history (26 at the default retention).
    A campaign's rows settle after it was created: the probes read the weeks since."""
    with superuser(module_db_url) as c:
        campaign = _sending_broadcast(c)
        _expand_to_the_end(c, campaign)
        old_weeks = old_history_weeks(c)
        assert len(old_weeks) >= 5
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT settle_campaign(%s) AS s", [campaign]).fetchone()["s"] == "processing"
            c.execute("DELETE FROM message_queue WHERE campaign_id = %s", [campaign])   # the rest, gone
            assert c.execute("SELECT settle_campaign(%s) AS s", [campaign]).fetchone()["s"] == "finished"
        read = history_weeks_executed(plans)
        assert read & old_weeks == set(), f"settling a campaign created today read {sorted(read & old_weeks)}"
        assert read, "settling read none of the campaign's settled rows"


def test_an_ai_campaigns_spread_reads_only_the_weeks_since_it_was_created(module_db_url):
    """An AI campaign's first spread checks each pool lead against the campaign's messages: it probed
    every week of the history (26 at the default retention) for each lead, and read each week for its
    stranded messages. The weeks since the campaign was created hold all of its settled rows."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        first, second = make_device(c, uid), make_device(c, uid)
        make_history_weeks(c)
        c.execute("""INSERT INTO leads (user_id, name, phone)
                     SELECT %s, 'Pool ' || g, (60390000000 + g)::text FROM generate_series(1, 40) g""", [uid])
        campaign = c.execute("""SELECT create_campaign(%s, 'ai', 'spread', '', 'all', 'hi {name}', NULL, NULL, 100,
                                                       current_date - 1, '00:00', 0, 0) AS id""", [uid]).fetchone()["id"]
        old_weeks = old_history_weeks(c)
        assert len(old_weeks) >= 5
        c.execute("SELECT _trigger_due_campaigns()")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            n = c.execute("SELECT expand_campaign_chunk(%s, 1000) AS n", [campaign]).fetchone()["n"]
        read = history_weeks_executed(plans)
        assert n == 40 and read & old_weeks == set(), f"the first spread read {sorted(read & old_weeks)}"
        # ... and still finds them: a dropped device's leads move, none twice.
        assert c.execute("SELECT expand_campaign_chunk(%s, 1000) AS n", [campaign]).fetchone()["n"] == 0   # expanded
        c.execute("SELECT set_device_status(%s, 'banned', 'test ban')", [first])
        assert c.execute("SELECT _rebalance_ai_campaigns() AS n").fetchone()["n"] == 20
        assert c.execute("""SELECT count(*) AS n FROM message_queue WHERE campaign_id = %s AND device_id = %s""",
                         [campaign, second]).fetchone()["n"] == 40
