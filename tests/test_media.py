"""Images are normalised to JPEG <= 350 KB; an unreadable one fails with a clear error."""
import base64
import io
import os

import pytest
from PIL import Image

from sender import media
from sender.media import MAX_JPEG_BYTES, MediaError, normalise_jpeg, read_source


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
    assert fmt == "JPEG" and len(out) <= MAX_JPEG_BYTES and max(w, h) <= media.MAX_SIDE


def test_small_jpeg_is_kept_as_is():
    small = normalise_jpeg(png(mode="RGB"))
    assert normalise_jpeg(small) == small


def test_data_url():
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert jpeg_info(media.prepare_image(url))[0] == "JPEG"


@pytest.mark.parametrize("source, message", [
    (b"not an image at all", "image is unreadable"),
    (png()[:40], "image is unreadable"),
])
def test_unreadable_image_is_a_clear_error(source, message):
    with pytest.raises(MediaError, match=message):
        normalise_jpeg(source)


def test_bad_data_url():
    with pytest.raises(MediaError, match="not valid base64"):
        read_source("data:image/png;base64,@@@")


def test_uploads_only_from_the_uploads_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(media, "UPLOADS", tmp_path)
    stored = media.store_upload(png())
    assert jpeg_info(read_source(stored))[0] == "JPEG"
    for outside in ("/etc/passwd", "../../etc/passwd"):
        with pytest.raises(MediaError, match="not a data URL, an http"):
            read_source(outside)
    with pytest.raises(MediaError, match="cannot be read"):
        read_source("missing.jpg")


def test_unreachable_url_is_a_clear_error():
    with pytest.raises(MediaError, match="could not be fetched"):
        read_source("http://127.0.0.1:9/nothing.png")
