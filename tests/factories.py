"""Small builders for test data, going through the same SQL functions the app uses."""
import itertools

# argon2id hash of "password" (hashing for real in every test would cost ~50 ms each).
PASSWORD = "password"
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$lY5zMV+6N8WqYdj1J+N6mw$xNtefSY+QBHS27orlfxyjbRbZPczRD7xShhexU8n1Cc"

_seq = itertools.count(1)


def make_user(conn, email=None, timezone="Asia/Kuala_Lumpur", is_admin=False):
    email = email or f"user{next(_seq)}@example.com"
    return conn.execute("SELECT create_user(%s, %s, %s, %s, %s) AS id",
                        [email, "Test User", PASSWORD_HASH, timezone, is_admin]).fetchone()["id"]


def make_device(conn, user_id, name=None, status="online", min_delay=0, max_delay=0,
                hourly_limit=80, daily_limit=800, phone=None):
    device_id = conn.execute("SELECT create_device(%s, %s, %s, %s, %s, %s) AS id",
                             [user_id, name or f"device {next(_seq)}", min_delay, max_delay,
                              hourly_limit, daily_limit]).fetchone()["id"]
    # Tests put a device straight into a state; production moves it by transport events.
    conn.execute("UPDATE user_devices SET status = %s, phone = %s WHERE id = %s",
                 [status, phone or f"6011{device_id:08d}", device_id])
    return device_id
