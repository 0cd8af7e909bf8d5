"""JSON bodies declared once. A `Body` both validates what a view receives (`@accepts`) and is that
operation's requestBody schema in /api/openapi.json; `@returns` names the response's shape, whose
rows are described from the SQL functions or views that return them, and JSON built in SQL from
the composite type its function fills (api_row_schema), so neither side of the document can drift
from the code.

    @bp.route("/api/things", methods=["POST"])
    @login_required
    @accepts(Body(name=Text(required=True), size=Int()))
    @returns(obj(thing=row("get_thing")), status=201)
    def create(body): ...
"""
import functools
import math

from flask import abort

from web.body import json_body
from web.db import setting

BIGINT = 2 ** 63


def optional_int(value, field):
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (bool, float)):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        abort(400, description=f"{field} must be a whole number")
    if not -BIGINT <= number < BIGINT:
        abort(400, description=f"{field} is out of range")
    return number


def text(body, field, default=""):
    """A text field (numbers accepted as text, e.g. a phone); lists, objects and NUL bytes are a 400."""
    value = body.get(field, default)
    if value is None or isinstance(value, str):
        if value and "\x00" in value:
            abort(400, description=f"{field} must not contain NUL characters")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    abort(400, description=f"{field} must be text")


class Field:
    """One field: its JSON Schema and its check. A missing field takes `default`, or what
    `default` answers when it is a function (a database setting, read per request)."""
    schema = {}

    def __init__(self, *, required=False, description="", default=None):
        self.required, self.description, self.default = required, description, default

    def json_schema(self):
        extra = {"description": self.description or None, "default": None if callable(self.default) else self.default}
        return {**self.schema, **{k: v for k, v in extra.items() if v not in (None, "")}}

    def missing(self):
        return self.default() if callable(self.default) else self.default

    def parse(self, body, name):
        return self.check(body[name] if name in body else self.missing(), name)

    def check(self, value, name):
        raise NotImplementedError


class Text(Field):
    """Text (a number is taken as its digits, e.g. a phone); no NUL characters."""
    schema = {"type": ["string", "null"]}

    def __init__(self, *, max_length=None, enum=None, fmt=None, **kw):
        super().__init__(**kw)
        self.max_length, self.enum, self.fmt = max_length, enum, fmt

    def json_schema(self):
        extra = {"maxLength": self.max_length, "enum": self.enum, "format": self.fmt}
        return {**super().json_schema(), **{k: v for k, v in extra.items() if v is not None}}

    def parse(self, body, name):
        return self.check(text(body, name, self.missing()), name)

    def check(self, value, name):
        if value is not None and self.max_length is not None and len(value) > self.max_length:
            abort(400, description=f"{name} is longer than {self.max_length} characters")
        if value is not None and self.enum is not None and value not in self.enum:
            abort(400, description=f"{name} must be one of {', '.join(self.enum)}")
        return value


class Int(Field):
    """A whole number (bigint range)."""
    schema = {"type": ["integer", "null"], "minimum": -2 ** 63, "maximum": 2 ** 63 - 1}

    def check(self, value, name):
        return optional_int(value, name)


def setting_default(name):
    """A whole number that, when missing, is the database's setting default_<name> (defined once, in SQL)."""
    return Int(default=lambda: setting("default_" + name), description=f"default: the setting default_{name}")


class Number(Field):
    """A number, whole or not (a form's text of one too)."""
    schema = {"type": ["number", "string", "null"]}

    def check(self, value, name):
        if value in (None, ""):
            return None
        try:
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError
        except (TypeError, ValueError):
            abort(400, description=f"{name} must be a number")
        return value


class IntList(Field):
    """Whole numbers: a list, or (from a form) one comma-separated text."""
    schema = {"type": ["array", "null"], "items": Int.schema | {"type": "integer"}}

    def check(self, value, name):
        if value in (None, "", []):
            return None
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            abort(400, description=f"{name} must be a list of ids")
        return [optional_int(v, name) for v in value]


