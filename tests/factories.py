"""Small builders for test data, going through the same SQL functions the app uses."""
import itertools
import uuid

# argon2id hash of "password" (hashing for real in every test would cost ~50 ms each).
PASSWORD = "password"
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$lY5zMV+6N8WqYdj1J+N6mw$xNtefSY+QBHS27orlfxyjbRbZPczRD7xShhexU8n1Cc"

_seq = itertools.count(1)


def make_user(conn, email=None, timezone="Asia/Kuala_Lumpur", is_admin=False):
    email = email or f"user{next(_seq)}@example.com"
    return conn.execute("SELECT create_user(%s, %s, %s, %s, %s) AS id",
                        [email, "Test User", PASSWORD_HASH, timezone, is_admin]).fetchone()["id"]


def set_quota(conn, user_id, kind, max_rows):
    """An administrator raised (or lowered) this account's quota of `kind` (table quotas)."""
    conn.execute("""INSERT INTO quotas (user_id, kind, max_rows) VALUES (%s, %s, %s)
                    ON CONFLICT ON CONSTRAINT quotas_once DO UPDATE SET max_rows = excluded.max_rows""",
                 [user_id, kind, max_rows])


def make_device(conn, user_id, name=None, status="online", min_delay=0, max_delay=0,
                hourly_limit=80, daily_limit=800, phone=None):
    device_id = conn.execute("SELECT create_device(%s, %s, %s, %s, %s, %s) AS id",
                             [user_id, name or f"device {next(_seq)}", min_delay, max_delay,
                              hourly_limit, daily_limit]).fetchone()["id"]
    # Tests put a device straight into a state; production moves it by transport events.
    conn.execute("UPDATE user_devices SET status = %s, phone = %s WHERE id = %s",
                 [status, phone or f"6011{device_id:08d}", device_id])
    return device_id


def make_warm_contact(conn, device_id, phone):
    """The device talked with the number: its chat says since when (chats.talked_at)."""
    conn.execute("""INSERT INTO chats AS c (user_id, device_id, chat_jid, phone, talked_at)
                    SELECT d.user_id, d.id, %s || '@s.whatsapp.net', %s, now() FROM user_devices d WHERE d.id = %s
                    ON CONFLICT (device_id, chat_jid) DO UPDATE SET talked_at = excluded.talked_at""",
                 [phone, phone, device_id])


def record_sends(conn, device_id, sends, minutes_ago=0):
    """Sends claimed `minutes_ago` (0: this minute), recorded on the device's pacing row as the claim
    records them: its minute and hour rings, and its day's count while the send falls on its owner's
    day so far."""
    conn.execute("""UPDATE device_pacing p
                        SET sends_before = _send_ring_add(p.sends_before, p.sends_minute, p.sends_total, t.at, %(k)s,
                                                          interval '1 minute', 61),
                            sends_before_hours = _send_ring_add(p.sends_before_hours, p.sends_hour, p.sends_total,
                                                                t.at, %(k)s, interval '1 hour', 49),
                            sends_total = p.sends_total + %(k)s,
                            sends_minute = greatest(p.sends_minute, date_trunc('minute', t.at)),
                            sends_hour = greatest(p.sends_hour, date_trunc('hour', t.at, 'UTC')),
                            day_count = CASE WHEN t.day = p.day_start THEN p.day_count + %(k)s
                                             WHEN t.day > p.day_start THEN %(k)s ELSE p.day_count END,
                            day_start = greatest(p.day_start, t.day)
                       FROM (SELECT d.id, x.at, date_trunc('day', x.at AT TIME ZONE u.timezone) AT TIME ZONE u.timezone AS day
                               FROM user_devices d JOIN users u ON u.id = d.user_id,
                                    LATERAL (SELECT now() - make_interval(mins => %(ago)s) AS at) x
                              WHERE d.id = %(device)s) t
                      WHERE p.device_id = t.id""", {"k": sends, "ago": minutes_ago, "device": device_id})


def record_minutely_sends(conn, device_ids, first_minute, minutes):
    """A send every minute on each device from `first_minute` (SQL) for `minutes` minutes more,
    recorded on each device's pacing row as the claims would have: its minute and hour rings and its
    day's count (devices that counted no sends in the two days before)."""
    # n sends, one a minute to the last: the running total before the i-th last minute is n - i more,
    # before the i-th last hour n less those sent since it began
    conn.execute(f"""UPDATE device_pacing p
                        SET sends_before = ARRAY(SELECT p.sends_total + %(n)s - i
                                                   FROM generate_series(1, least(61, %(n)s)) i ORDER BY i),
                            sends_before_hours = ARRAY(
                              SELECT p.sends_total + %(n)s
                                     - least(%(n)s, floor(extract(epoch FROM t.last - t.hour) / 60)::int
                                                    + 1 + (i - 1) * 60)
                                FROM generate_series(1, least(49, floor(extract(epoch FROM t.hour - t.first_hour)
                                                                        / 3600)::int + 1)) i ORDER BY i),
                            sends_total = p.sends_total + %(n)s, sends_minute = t.last, sends_hour = t.hour,
                            day_count = CASE WHEN t.day = p.day_start THEN p.day_count ELSE 0 END + t.today,
                            day_start = t.day
                       FROM (SELECT d.id, x.last, x.hour, x.first_hour, y.day,
                                    greatest(0, least(%(n)s, floor(extract(epoch FROM x.last - y.day) / 60)::int + 1)) AS today
                               FROM user_devices d JOIN users u ON u.id = d.user_id,
                                    LATERAL (SELECT m.last, date_trunc('hour', m.last, 'UTC') AS hour,
                                                    date_trunc('hour', {first_minute}, 'UTC') AS first_hour
                                               FROM (SELECT date_trunc('minute', {first_minute})
                                                            + make_interval(mins => %(n)s - 1) AS last) m) x,
                                    LATERAL (SELECT date_trunc('day', x.last AT TIME ZONE u.timezone)
                                                    AT TIME ZONE u.timezone AS day) y
                              WHERE d.id = ANY (%(devices)s)) t
                      WHERE p.device_id = t.id""", {"n": minutes + 1, "devices": device_ids})


def drain_notifies(listener, channel="wa_events", deadline=30):
    """Every notification on `channel` committed before this call, in commit order. The listener
    (autocommit, LISTENing) notifies itself a marker that PostgreSQL delivers after all of them, so
    the wait ends on an event, never on a pause tuned to an idle machine."""
    marker = f"drain-marker-{uuid.uuid4()}"
    listener.execute("SELECT pg_notify(%s, %s)", [channel, marker])
    notes = []
    for note in listener.notifies(timeout=deadline):
        if note.payload == marker:
            return notes
        notes.append(note)
    raise AssertionError(f"the {channel} marker did not arrive within {deadline}s")
