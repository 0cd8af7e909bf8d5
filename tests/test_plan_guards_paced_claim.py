"""Plan guard on a database of its own: a paced fleet's claim over a backlog.

Its fleet (1,800 devices, most of them other senders') would change the statistics the other plan
guards' small fleets are planned by (tests/test_plan_guards_fresh.py), so it runs apart.
"""
from tests.factories import make_device, make_user
from tests.superuser import superuser
from tests.test_plan_guards import Plans, rows_read, violations


def test_a_claim_over_a_backlog_looks_at_the_devices_whose_send_is_due_not_at_every_one_leased(module_db_url):
    """A paced fleet: a sender leases up to 1,500 devices, most of them waiting out their delays, and
    claims on nearly every result (soak --quick: 403 claims a minute, 12 rows and 8.4 ms each). Over
    more than 5,000 due rows the claim probed every leased device's pacing to find the few ready
    (2.6 ms a claim). It reads the ready ones off the pacing by time, whatever plan its session made
    when the fleet started with every device ready: with the pacing's time index in place but the
    claim left to choose, the plan made then (1,800 ready, other senders' included) walked the leased
    devices again. With more ready than that read takes (nothing paced yet), every leased device."""
    with superuser(module_db_url) as c:
        owners = [make_user(c) for _ in range(3)]   # 100 devices an account at most
        devices = [make_device(c, uid) for uid in owners for _ in range(100)]
        others = [make_user(c) for _ in range(15)]   # a fleet of other senders' devices, all ready at the start
        c.execute("""SELECT create_devices(u, 100, 'other {n}') FROM unnest(%s::bigint[]) u""", [others])
        c.execute("SELECT register_sender('paced-sender', 'test', 1, 10000)")
        c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                     SELECT d, 'paced-sender', now(), now() + interval '1 hour' FROM unnest(%s::bigint[]) d""", [devices])
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                     SELECT d.user_id, d.id, (60170000000 + g)::text, 'backlog'
                       FROM generate_series(1, 6000) g JOIN user_devices d ON d.id = (%s::bigint[])[1 + g %% 300]""",
                  [devices])
        c.execute("ALTER TABLE device_pacing SET (autovacuum_enabled = false)")   # the statistics of the start
        c.execute("CREATE TEMP TABLE was_ready AS SELECT device_id, next_send_at FROM device_pacing WHERE next_send_at <= now()")
        try:
            c.execute("VACUUM ANALYZE")
            # The fleet's first claim, every device ready (nothing paced yet): one row from each.
            claimed = c.execute("SELECT * FROM claim_messages('paced-sender', 1000, 1)").fetchall()
            assert len({r["device_id"] for r in claimed}) == len(claimed) == 300
            # Then paced: 4 of them due now, every other device of the fleet later.
            ready = devices[:4]
            c.execute("UPDATE device_pacing SET next_send_at = CASE WHEN device_id = ANY (%s) THEN now() - interval '1 second' "
                      "ELSE now() + interval '1 hour' END WHERE device_id IN (SELECT device_id FROM was_ready)", [ready])
            c.execute("LOAD 'auto_explain'")
            with Plans(c, analyze=True) as plans:
                claimed = c.execute("SELECT * FROM claim_messages('paced-sender', 1000, 1)").fetchall()
            assert sorted(r["device_id"] for r in claimed) == sorted(ready)
            read = rows_read(plans, "device_pacing")
            assert read <= 10 * len(ready), f"{read:,.0f} pacing rows read to claim from {len(ready)} ready devices of 300"
            assert violations(plans) == []
        finally:
            c.execute("UPDATE device_pacing p SET next_send_at = w.next_send_at FROM was_ready w WHERE p.device_id = w.device_id")
            c.execute("DROP TABLE was_ready")
            c.execute("ALTER TABLE device_pacing RESET (autovacuum_enabled)")
            c.execute("DELETE FROM senders WHERE id = 'paced-sender'")
            c.execute("DELETE FROM users WHERE id = ANY (%s)", [owners + others])   # their devices, leases and messages with them
