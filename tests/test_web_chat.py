"""The WhatsApp Web view's HTTP side: the 30-day searchable chat list, history paged backwards,
sending text and images, read marks, and another user's chats staying invisible."""
import io

import psycopg
import pytest
from PIL import Image
from psycopg.rows import dict_row

from tests.factories import make_device, make_user
from tests.webutil import signed_in_user


def inbound(c, device_id, phone, text, at_sql="now()", wa_id=None, name=""):
    return c.execute(f"""SELECT record_inbound_message(%s, %s, %s, %s, %s, %s, {at_sql}, false, 'text', %s) AS id""",
                     [device_id, wa_id or f"W{phone}{text}", f"{phone}@s.whatsapp.net", f"{phone}@s.whatsapp.net",
                      phone, text, name]).fetchone()["id"]


def chat_id(c, device_id, phone):
    return c.execute("SELECT id FROM whatsapp_chats WHERE device_id = %s AND phone = %s",
                     [device_id, phone]).fetchone()["id"]


@pytest.fixture
def setup(client, committed_db_url):
    uid, token = signed_in_user(client, committed_db_url)
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        device = make_device(c, uid)
        inbound(c, device, "60111111111", "hello there", name="Aisyah")
        inbound(c, device, "60122222222", "price please", "now() - interval '1 hour'", name="Ben")
        inbound(c, device, "60133333333", "ancient", "now() - interval '40 days'", name="Old")
        other = make_user(c)
        other_device = make_device(c, other)
        inbound(c, other_device, "60144444444", "secret", name="Theirs")
        return {"uid": uid, "token": token, "device": device, "other_device": other_device,
                "chat": chat_id(c, device, "60111111111"), "other_chat": chat_id(c, other_device, "60144444444")}


def test_page_is_the_owners_only(client, setup):
    assert client.get(f"/device/{setup['device']}/whatsapp-web").status_code == 200
    assert client.get(f"/device/{setup['other_device']}/whatsapp-web").status_code == 404
    assert client.get(f"/api/devices/{setup['other_device']}/chats").status_code == 404
    assert client.get(f"/api/chats/{setup['other_chat']}/messages").status_code == 404


def test_chat_list_covers_30_days_newest_first_and_searches(client, setup):
    chats = client.get(f"/api/devices/{setup['device']}/chats").get_json()["chats"]
    assert [c["name"] for c in chats] == ["Aisyah", "Ben"]
    assert chats[0]["last_message_preview"] == "hello there" and chats[0]["unread_count"] == 1
    assert [c["name"] for c in client.get(f"/api/devices/{setup['device']}/chats?q=PRICE").get_json()["chats"]] == ["Ben"]
    assert [c["name"] for c in client.get(f"/api/devices/{setup['device']}/chats?q=60111").get_json()["chats"]] == ["Aisyah"]


def test_history_pages_backwards_to_the_start(client, setup, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        for n in range(45):
            inbound(c, setup["device"], "60155555555", f"m{n:02d}", f"now() - interval '{60 - n} minutes'")
        chat = chat_id(c, setup["device"], "60155555555")
    first = client.get(f"/api/chats/{chat}/messages").get_json()
    assert first["messages"][0]["content"] == "m44" and len(first["messages"]) == 40
    second = client.get(f"/api/chats/{chat}/messages", query_string=first["next"]).get_json()
    assert [m["content"] for m in second["messages"]] == ["m04", "m03", "m02", "m01", "m00"]
    assert second["next"] is None


def test_send_text_queues_it_and_bad_input_is_refused(client, setup, committed_db_url):
    h = {"X-CSRFToken": setup["token"]}
    r = client.post(f"/api/chats/{setup['chat']}/messages", json={"text": "hi Aisyah"}, headers=h)
    assert r.status_code == 201
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        row = c.execute("SELECT device_id, recipient_phone, content, status FROM broadcast_messages WHERE id = %s",
                        [r.get_json()["id"]]).fetchone()
    assert row == {"device_id": setup["device"], "recipient_phone": "60111111111", "content": "hi Aisyah", "status": "pending"}
    assert client.post(f"/api/chats/{setup['chat']}/messages", json={"text": "  "}, headers=h).status_code == 400
    assert client.post(f"/api/chats/{setup['chat']}/messages", json={}, headers=h).status_code == 400
    assert client.post(f"/api/chats/{setup['other_chat']}/messages", json={"text": "x"}, headers=h).status_code == 404
    assert client.post(f"/api/chats/{setup['chat']}/messages", json={"text": "no token"}).status_code == 400


def jpeg(size=(64, 64)):
    buf = io.BytesIO()
    Image.new("RGB", size, (0, 168, 132)).save(buf, "JPEG")
    return buf.getvalue()


def test_send_image_with_caption_and_limits(app, client, setup, committed_db_url):
    h = {"X-CSRFToken": setup["token"]}
    r = client.post(f"/api/chats/{setup['chat']}/messages", headers=h, content_type="multipart/form-data",
                    data={"image": (io.BytesIO(jpeg()), "a.jpg"), "caption": "our menu"})
    assert r.status_code == 201, r.get_json()
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        row = c.execute("SELECT message_type, content, media_url FROM broadcast_messages WHERE id = %s",
                        [r.get_json()["id"]]).fetchone()
        preview = c.execute("SELECT last_message_preview FROM whatsapp_chats WHERE id = %s", [setup["chat"]]).fetchone()
    assert (row["message_type"], row["content"]) == ("image", "our menu")
    assert preview["last_message_preview"] == "📷 our menu"
    served = client.get(row["media_url"])            # /media/<id>: its owner's to view
    assert served.status_code == 200 and served.data == jpeg() and served.mimetype == "image/jpeg"
    assert app.test_client().get(row["media_url"]).status_code == 302     # nobody else's
    big = io.BytesIO(b"\xff\xd8" + b"0" * (350 * 1024))
    r = client.post(f"/api/chats/{setup['chat']}/messages", headers=h, content_type="multipart/form-data",
                    data={"image": (big, "big.jpg")})
    assert r.status_code == 400 and "350 KB" in r.get_json()["error"]
    r = client.post(f"/api/chats/{setup['chat']}/messages", headers=h, content_type="multipart/form-data",
                    data={"image": (io.BytesIO(b"not an image"), "x.jpg")})
    assert r.status_code == 400


def test_opening_a_chat_clears_its_unread_badge(client, setup):
    h = {"X-CSRFToken": setup["token"]}
    assert client.post(f"/api/chats/{setup['chat']}/read", headers=h).get_json() == {"ok": True}
    chats = client.get(f"/api/devices/{setup['device']}/chats").get_json()["chats"]
    assert chats[0]["unread_count"] == 0
    assert client.post(f"/api/chats/{setup['other_chat']}/read", headers=h).status_code == 404