class Bool(Field):
    schema = {"type": ["boolean", "null"]}

    def check(self, value, name):
        if value is not None and not isinstance(value, bool):
            abort(400, description=f"{name} must be true or false")
        return value


class TextList(Field):
    """A list of texts."""

    def __init__(self, *, enum=None, **kw):
        super().__init__(**kw)
        self.enum = enum

    def json_schema(self):
        items = {"type": "string", **({"enum": self.enum} if self.enum else {})}
        return {**super().json_schema(), "type": ["array", "null"], "items": items}

    def check(self, value, name):
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            abort(400, description=f"{name} must be a list of texts")
        return value


class Objects(Field):
    """A list of JSON objects, each with `body`'s fields."""

    def __init__(self, body, **kw):
        super().__init__(**kw)
        self.body = body

    def json_schema(self):
        return {**super().json_schema(), "type": ["array", "null"], "items": self.body.json_schema()}

    def check(self, value, name):
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            abort(400, description=f"{name} must be a list of objects")
        return [self.body.parse(v) for v in value]


class Upload(Field):
    """A file in a multipart/form-data body (documented only: the view reads request.files)."""
    schema = {"type": "string", "format": "binary"}


class Body:
    """A JSON object's fields: unknown fields are ignored, missing ones take their default."""

    def __init__(self, **fields):
        self.fields = fields

    def extended(self, **fields):
        """This body with more fields, these first."""
        return Body(**fields, **self.fields)

    def json_schema(self):
        required = [n for n, f in self.fields.items() if f.required]
        return {"type": "object", "properties": {n: f.json_schema() for n, f in self.fields.items()},
                **({"required": required} if required else {})}

    def parse(self, raw):
        values = {name: field.parse(raw, name) for name, field in self.fields.items()}
        missing = [n for n, f in self.fields.items() if f.required and values[n] in (None, "")]
        if missing:
            abort(400, description=f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
        return values


def _document(view, **operation):
    doc = dict(getattr(view, "openapi", {}))
    for key, value in operation.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    view.openapi = doc


def describes(body, media="application/json"):
    """Documents the request body of a view that parses it with `body.parse` itself (after a check
    that must come first, say), or reads a multipart/form-data upload."""
    def decorate(view):
        content = getattr(view, "openapi", {}).get("requestBody", {}).get("content", {})
        _document(view, requestBody={"required": True, "content": {**content, media: {"schema": body.json_schema()}}})
        return view
    return decorate


def accepts(body):
    """The view gets `body=` the validated JSON object (a 400 names the bad field)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            return view(*args, body=body.parse(json_body()), **kwargs)
        return describes(body)(wrapped)
    return decorate


def returns(schema, status=200, description="OK", media="application/json"):
    """Documents the success response's schema (build it with row, rows, obj, record); None: no content."""
    content = {} if schema is None else {"content": {media: {"schema": schema}}}

    def decorate(view):
        _document(view, responses={str(status): {"description": description, **content}})
        return view
    return decorate


def row(name):
    """One row of a SQL function's result or of a view, or a JSON document built in SQL (its
    composite type, *_doc), described from the catalogue when the document is built."""
    return {"$ref": f"#/components/schemas/{name}"}


def rows(name):
    return array(row(name))


def array(items):
    return {"type": "array", "items": items}


def with_fields(schema, **properties):
    """`schema` (say a row) and these properties too."""
    return {"allOf": [schema, obj(**properties)]}


def obj(**properties):
    """A JSON object with exactly these properties, all present."""
    return {"type": "object", "properties": properties, "required": list(properties)}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
DATE_TIME = {"type": "string", "format": "date-time"}
NULLABLE_TEXT = {"type": ["string", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
INTEGERS = {"type": "array", "items": INTEGER}
BINARY = {"type": "string", "format": "binary"}
