"""The dashboard: Flask app factory. Pages render what SQL views compute; JSON lives under /api/."""
import datetime
import logging
import re
import secrets

from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFError, CSRFProtect
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from common.config import VAR, ConfigError, require_database_url, secret_key, web_db_pool, web_proxies, write_private

csrf = CSRFProtect()
log = logging.getLogger("web")

# Each area is one blueprint module in web/ exposing `bp`.
BLUEPRINTS = ["health", "metrics", "auth", "pages", "live", "chat", "openapi", "sequences", "devices", "leads", "webhooks", "campaigns", "media", "quotas"]


class BigintConverter(IntegerConverter):
    """<int:...> ids are bigint: a larger number matches no route (404) instead of failing in SQL."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2 ** 63 - 1)
        super().__init__(url_map, *args, **kwargs)


class IsoJSONProvider(DefaultJSONProvider):
    """Every date and time in JSON is ISO 8601 (Flask's default writes RFC 1123 dates)."""

    @staticmethod
    def default(o):
        if isinstance(o, (datetime.date, datetime.time)):   # datetime is a date
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def _secret_key():
    """SECRET_KEY from the environment; in development a random key kept under var/ (git-ignored)."""
    key = secret_key()
    if key:
        return key
    path = VAR / "secret_key"
    if not path.exists():
        write_private(path, secrets.token_hex(32))
    return path.read_text().strip()


def prepare_connection(conn):
    """A new pooled connection plans the campaign report's pages before it serves a request (see
    prepare_web_session). Only a head start: a failure leaves the connection as it was."""
    try:
        conn.execute("SELECT prepare_web_session()")
    except psycopg.Error as exc:
        log.warning("could not prepare a new database connection (%s); its first report page plans itself", exc)


def create_app(database_url=None, testing=False):
    app = Flask(__name__)
    app.json = IsoJSONProvider(app)
    app.config.update(
        SECRET_KEY=_secret_key(),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
        TESTING=testing,
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_CHECK_DEFAULT=False,  # web.auth checks every cookie-authenticated write itself
    )
    url = database_url or require_database_url()
    app.extensions["db_pool"] = ConnectionPool(
        url, min_size=1, max_size=web_db_pool(), open=True,
        check=ConnectionPool.check_connection,  # after a database restart, no request gets a dead connection
        configure=prepare_connection,
        kwargs={"autocommit": True, "row_factory": dict_row, "application_name": "wa-web"})
    csrf.init_app(app)
    app.url_map.converters["int"] = BigintConverter

    import importlib
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(f"web.{name}").bp)

    _register_errors(app)
    from web.db import setting
    app.jinja_env.globals["setting"] = setting
    app.after_request(_security_headers)
    proxies = web_proxies()
    if proxies:   # behind that many proxies: trust their X-Forwarded-For/-Proto, nobody else's
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    return app


_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]+)?|\[[0-9A-Fa-f:.]+\](:[0-9]+)?")


def _security_headers(response):
    """Scripts, styles and connections from this site only; no framing; no type sniffing; HSTS over https."""
    host = request.host if _HOST.fullmatch(request.host) else "localhost"
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        f"connect-src 'self' ws://{host} wss://{host}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def _wants_json():
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def _register_errors(app):
    @app.errorhandler(CSRFError)
    def csrf_error(e):
        return jsonify(error=f"CSRF check failed: {e.description}"), 400

    @app.errorhandler(HTTPException)
    def http_error(e):
        if _wants_json():
            return jsonify(error=e.description), e.code
        return e

    @app.errorhandler(ConfigError)
    def config_error(e):
        return jsonify(error=str(e)), 503

    @app.errorhandler(RecursionError)
    def too_deep(e):
        # json.loads of a hostile body nested thousands deep (get_json(silent=True) only absorbs ValueError).
        return jsonify(error="the request body is nested too deeply"), 400

    @app.errorhandler(psycopg.OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(e):
        return jsonify(error="database unavailable; try again shortly"), 503
