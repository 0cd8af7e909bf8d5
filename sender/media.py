"""Images for sending: loaded from a data URL, an uploaded file or an http(s) URL, and
normalised with Pillow to a JPEG of at most 350 KB (WhatsApp recompresses anything bigger, and
a small JPEG uploads fast). An image that cannot be read fails its message with a clear error."""
import base64
import binascii
import functools
import hashlib
import io
import urllib.request

from PIL import Image, ImageOps, UnidentifiedImageError

from common.config import VAR

MAX_JPEG_BYTES = 350 * 1024
MAX_SOURCE_BYTES = 20 * 1024 * 1024
MAX_SIDE = 1600
UPLOADS = VAR / "uploads"


class MediaError(Exception):
    """The image cannot be used; the message says why, for the message's error_message."""


def _short(url):
    return url if len(url) <= 80 else url[:77] + "..."


def read_source(media_url: str) -> bytes:
    """The raw bytes behind a media_url: data:...;base64, http(s)://, or a stored upload path."""
    if media_url.startswith("data:"):
        header, _, payload = media_url.partition(",")
        try:
            data = base64.b64decode(payload, validate=True) if header.endswith(";base64") \
                else urllib.request.unquote_to_bytes(payload)
        except (binascii.Error, ValueError) as exc:
            raise MediaError(f"image data URL is not valid base64 ({exc})") from exc
    elif media_url.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(media_url, timeout=20) as resp:
                data = resp.read(MAX_SOURCE_BYTES + 1)
        except OSError as exc:
            raise MediaError(f"image could not be fetched from {_short(media_url)} ({exc})") from exc
    else:
        # Only stored uploads: a media_url must never reach other files of the server.
        path = (UPLOADS / media_url).resolve()
        if not path.is_relative_to(UPLOADS.resolve()):
            raise MediaError(f"image {_short(media_url)} is not a data URL, an http(s) URL or an upload")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MediaError(f"image file {_short(media_url)} cannot be read ({exc.strerror})") from exc
    if len(data) > MAX_SOURCE_BYTES:
        raise MediaError(f"image is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB")
    return data


def normalise_jpeg(data: bytes) -> bytes:
    """Any image Pillow reads -> upright RGB JPEG <= MAX_JPEG_BYTES (quality first, then size)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise MediaError(f"image is unreadable ({exc})") from exc
    if img.format == "JPEG" and len(data) <= MAX_JPEG_BYTES and img.mode in ("RGB", "L"):
        return data
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    elif img.mode != "RGB":
        img = img.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    while True:
        for quality in (85, 75, 65, 50):
            out = io.BytesIO()
            img.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= MAX_JPEG_BYTES:
                return out.getvalue()
        img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)))


@functools.lru_cache(maxsize=32)
def prepare_image(media_url: str) -> bytes:
    """The JPEG to send for a message's media_url; cached, as a campaign sends one image many times."""
    return normalise_jpeg(read_source(media_url))


def store_upload(data: bytes) -> str:
    """Normalises an uploaded (or queue-time fetched) image and stores it under var/uploads;
    returns the media_url to put on messages."""
    jpeg = normalise_jpeg(data)
    name = hashlib.sha256(jpeg).hexdigest()[:32] + ".jpg"
    UPLOADS.mkdir(parents=True, exist_ok=True)
    path = UPLOADS / name
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(jpeg)
        tmp.replace(path)
    return str(path)
