"""The one reader of request bodies: every route takes its JSON object (or form) from here, so
every route refuses a non-object the same way."""
from flask import abort, request


def json_body(what="a JSON object", required=False):
    """The JSON object sent. No body (or unparseable JSON): {} — or a 400 when `required`;
    anything that is not an object (a list, a number): a 400 saying to send `what`."""
    body = request.get_json(silent=True)
    if body is None and not required:
        return {}
    if not isinstance(body, dict):
        abort(400, description=f"send {what}")
    return body


def json_or_form():
    """A JSON object when the request says it is JSON, else the form fields (API scripts and
    HTML forms post to the same routes)."""
    return json_body() if request.is_json else request.form
