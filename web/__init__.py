"""The dashboard: Flask app factory. Pages render what SQL views compute; JSON lives under /api/."""
import os
import secrets

from flask import Flask, jsonify, request
from flask_wtf.csrf import CSRFError, CSRFProtect
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from common.config import VAR, ConfigError, require_database_url

csrf = CSRFProtect()

# Each area is one blueprint module in web/ exposing `bp`.
BLUEPRINTS = ["health", "auth", "pages", "live", "chat", "openapi", "sequences", "devices", "leads", "webhooks", "campaigns", "media"]


class BigintConverter(IntegerConverter):
    """<int:...> ids are bigint: a larger number matches no route (404) instead of failing in SQL."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2 ** 63 - 1)
        super().__init__(url_map, *args, **kwargs)


def _secret_key():
    """SECRET_KEY from the environment; in development a random key kept under var/ (git-ignored)."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = VAR / "secret_key"
    if not path.exists():
        VAR.mkdir(exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(database_url=None, testing=False):
    app = Flask(__name__)
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
        url, min_size=1, max_size=int(os.environ.get("WEB_DB_POOL", "10")), open=True,
        check=ConnectionPool.check_connection,  # after a database restart, no request gets a dead connection
        kwargs={"autocommit": True, "row_factory": dict_row, "application_name": "wa-web"})
    csrf.init_app(app)
    app.url_map.converters["int"] = BigintConverter

    import importlib
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(f"web.{name}").bp)

    _register_errors(app)
    return app


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
