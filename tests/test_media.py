"""Images are normalised once to JPEG <= 350 KB; what cannot be read, or would take too much
memory to decode, is refused with a clear error. The sender only sends stored images."""
import io
import os

import pytest
from PIL import Image

from common.images import MAX_JPEG_BYTES, MAX_SIDE, MediaError, normalise_jpeg
from sender import media
from tests.corpus import png_declaring


def png(size=(200, 100), mode="RGBA", noise=False):
    img = Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode))) if noise \
        else Image.new(mode, size, (255, 0, 0, 128) if mode == "RGBA" else (0, 128, 255))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def jpeg_info(data):
    img = Image.open(io.BytesIO(data))
    return img.format, img.mode, img.size


def test_transparent_png_becomes_rgb_jpeg():
    out = normalise_jpeg(png())
    assert jpeg_info(out) == ("JPEG", "RGB", (200, 100))


def test_big_noisy_image_shrinks_under_the_limit():
    source = png(size=(3000, 2000), mode="RGB", noise=True)
    assert len(source) > 5 * MAX_JPEG_BYTES
    out = normalise_jpeg(source)
    fmt, mode, (w, h) = jpeg_info(out)
    assert fmt == "JPEG" and len(out) <= MAX_JPEG_BYTES and max(w, h) <= MAX_SIDE


def test_small_jpeg_is_kept_as_is():
    small = normalise_jpeg(png(mode="RGB"))
    assert normalise_jpeg(small) == small


@pytest.mark.parametrize("source, message", [
    (b"not an image at all", "not a JPEG, PNG, WebP or GIF"),
    (png()[:40], "not a JPEG, PNG, WebP or GIF"),
    (png(size=(400, 400), noise=True)[:3000], "unreadable"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a JPEG, PNG, WebP or GIF"),
])
def test_unreadable_image_is_a_clear_error(source, message):
    with pytest.raises(MediaError, match=message):
        normalise_jpeg(source)


def test_a_palette_png_declaring_170_megapixels_is_refused_before_decoding():
    bomb = png_declaring(13000, 13000, palette=True)   # under Pillow's own 2x89 MP refusal
    assert len(bomb) < 1024
    with pytest.raises(MediaError, match="megapixels"):
        normalise_jpeg(bomb)


def test_the_sender_refuses_anything_but_a_stored_image():
    for url in ("http://127.0.0.1:9/x.png", "https://example.com/a.jpg", "data:image/png;base64,AAAA",
                "/etc/passwd", "/media/0", "/media/1/../2"):
        with pytest.raises(MediaError, match="not stored"):
            media.prepare_image(url)
