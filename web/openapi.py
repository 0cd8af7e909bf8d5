"""GET /api/openapi.json: the JSON API described from the app itself, so it cannot drift.

Every rule under /api/ in the url_map becomes an operation: its methods, its path parameters
(typed from the URL converters), its summary and description from the view's docstring, and the
common error shape. Request bodies and success responses come from web/schema.py's `accepts` and
`returns`; a response row named by its SQL function, view or JSON document type is described from the
catalogue (api_row_schema)."""
import inspect
import json
import re

from flask import Blueprint, current_app, jsonify

from web.db import one
from web.schema import returns

bp = Blueprint("openapi", __name__)

_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}, "uuid": {"type": "string", "format": "uuid"}}
_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation(rule, method, view):
    doc = inspect.getdoc(view) or ""
    summary, _, description = doc.partition("\n\n")
    op = {
        "operationId": f"{rule.endpoint}.{method.lower()}",
        "summary": " ".join(summary.split()),
        "tags": [rule.endpoint.split(".")[0]],
        "parameters": [{"name": name, "in": "path", "required": True,
                        "schema": _CONVERTER_TYPES.get(conv or "", {"type": "string"})}
                       for conv, name in _PARAM.findall(rule.rule)],
        "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                      "400": _ERROR, "401": _ERROR, "404": _ERROR},
    }
    if description:
        op["description"] = " ".join(description.split())
    declared = dict(getattr(view, "openapi", {}))
    responses = declared.pop("responses", {})
    if any(code.startswith("2") for code in responses):
        del op["responses"]["200"]
    op["responses"].update(responses)
    op.update(declared)
    return op


_REF = re.compile(r'"#/components/schemas/(\w+)"')


def _row_schemas(paths):
    """The schema of every row (function, view, JSON document type) the operations refer to."""
    names = sorted(set(_REF.findall(json.dumps(paths))) - {"Error"})
    return {name: one("SELECT api_row_schema(%s) AS s", [name])["s"] for name in names}


def build_document(app):
    paths = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        view = app.view_functions[rule.endpoint]
        path = _PARAM.sub(r"{\2}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, method, view)
    return {
        "openapi": "3.1.0",
        "info": {"title": "WA Broadcast API", "version": "1",
                 "description": "Authenticate with the session cookie (writes need the X-CSRFToken header) "
                                "or with Authorization: Bearer <api token> from POST /api/tokens."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "cookie": {"type": "apiKey", "in": "cookie", "name": "session"}},
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}},
                        **_row_schemas(paths)},
        },
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }


@bp.route("/api/openapi.json")
@returns({"type": "object", "description": "an OpenAPI 3.1 document"})
def document():
    """This document: every /api route with its methods, path parameters and docstring."""
    return jsonify(build_document(current_app))
