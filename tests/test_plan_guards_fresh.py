"""Plan guards on an empty queue: a new deployment, or a queue drained and analyzed since, makes the
statistics say message_queue holds nothing. The fan-out's insert probes the queue for each draft while
the same statement fills it; planned for an empty table, each probe was a sequential scan of what the
statement had written so far (a first chunk of 50k: 33 s instead of 1.5 s)."""
from tests.factories import make_device, make_user
from tests.superuser import superuser
from tests.test_plan_guards import Plans, violations

LEADS = 2000


def test_a_first_chunk_on_an_empty_analyzed_queue_probes_the_queue_by_index(module_db_url):
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
        assert queued == LEADS
        assert violations(plans) == []
