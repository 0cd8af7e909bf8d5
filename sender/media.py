"""The image a queued message sends: the stored JPEG its media_url (/media/<id>) names, already
validated and normalised when the campaign, step or chat image was saved (web/media.py). Read
from the database once per process and cached; a sender never fetches a URL."""
import functools
import threading

import psycopg

from common.db import connect
from common.images import STORED_MEDIA, MediaError
from sender.transport.base import NotSent

_lock = threading.Lock()
_db = {"url": None, "conn": None}   # one connection per process, opened on first need


def use_database(url):
    """Where the stored images are: the worker's database (set once when a worker starts)."""
    with _lock:
        if _db["url"] != url:
            if _db["conn"] is not None:
                _db["conn"].close()
            _db.update(url=url, conn=None)
            prepare_image.cache_clear()


def _load(media_id):
    with _lock:
        try:
            if _db["conn"] is None or _db["conn"].closed:
                _db["conn"] = connect(_db["url"], application_name="wa-sender-media")
            return _db["conn"].execute("SELECT media_jpeg(%s) AS jpeg", [media_id]).fetchone()["jpeg"]
        except psycopg.OperationalError as exc:
            _db["conn"] = None
            raise NotSent(f"stored image {media_id} could not be read now ({exc.__class__.__name__})") from exc


@functools.lru_cache(maxsize=32)
def prepare_image(media_url: str) -> bytes:
    """The JPEG to send for a message's media_url; cached, as a campaign sends one image many times."""
    match = STORED_MEDIA.fullmatch(media_url or "")
    if match is None:
        raise MediaError("image was not stored when it was saved (save the campaign or step again)")
    jpeg = _load(int(match.group(1)))
    if jpeg is None:
        raise MediaError(f"stored image {match.group(1)} no longer exists")
    return bytes(jpeg)
