"""Hostile files, generated in code (no committed binaries): bad lead CSVs and bad images.
Each function returns {name: bytes}. `other_device` is a device id the importing user does not own."""
import io
import struct
import zlib

from PIL import Image


def _png(width, height, color=(200, 30, 30)):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def png_declaring(width, height, palette=False):
    """A tiny PNG whose header claims a huge canvas (a decompression bomb's calling card); a
    palette one takes a byte per pixel once decoded, four once converted for sending."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3 if palette else 2, 0, 0, 0)
    plte = chunk(b"PLTE", bytes(range(6))) if palette else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def bad_images():
    good = _png(40, 40)
    return {
        "empty": b"",
        "garbage": b"\x00\x01not an image at all" * 10,
        "truncated_png": good[: len(good) // 2],
        "png_header_only": good[:8],
        "bomb_header_60000x60000": png_declaring(60000, 60000),
        "palette_bomb_13000x13000": png_declaring(13000, 13000, palette=True),
        "svg_with_script": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "html_as_image": b"<html><body onload=alert(1)>",
        "gif_animation": _gif(),
        "oversized_noise_png": _noise_png(700, 700),
        "zip_polyglot": b"PK\x03\x04" + b"\x00" * 100 + good,
    }


def _gif():
    buf = io.BytesIO()
    frames = [Image.new("P", (20, 20), i) for i in range(3)]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _noise_png(width, height):
    import random
    rnd = random.Random(1)
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), bytes(rnd.getrandbits(8) for _ in range(width * height * 3))).save(buf, "PNG")
    return buf.getvalue()


def bad_csvs(other_device):
    header = b"name,phone,niche,target_status,trigger,device_id\n"
    return {
        "empty": b"",
        "bom_only": b"\xef\xbb\xbf",
        "header_only": header,
        "no_phone_column": b"name,niche\nAli,shoes\n",
        "unknown_column": b"name,phone,password\nAli,60123456789,x\n",
        "column_twice": b"phone,phone\n60123456789,60123456789\n",
        "ten_thousand_columns": b",".join(b"c%d" % i for i in range(10000)) + b"\n",
        "binary": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20,
        "utf16": "name,phone\nAli,60123456789\n".encode("utf-16"),
        "latin1": header + "Jos\xe9,60123456789,,,,\n".encode("latin-1"),
        "nul_bytes": header + b"A\x00li,60123456789,,,,\n",
        "line_too_long": header + b"x" * 200_000 + b",60123456789,,,,\n" + b"Ok,60123456780,,,,\n",
        "unterminated_quote": header + b'"Ali,60123456789,,,,\nBob,60123456781,,,,\n',
        "formula_injection": header + b"=cmd|' /C calc'!A0,60123456782,@SUM(1),prospect,,\n",
        "sql_injection": header + b"'); DROP TABLE leads; --,60123456783,' OR 1=1 --,prospect,x'; DELETE FROM users; --,\n",
        "bad_phones": header + b"A,abc,,,,\nB,0000,,,,\nC,+60 12-345 6789 ext 9,,,,\nD,1234567890123456789012,,,,\n",
        "bad_fields": header + b"A,60123456784,,boss,,\nB,60123456785,,,,not-a-number\nC,60123456786,,,,99999999999999999999\n",
        "another_users_device": header + b"A,60123456787,,,,%d\n" % other_device,
        "ragged_rows": header + b"A,60123456788\nB,60123456789,x,prospect,t,,extra,extra\n\n\n",
        "crlf_and_cr": header.replace(b"\n", b"\r\n") + b"A,60123456790,,,,\r\nB,60123456791,,,,\r",
        "same_phone_5000_times": header + b"".join(b"N%d,60123456792,,,,\n" % i for i in range(5000)),
    }
