"""GET /metrics: Prometheus text read from the metrics_* views, behind METRICS_TOKEN."""
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.rows import dict_row

from tests.factories import make_device, make_user
from tests.test_dispatch_sql import claim, lease, queue


def scrape(client, token="t0ken-for-tests"):
    res = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 200, res.data
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(res.get_data(as_text=True)) for s in f.samples}


def test_metrics_need_the_token(client, monkeypatch):
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    assert client.get("/metrics").status_code == 404                  # off unless configured
    monkeypatch.setenv("METRICS_TOKEN", "t0ken-for-tests")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics?token=t0ken-for-tests").status_code == 401


def test_metrics_report_queue_devices_senders_and_webhooks(client, committed_db_url, monkeypatch):
    monkeypatch.setenv("METRICS_TOKEN", "t0ken-for-tests")
    before = scrape(client)
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as db:
        uid = make_user(db)
        online, _ = make_device(db, uid), make_device(db, uid, status="banned")
        lease(db, [online], sender="metrics-s1")
        ids = queue(db, uid, online, 5, scheduled="-2 minutes")
        queue(db, uid, online, 2, scheduled="1 hour")
        claim(db, sender="metrics-s1", limit=2)
        db.execute("SELECT complete_messages('metrics-s1', %s, %s)", [ids[:1], ["wa-m1"]])
        db.execute("SELECT record_claim_stats('metrics-s1', 4, 10, 0.5)")
        db.execute("SELECT create_webhook_endpoint(%s, 'https://hooks.example.com/x', %s, %s)",
                   [uid, "whsec_" + "m" * 40, ["device.status"]])
        db.execute("SELECT set_device_status(%s, 'offline')", [online])
    after = scrape(client)

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("wa_messages", status="pending") == 5 and grew("wa_messages", status="queued") == 1
    assert grew("wa_messages", status="sent") == 1
    assert grew("wa_queue_depth", when="due_now") == 3 and grew("wa_queue_depth", when="scheduled_later") == 2
    assert after[("wa_queue_oldest_due_age_seconds", ())] >= 110
    assert grew("wa_devices", status="banned") == 1 and grew("wa_devices", status="offline") == 1
    sender = (("sender", "metrics-s1"),)
    assert after[("wa_sender_claims_total", sender)] == 4 and after[("wa_sender_claim_seconds_total", sender)] == 0.5
    assert after[("wa_sender_claim_rows_total", sender)] == 10 and after[("wa_sender_devices_leased", sender)] == 1
    assert after[("wa_sender_alive", sender)] == 1
    assert grew("wa_webhook_deliveries", status="pending") == 1
    assert after[("wa_webhook_oldest_pending_age_seconds", ())] >= 0


@pytest.mark.parametrize("status", ["online", "offline", "connecting", "logged_out", "banned"])
def test_every_device_status_is_exported(client, monkeypatch, status):
    monkeypatch.setenv("METRICS_TOKEN", "t0ken-for-tests")
    assert ("wa_devices", (("status", status),)) in scrape(client)
