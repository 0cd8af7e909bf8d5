"""Accounts: register, log in/out, change password, API tokens; the `login_required` guard.

A request is signed in by the session cookie (forms and the browser's fetch calls, CSRF-checked)
or by `Authorization: Bearer <api token>` (scripts; no cookie, so no CSRF check)."""
import functools
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from flask import (Blueprint, abort, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)

from web import csrf
from web.db import one

bp = Blueprint("auth", __name__)
hasher = PasswordHasher()
MIN_PASSWORD = 8


@bp.before_app_request
def load_user():
    g.user = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        uid = one("SELECT token_user(%s, 'api') AS uid", [header[7:].strip()])["uid"]
        if uid is None:
            abort(401, description="unknown API token")
        g.user = one("SELECT * FROM session_user_info(%s)", [uid])
        g.via_token = True
        return
    g.via_token = False
    if request.method not in ("GET", "HEAD", "OPTIONS") and (session or not request.path.startswith("/api/webhooks/")):
        csrf.protect()  # only a cookie-less webhook call (it carries its own secret) skips the check
    uid = session.get("uid")
    if uid is not None:
        g.user = one("SELECT * FROM session_user_info(%s)", [uid])
        if g.user is None:
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


def hash_password(password):
    if len(password or "") < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    return hasher.hash(password)


def _check_password(stored_hash, password):
    try:
        return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


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
    if one("SELECT login_throttled(%s) AS t", [email])["t"]:
        flash("Too many failed attempts for this email. Try again in 15 minutes.")
        return render_template("login.html", email=email), 429
    user = one("SELECT * FROM user_for_login(%s)", [email])
    ok = user is not None and _check_password(user["password_hash"], password)
    one("SELECT record_login(%s, %s)", [email, ok])
    if not ok:
        flash("Wrong email or password.")
        return render_template("login.html", email=email), 401
    session.clear()
    session["uid"] = user["id"]
    session.permanent = True
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    if request.method == "GET":
        return render_template("register.html")
    f = request.form
    try:
        pw_hash = hash_password(f.get("password", ""))
    except ValueError as exc:
        flash(str(exc))
        return render_template("register.html", email=f.get("email", "")), 400
    uid = one("SELECT create_user(%s, %s, %s, %s, false) AS id",
              [f.get("email", ""), f.get("full_name", ""), pw_hash,
               f.get("timezone") or "Asia/Kuala_Lumpur"])["id"]
    session.clear()
    session["uid"] = uid
    return redirect(url_for("pages.dashboard"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    if request.method == "GET":
        return render_template("password.html")
    stored = one("SELECT password_hash FROM user_for_login(%s)", [g.user["email"]])
    if not _check_password(stored["password_hash"], request.form.get("current_password", "")):
        flash("The current password is wrong.")
        return render_template("password.html"), 400
    try:
        pw_hash = hash_password(request.form.get("new_password", ""))
    except ValueError as exc:
        flash(str(exc))
        return render_template("password.html"), 400
    one("SELECT set_user_password(%s, %s)", [g.user["id"], pw_hash])
    flash("Password changed.")
    return redirect(url_for("pages.dashboard"))


@bp.route("/api/tokens", methods=["POST"])
@login_required
def create_token():
    """Issues a personal API token (or, with purpose=webhook, a lead-intake secret); shown once."""
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) and body else request.form   # JSON that is not an object: the form
    purpose = body.get("purpose", "api")
    if purpose not in ("api", "webhook"):
        abort(400, description="purpose must be 'api' or 'webhook'")
    token = secrets.token_urlsafe(32)
    token_id = one("SELECT issue_token(%s, %s, %s, %s) AS id",
                   [g.user["id"], purpose, str(body.get("name", ""))[:100], token])["id"]
    return jsonify(id=token_id, purpose=purpose, token=token), 201
