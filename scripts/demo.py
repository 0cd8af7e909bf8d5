"""Demo account and data for `make run`: created once, idempotent afterwards.
The password is random per installation, kept in var/demo_login (git-ignored), printed by make run."""
import secrets

from common.config import VAR, write_private
from common.db import connect

DEMO_EMAIL = "demo@example.com"


def _demo_password():
    f = VAR / "demo_login"
    if not f.exists():
        write_private(f, secrets.token_urlsafe(9))
    return f.read_text().strip()


def ensure_demo(url):
    from web.auth import hash_password

    password = _demo_password()
    with connect(url, application_name="wa-demo") as c:
        user = c.execute("SELECT id FROM user_for_login(%s)", [DEMO_EMAIL]).fetchone()
        if user is None:
            uid = c.execute("SELECT create_user(%s, 'Demo Operator', %s, 'Asia/Kuala_Lumpur', true) AS id",
                            [DEMO_EMAIL, hash_password(password)]).fetchone()["id"]
        else:
            uid = user["id"]
            c.execute("SELECT set_user_password(%s, %s)", [uid, hash_password(password)])
        c.execute("SELECT seed_demo(%s)", [uid])
    return DEMO_EMAIL, password
