"""The WhatsApp Web view of one device: chat list, history paged backwards (the queue's sends
included), received images' thumbnails, sending text and images (compressed in the browser), new
messages and receipts arriving live over /ws."""
from flask import Blueprint, Response, abort, g, jsonify, render_template, request, url_for

from common.images import MediaError, open_image
from web.auth import login_required
from web.body import json_body
from web.db import all_rows, one
from web.media import store
from web.schema import (BINARY, BOOLEAN, DATE_TIME, INTEGER, NULLABLE_TEXT, STRING, Body, Text, Upload, array,
                        describes, obj, returns, row, rows, with_fields)

bp = Blueprint("chat", __name__)

MAX_IMAGE_BYTES = 350 * 1024  # the browser compresses to this; the server refuses anything larger
HISTORY_PAGE = 40


def _device_or_404(device_id):
    device = one("SELECT * FROM chat_view_device(%s, %s)", [g.user["id"], device_id])
    if device is None:
        abort(404, description="device not found")
    return device


def _chat_or_404(chat_id):
    chat = one("SELECT * FROM chat_view_chat(%s, %s)", [g.user["id"], chat_id])
    if chat is None:
        abort(404, description="chat not found")
    return chat


@bp.route("/device/<int:device_id>/whatsapp-web")
@login_required
def view(device_id):
    return render_template("chat/view.html", device=_device_or_404(device_id))


@bp.route("/api/devices/<int:device_id>/chats")
@login_required
@returns(obj(chats=rows("chat_search"), device_status=STRING))
def list_chats(device_id):
    """The device's chats with a message in the last 30 days, newest first, and the device's
    status now. Query: `q` searches names, numbers and last messages."""
    device = _device_or_404(device_id)
    rows = all_rows("SELECT * FROM chat_search(%s, %s, %s, 30, 200)",
                    [g.user["id"], device_id, request.args.get("q")])
    return jsonify(chats=rows, device_status=device["status"])


def _message(row):
    return {**row, "thumbnail_url": url_for("chat.thumbnail", message_id=row["id"]) if row["has_thumbnail"] else None}


@bp.route("/api/chats/<int:chat_id>/messages")
@login_required
@returns(obj(messages=array(with_fields(row("chat_messages"), thumbnail_url=NULLABLE_TEXT)),
             next={**obj(before_at=DATE_TIME, before_key=STRING), "type": ["object", "null"],
                   "description": "the cursor of the page before (null: the start of the chat)"}))
def history(chat_id):
    """A chat's messages, newest first, HISTORY_PAGE at a time. Query: `before_at` and
    `before_key` (the oldest row already shown) page backwards; `next` in the answer is the
    cursor for the page before, null at the start of the chat."""
    _chat_or_404(chat_id)
    rows = all_rows("SELECT * FROM chat_messages(%s, %s, %s, %s, %s)",
                    [g.user["id"], chat_id, HISTORY_PAGE, request.args.get("before_at") or None,
                     request.args.get("before_key") or None])
    messages = [_message(r) for r in rows]
    cursor = ({"before_at": messages[-1]["at"], "before_key": messages[-1]["key"]}
              if len(messages) == HISTORY_PAGE else None)
    return jsonify(messages=messages, next=cursor)


@bp.route("/api/chat-thumbnails/<int:message_id>.jpg")
@login_required
@returns(BINARY, media="image/jpeg")
def thumbnail(message_id):
    """The JPEG preview of a received image (a history row's `thumbnail_url`)."""
    data = one("SELECT chat_thumbnail(%s, %s) AS t", [g.user["id"], message_id])["t"]
    if data is None:
        abort(404, description="no such image")
    return Response(bytes(data), mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@bp.route("/api/chats/<int:chat_id>/read", methods=["POST"])
@login_required
@returns(obj(ok=BOOLEAN))
def mark_read(chat_id):
    """Clears the chat's unread badge."""
    if not one("SELECT mark_chat_read(%s, %s) AS ok", [g.user["id"], chat_id])["ok"]:
        abort(404, description="chat not found")
    return jsonify(ok=True)


@bp.route("/api/chats/<int:chat_id>/messages", methods=["POST"])
@login_required
@describes(Body(text=Text(required=True)))
@describes(Body(image=Upload(required=True, description="JPEG, PNG or WebP, at most 350 KB"), caption=Text()),
           media="multipart/form-data")
@returns(obj(id=INTEGER), status=201, description="Queued")
def send(chat_id):
    """Queues a message to the chat's number from its device: JSON {"text"}, or a multipart form
    with `image` (JPEG/PNG/WebP, at most 350 KB) and an optional `caption`."""
    chat = _chat_or_404(chat_id)
    if chat["phone"] is None:
        abort(400, description="this chat has no phone number to send to")
    image = request.files.get("image")
    if image is None:
        text = json_body('JSON {"text": "..."} or a form with an image').get("text")
        if not isinstance(text, str):
            abort(400, description='send JSON {"text": "..."} or a form with an image')
        message_id = one("SELECT send_chat_message(%s, %s, %s, %s) AS id",
                         [g.user["id"], chat["device_id"], chat["phone"], text])["id"]
    else:
        media_id = _store_image(image.read(MAX_IMAGE_BYTES + 1))
        message_id = one("SELECT send_chat_image(%s, %s, %s, %s, %s) AS id",
                         [g.user["id"], chat["device_id"], chat["phone"], request.form.get("caption", ""),
                          media_id])["id"]
    return jsonify(id=message_id), 201


def _store_image(data):
    """Checks an uploaded image (the browser compressed it) and stores it like every image a
    message sends (web/media.py); returns its media id."""
    if len(data) > MAX_IMAGE_BYTES:
        abort(400, description="the image is larger than 350 KB")
    try:
        kind = open_image(data).format
    except MediaError as exc:
        abort(400, description=str(exc))
    if kind not in ("JPEG", "PNG", "WEBP"):
        abort(400, description="send a JPEG, PNG or WebP image")
    return store(data)
