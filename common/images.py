"""Images for sending, normalised once when they are saved: any JPEG, PNG, WebP or GIF becomes an
upright RGB JPEG of at most 350 KB (WhatsApp recompresses anything bigger, and a small JPEG
uploads fast). What cannot be read, or would take too much memory to decode, is refused with a
clear error."""
import io
import re

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_JPEG_BYTES = 350 * 1024
MAX_SIDE = 1600
# Decoding costs memory per pixel whatever the file size: a 350 KB palette PNG can declare 170
# megapixels (680 MB once converted). Pillow only refuses past twice its own 89 MP limit.
MAX_PIXELS = 40_000_000
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")   # never formats that run helpers (EPS runs Ghostscript)
# A stored image's media_url (SQL media_path): where its owner views it, and what senders send.
STORED_MEDIA = re.compile(r"/media/([1-9][0-9]{0,17})")


class MediaError(Exception):
    """The image cannot be used; the message says why."""


def open_image(data: bytes):
    """The image in `data`, header read and size checked, not yet decoded."""
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError, SyntaxError) as exc:
        raise MediaError("the file is not a JPEG, PNG, WebP or GIF image") from exc
    if img.width * img.height > MAX_PIXELS:
        raise MediaError(f"the image has {img.width}×{img.height} pixels; at most "
                         f"{MAX_PIXELS // 1_000_000} megapixels")
    return img


def normalise_jpeg(data: bytes) -> bytes:
    """Any accepted image -> upright RGB JPEG <= MAX_JPEG_BYTES (quality first, then size)."""
    img = open_image(data)
    try:
        img.load()
    except (OSError, Image.DecompressionBombError, ValueError, SyntaxError) as exc:
        raise MediaError(f"the image is unreadable ({exc})") from exc
    if img.format == "JPEG" and len(data) <= MAX_JPEG_BYTES and img.mode in ("RGB", "L"):
        return data
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P", "PA"):
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
