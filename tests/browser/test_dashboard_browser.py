"""In a real browser: signing in, the overview updating live, the WhatsApp Web view (send,
receive live, receipts, images compressed to <= 350 KB), and the phone layout."""
import io
import random
import re

import psycopg
import pytest
from PIL import Image
from psycopg.rows import dict_row
from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_for_js
from tests.factories import make_device


def db(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def test_login_reaches_the_overview(page_for, user):
    page = page_for()
    page.goto("/dashboard")
    expect(page).to_have_url(re.compile("/login"))
    sign_in(page, user["email"])
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#hourly-chart")).to_be_visible()
    assert page.evaluate("typeof Chart") == "function"


def test_overview_updates_live_when_a_device_comes_online(page_for, user, committed_db_url):
    with db(committed_db_url) as c:
        device = make_device(c, user["id"], status="offline")
    page = page_for()
    sign_in(page, user["email"])
    expect(page.locator('[data-status="online"]')).to_have_text("0")
    with db(committed_db_url) as c, c.transaction():
        c.execute("UPDATE user_devices SET status = 'online' WHERE id = %s", [device])
        c.execute("SELECT notify_user(%s, 'device_status', jsonb_build_object('device_id', %s::bigint, 'status', 'online'))",
                  [user["id"], device])
    expect(page.locator('[data-status="online"]')).to_have_text("1")
    expect(page.locator('[data-status="offline"]')).to_have_text("0")


def inbound(c, device, phone, text, wa_id, name="Aisyah"):
    c.execute("SELECT record_inbound_message(%s, %s, %s, %s, %s, %s, now(), false, 'text', %s)",
              [device, wa_id, f"{phone}@s.whatsapp.net", f"{phone}@s.whatsapp.net", phone, text, name])


@pytest.fixture
def chat_device(user, committed_db_url):
    with db(committed_db_url) as c:
        device = make_device(c, user["id"])
        inbound(c, device, "60111111111", "Hi, is this available?", f"in-{device}-1")
    return device


def test_chat_view_send_receive_and_receipts_live(page_for, user, chat_device, committed_db_url):
    page = page_for()
    sign_in(page, user["email"])
    page.goto(f"/device/{chat_device}/whatsapp-web")
    chat = page.locator("#wa-chats .wa-chat").first
    expect(chat.locator(".unread")).to_have_text("1")
    expect(chat.locator(".preview")).to_have_text("Hi, is this available?")
    chat.click()
    expect(page.locator("#wa-messages .wa-msg.in")).to_contain_text("Hi, is this available?")
    expect(chat.locator(".unread")).to_have_count(0)

    page.fill("#wa-text", "Yes, it is!")
    page.press("#wa-text", "Enter")
    out = page.locator("#wa-messages .wa-msg.out")
    expect(out).to_contain_text("Yes, it is!")
    expect(out.locator(".tick.pending")).to_have_count(1)
    expect(page.locator("#wa-text")).to_have_value("")

    # A sender claims and sends it, then the phone reads it: the queue's own events update the ticks live.
    with db(committed_db_url) as c:
        msg = c.execute("""UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 'sim'
                            WHERE device_id = %s AND content = 'Yes, it is!' RETURNING id""", [chat_device]).fetchone()
        c.execute("SELECT complete_messages('sim', %s, %s)", [[msg["id"]], ["OUT1"]])
    expect(out.locator(".tick.sent")).to_have_count(1)
    with db(committed_db_url) as c:
        c.execute("SELECT record_receipts(%s, %s, 'read', now())", [chat_device, ["OUT1"]])
    expect(out.locator(".tick.read")).to_have_count(1)

    # A reply arrives live, without reloading.
    with db(committed_db_url) as c:
        inbound(c, chat_device, "60111111111", "Great, I'll take two", f"in-{chat_device}-2")
    expect(page.locator("#wa-messages .wa-msg.in").last).to_contain_text("Great, I'll take two")
    expect(chat.locator(".preview")).to_have_text("Great, I'll take two")


def noisy_png(size=1800):
    # Random pixels compress badly: a multi-megabyte file the browser must shrink below 350 KB.
    rnd = random.Random(7)
    img = Image.frombytes("RGB", (size, size), bytes(rnd.getrandbits(8) for _ in range(size * size * 3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_image_is_compressed_in_the_browser_and_sent_with_caption(page_for, user, chat_device, committed_db_url):
    original = noisy_png()
    assert len(original) > 5 * 1024 * 1024
    page = page_for()
    sign_in(page, user["email"])
    page.goto(f"/device/{chat_device}/whatsapp-web")
    page.locator("#wa-chats .wa-chat").first.click()
    page.set_input_files("#wa-file", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": original}])
    expect(page.locator("#wa-preview")).to_be_visible()
    expect(page.locator("#wa-preview-img")).to_have_attribute("src", re.compile("^blob:"))
    page.fill("#wa-caption", "our catalogue")
    page.click("#wa-preview-send")
    expect(page.locator("#wa-preview")).to_be_hidden()
    expect(page.locator("#wa-messages .wa-msg.out img")).to_have_count(1)
    with db(committed_db_url) as c:
        row = c.execute("SELECT message_type, content, media_url FROM broadcast_messages WHERE device_id = %s AND message_type = 'image'",
                        [chat_device]).fetchone()
    assert (row["message_type"], row["content"]) == ("image", "our catalogue")
    size = page.evaluate("url => fetch(url).then(r => r.blob()).then(b => b.size)", row["media_url"])
    assert 1000 < size <= 350 * 1024


def test_phone_viewport_shows_list_then_conversation_full_screen(page_for, user, chat_device):
    page = page_for(viewport={"width": 390, "height": 844})
    sign_in(page, user["email"])
    page.goto(f"/device/{chat_device}/whatsapp-web")
    conv, chats = page.locator(".wa-conv"), page.locator(".wa-list")
    expect(page.locator("#wa-chats .wa-chat")).to_have_count(1)
    assert chats.bounding_box()["width"] == pytest.approx(390, abs=2)
    assert conv.bounding_box()["x"] >= 380  # off-screen to the right
    page.locator("#wa-chats .wa-chat").first.click()
    wait_for_js(page, "document.querySelector('.wa-conv').getBoundingClientRect().x < 2")  # slid in
    box = conv.bounding_box()
    assert box["x"] == pytest.approx(0, abs=2) and box["width"] == pytest.approx(390, abs=2)
    expect(page.locator("#wa-back")).to_be_visible()
    page.click("#wa-back")
    wait_for_js(page, "document.querySelector('.wa-conv').getBoundingClientRect().x >= 380")  # slid out


def test_account_page_makes_and_revokes_a_token_on_a_phone(page_for, user):
    page = page_for(viewport={"width": 375, "height": 740})
    sign_in(page, user["email"])
    page.click(".topnav .who")
    page.fill("#token-form input[name=name]", "zapier")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#new-token code")).to_have_text(re.compile(r"^[\w-]{40,}$"))
    page.reload()
    row = page.locator("#tokens tr", has_text="zapier")
    expect(row).to_have_count(1)
    page.once("dialog", lambda d: d.accept())
    row.locator("[data-revoke]").click()
    expect(row).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
