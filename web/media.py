"""Stored images: the upload (POST /api/media), the owner's view of one (/media/<id>), and the one
way an image URL typed into a campaign or step becomes a stored image — fetched once, when it is
saved, by the guarded fetcher (common/fetch.py), then normalised (common/images.py). Queued
messages carry /media/<id>; no sender ever fetches a user's URL."""
import base64
import binascii
import re
import time

from flask import Blueprint, Response, abort, g, jsonify, request, url_for

from common import fetch as guarded
from common.images import STORED_MEDIA, MediaError, normalise_jpeg
from web.auth import login_required
from web.db import one
from web.schema import INTEGER, STRING, Body, Upload, describes, obj, returns

bp = Blueprint("media", __name__)

MAX_UPLOAD_BYTES = guarded.MAX_BYTES
# An image pasted as a data URL is decoded and stored like an upload (never copied into rows).
DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,(.*)", re.S)
# Which addresses image URLs may reach: the public internet only (tests add their loopback server).
ADDRESS_POLICY = guarded.is_public_address


def store(data, source=""):
    """Normalises an image and stores it for the signed-in owner; returns its media id."""
    try:
        jpeg = normalise_jpeg(data)
    except MediaError as exc:
        abort(400, description=str(exc))
    return one("SELECT store_media(%s, %s, %s) AS id", [g.user["id"], jpeg, source])["id"]


def fetch_deadline():
    """One time budget for every image fetched while saving one campaign or sequence."""
    return time.monotonic() + guarded.TOTAL_SECONDS


def media_id_for(url, deadline, field):
    """The stored image for an image URL typed by the owner: /media/<id> names a stored one
    (SQL checks it is theirs), a URL they saved before is not fetched again, any other is fetched now."""
    if not url:
        return None
    pasted = DATA_URL.fullmatch(url)
    if pasted:
        return store(_decoded(pasted.group(1), field))
    stored = STORED_MEDIA.fullmatch(url)
    if stored:
        return int(stored.group(1))
    try:
        guarded.check_url(url)
        known = one("SELECT media_from_source(%s, %s) AS id", [g.user["id"], url])["id"]
        if known is not None:
            return known
        data = guarded.fetch(url, deadline=deadline, allowed=ADDRESS_POLICY)
    except guarded.FetchError as exc:
        abort(400, description=f"{field}: {exc}")
    return store(data, url)


def source_url(url):
    """Where a saved image came from, as a campaign or step keeps it: a data URL is the image itself
    (stored once, by media_id), so nothing is kept."""
    return None if not url or DATA_URL.fullmatch(url) else url


def _decoded(payload, field):
    if len(payload) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
        abort(413, description=f"{field}: the image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        abort(400, description=f"{field}: the data URL is not valid base64")


@bp.route("/api/media", methods=["POST"])
@login_required
@describes(Body(image=Upload(required=True, description="JPEG, PNG, WebP or GIF, at most 10 MB (or send it as the raw body)")),
           media="multipart/form-data")
@returns(obj(id=INTEGER, url=STRING), status=201, description="Stored")
def upload():
    """Uploads an image (multipart field `image`, or the raw body; JPEG, PNG, WebP or GIF, at most 10 MB): normalised to a JPEG of at most 350 KB and stored. Answers {id, url}; send the id as a campaign's or step's media_id."""
    image = request.files.get("image")
    data = (image.stream if image else request.stream).read(MAX_UPLOAD_BYTES + 1)
    if not data:
        abort(400, description="send the image as the multipart field 'image' or as the request body")
    if len(data) > MAX_UPLOAD_BYTES:
        abort(413, description=f"the image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    media_id = store(data)
    return jsonify(id=media_id, url=url_for("media.view", media_id=media_id)), 201


@bp.route("/media/<int:media_id>")
@login_required
def view(media_id):
    row = one("SELECT * FROM owned_media(%s, %s)", [g.user["id"], media_id])
    if row is None:
        abort(404, description="image not found")
    return Response(bytes(row["jpeg"]), mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})
