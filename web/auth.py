"""Accounts: register, log in/out, change password, API tokens; the `login_required` guard.

A request is signed in by the session cookie (forms and the browser's fetch calls, CSRF-checked)
or by `Authorization: Bearer <api token>` (scripts; no cookie, so no CSRF check). The cookie holds
only a random session token; the session itself is a row (user_sessions), so logging out or
changing the password ends it on the server, not just in this browser."""
import contextlib
import functools
import re
import secrets
import threading
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from flask import (Blueprint, abort, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from web import csrf
from web.body import json_or_form
from web.db import all_rows, one
from web.schema import STRING, Body, Int, Text, describes, obj, returns, row, rows, with_fields

bp = Blueprint("auth", __name__)
hasher = PasswordHasher()
MIN_PASSWORD = 8
SESSION_LIFETIME = timedelta(days=31)
TOKEN_DAYS = 90          # an API token's life unless the request says otherwise (1 to 365)


class _SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the request came over https."""

    def get_cookie_secure(self, app):
        return request.is_secure or super().get_cookie_secure(app)


@bp.record_once
def _sessions(state):
    state.app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    state.app.session_interface = _SessionCookies()


def start_session(user_id):
    """Signs this browser in: a new server-side session, the old cookie's content dropped."""
    token = secrets.token_urlsafe(32)
    one("SELECT open_session(%s, %s, %s)", [user_id, token, SESSION_LIFETIME])
    session.clear()
    session["sid"] = token
    session.permanent = True


@bp.before_app_request
def load_user():
    g.user = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and request.path != "/metrics":   # /metrics checks its own token
        uid = one("SELECT token_user(%s, 'api') AS uid", [header[7:].strip()])["uid"]
        if uid is None:
            abort(401, description="unknown, expired or revoked API token")
        g.user = one("SELECT * FROM session_user_info(%s)", [uid])
        g.via_token = True
        return
    g.via_token = False
    if request.method not in ("GET", "HEAD", "OPTIONS") and (session or not request.path.startswith("/api/webhooks/")):
        csrf.protect()  # only a cookie-less webhook call (it carries its own secret) skips the check
    sid = session.get("sid")
    if isinstance(sid, str):
        g.user = one("SELECT * FROM session_account(%s)", [sid])
        if g.user is None:       # logged out, expired, or ended by a password change
            session.clear()


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.user is None:
            if request.path.startswith("/api/") or request.path == "/ws":
                abort(401, description="sign in, or send Authorization: Bearer <api token>")
            return redirect(url_for("auth.login", next=request.full_path))
        return view(*args, **kwargs)
    return wrapped


def admin_required(view):
    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not g.user["is_admin"]:
            abort(403, description="administrators only")
        return view(*args, **kwargs)
    return wrapped


# argon2 takes 64 MiB and tens of milliseconds a call: at most this many at once per process, so
# a burst of logins or registrations cannot take the web tier's memory.
_HASHING = threading.BoundedSemaphore(2)
HASH_WAIT_SECONDS = 10.0


@contextlib.contextmanager
def _hashing():
    if not _HASHING.acquire(timeout=HASH_WAIT_SECONDS):
        abort(503, description="too many sign-ins at this moment; try again shortly")
    try:
        yield
    finally:
        _HASHING.release()


def hash_password(password):
    if len(password or "") < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    with _hashing():
        return hasher.hash(password)


@functools.cache
def _no_account_hash():
    """Checked when the email has no account, so that answer takes as long as a wrong password."""
    return hasher.hash(secrets.token_hex(16))


def _check_password(stored_hash, password):
    with _hashing():
        try:
            return hasher.verify(stored_hash or _no_account_hash(), password) and stored_hash is not None
        except (VerifyMismatchError, InvalidHashError):
            return False


def _attempt(kind, email):
    """Records a login or registration attempt from this address before any password work; None
    when this address or email has tried too often (the same answer whether or not the account exists)."""
    return one("SELECT begin_auth_attempt(%s, %s, %s) AS id", [kind, email, request.remote_addr])["id"]


# Where to go after signing in: a path on this site only. One leading "/", then URL characters
# only: browsers drop tabs and newlines and read a backslash as "/", so "/<TAB>/evil.example" or
# "/<backslash>evil.example" would leave the site, and a CR or LF cannot go into a Location header.
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")


def _safe_next(target):
    return target if target and _LOCAL_PATH.fullmatch(target) else url_for("pages.dashboard")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html")
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    attempt = _attempt("login", email)
    if attempt is None:
        flash("Too many attempts. Try again in 15 minutes.")
        return render_template("login.html", email=email), 429
    user = one("SELECT * FROM user_for_login(%s)", [email])
    ok = _check_password(user and user["password_hash"], password)
    if not ok:
        flash("Wrong email or password.")
        return render_template("login.html", email=email), 401
    one("SELECT finish_auth_attempt(%s, true)", [attempt])
    start_session(user["id"])
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    if isinstance(session.get("sid"), str):
        one("SELECT close_session(%s)", [session["sid"]])
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    if request.method == "GET":
        return render_template("register.html")
    f = request.form
    if _attempt("register", f.get("email", "")) is None:
        flash("Too many accounts registered from your address. Try again in an hour.")
        return render_template("register.html", email=f.get("email", "")), 429
    try:
        pw_hash = hash_password(f.get("password", ""))
        uid = one("SELECT create_user(%s, %s, %s, %s, false) AS id",
                  [f.get("email", ""), f.get("full_name", ""), pw_hash,
                   f.get("timezone") or "Asia/Kuala_Lumpur"])["id"]
    except ValueError as exc:
        flash(str(exc))
        return render_template("register.html", email=f.get("email", "")), 400
    except HTTPException as exc:   # bad email or time zone, or the email is taken
        flash(exc.description)
        return render_template("register.html", email=f.get("email", "")), exc.code
    start_session(uid)
    return redirect(url_for("pages.dashboard"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    if request.method == "GET":
        return render_template("password.html")
    attempt = _attempt("login", g.user["email"])   # guessing the current password is guessing a login
    if attempt is None:
        flash("Too many attempts. Try again in 15 minutes.")
        return render_template("password.html"), 429
    stored = one("SELECT password_hash FROM user_for_login(%s)", [g.user["email"]])
    if not _check_password(stored["password_hash"], request.form.get("current_password", "")):
        flash("The current password is wrong.")
        return render_template("password.html"), 400
    one("SELECT finish_auth_attempt(%s, true)", [attempt])
    try:
        pw_hash = hash_password(request.form.get("new_password", ""))
    except ValueError as exc:
        flash(str(exc))
        return render_template("password.html"), 400
    one("SELECT set_user_password(%s, %s)", [g.user["id"], pw_hash])   # ends every session ...
    start_session(g.user["id"])                                          # ... but this browser's
    flash("Password changed; every other browser is signed out.")
    return redirect(url_for("pages.dashboard"))


@bp.route("/account")
@login_required
def account():
    return render_template("account.html", tokens=all_rows("SELECT * FROM list_tokens(%s)", [g.user["id"]]),
                           token_days=TOKEN_DAYS, quotas=all_rows("SELECT * FROM account_quotas(%s)", [g.user["id"]]))


@bp.route("/api/tokens")
@login_required
@returns(obj(tokens=rows("list_tokens")))
def list_tokens():
    """Your API tokens and webhook secrets: name, purpose, when made, last used and expiring (never the secret)."""
    return jsonify(tokens=all_rows("SELECT * FROM list_tokens(%s)", [g.user["id"]]))


@bp.route("/api/tokens", methods=["POST"])
@login_required
@describes(Body(name=Text(required=True, description="what uses it"), purpose=Text(default="api", enum=["api", "webhook"]),
                expires_in_days=Int(default=TOKEN_DAYS, description="1 to 365")))
@returns(with_fields(row("issue_token"), token=STRING), status=201, description="Created (the secret, shown once)")
def create_token():
    """Issues a named personal API token (or, with purpose=webhook, a lead-intake secret) that expires after expires_in_days (1 to 365, default 90); the secret is shown once. Only a signed-in browser can do this, not a token."""
    if g.via_token:
        abort(403, description="an API token cannot create tokens; sign in to the dashboard to make one")
    body = json_or_form()
    days = body.get("expires_in_days", TOKEN_DAYS)
    if isinstance(days, bool) or not re.fullmatch(r"[0-9]{1,3}", str(days)):
        abort(400, description="expires_in_days must be a whole number of days from 1 to 365")
    token = secrets.token_urlsafe(32)
    row = one("SELECT * FROM issue_token(%s, %s, %s, %s, %s)",
              [g.user["id"], str(body.get("purpose") or "api"), str(body.get("name") or ""), token, int(days)])
    return jsonify(**row, token=token), 201


@bp.route("/api/tokens/<int:token_id>", methods=["DELETE"])
@login_required
@returns(None, status=204, description="Revoked")
def revoke_token(token_id):
    """Revokes one of your tokens: it stops working at once."""
    if not one("SELECT revoke_token(%s, %s) AS ok", [g.user["id"], token_id])["ok"]:
        abort(404, description="no such token")
    return "", 204
