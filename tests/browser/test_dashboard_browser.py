"""In a real browser: signing in, the overview updating live, the WhatsApp Web view (send,
receive live, receipts, images compressed to <= 350 KB; the queue's sends in their chats with
ticks, received photos as thumbnails, WhatsApp's time labels; the simulated contacts answering
with the real sender pool), and the phone layout."""
import io
import random
import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from PIL import Image
from psycopg.rows import dict_row
from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_for_js, wait_live
from tests.factories import make_device
from tests.test_sender_support import add_devices


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


def test_the_overview_refetches_its_message_figures_on_messages_and_the_devices_on_device_events(
        page_for, user, committed_db_url):
    """A campaign sending moves the overview's figures with every message: those alone are refetched
    (/api/overview/figures), not the devices by status and health band, whose scores read each device's
    last two days (250 ms for 3,000 busy devices, on every refresh before). A device event refetches
    the whole overview."""
    page = page_for()
    sign_in(page, user["email"])
    expect(page.locator("h1")).to_have_text("Overview")
    wait_live(page)
    fetched = []
    page.on("request", lambda r: fetched.append(r.url.split("?")[0]) if r.resource_type == "fetch" else None)

    def event(kind):
        with db(committed_db_url) as c:
            c.execute("SELECT notify_user(%s, %s, jsonb_build_object('device_id', 0))", [user["id"], kind])

    def wait_for(path):
        deadline = time.monotonic() + 30
        while not any(u.endswith(path) for u in fetched):
            assert time.monotonic() < deadline, f"no refetch of {path}: {fetched}"
            page.wait_for_timeout(50)

    event("message_status")
    wait_for("/api/overview/figures")
    page.wait_for_timeout(2000)   # room for a refetch of the whole, which must not come
    assert not any(u.endswith("/api/overview") for u in fetched), fetched
    event("device_status")
    wait_for("/api/overview")


def test_the_monitoring_page_keeps_its_page_and_filter_through_live_refreshes(page_for, user, committed_db_url):
    """The monitoring page shows a page of a fleet in the devices page's query: changing the filter loads
    that query, and a live refresh re-renders the page the user is on, not the first."""
    with db(committed_db_url) as c:
        for n in range(1, 6):
            make_device(c, user["id"], name=f"Desk {n}", status="offline" if n == 5 else "online")
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/monitoring?per_page=2&page=2")
    wait_live(page)
    expect(page.locator("#device-count")).to_have_text("3–4 of 5")
    expect(page.locator("#load tbody tr")).to_have_count(2)
    fetched = []
    page.on("request", lambda r: fetched.append(r.url) if r.resource_type == "fetch" else None)
    with db(committed_db_url) as c:
        c.execute("SELECT notify_user(%s, 'device_status', jsonb_build_object('device_id', 0, 'status', 'online'))",
                  [user["id"]])
    deadline = time.monotonic() + 30
    while not any("/monitoring?per_page=2&page=2" in u for u in fetched):
        assert time.monotonic() < deadline, f"no refresh of the page shown: {fetched}"
        page.wait_for_timeout(50)
    page.wait_for_timeout(500)   # the refetched page swapped in
    expect(page.locator("#device-count")).to_have_text("3–4 of 5")
    expect(page.locator("#load tbody")).to_contain_text("Desk 3")
    page.select_option("#monitor-filter select[name=status]", "offline")
    expect(page).to_have_url(re.compile(r"status=offline"))
    expect(page.locator("#device-count")).to_have_text("1–1 of 1")
    expect(page.locator("#queue tbody")).to_contain_text("Desk 5")


def test_a_slow_refresh_is_never_overlapped_and_rests_the_page(page_for, user, committed_db_url):
    """The monitoring page refetches itself on live events, at most every 2 s. A refetch the server
    is slow to answer (a large backlog counted, a loaded machine) is never overlapped by the next,
    which asked every 2 s before; and the next waits four times as long as it took: open pages never
    pile their requests up on a slow server."""
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/monitoring")
    wait_live(page)
    held = []   # (route, when it reached us): the page's refetches, left unanswered

    def hold(route):
        if route.request.resource_type == "fetch":
            held.append((route, time.monotonic()))
        else:
            route.continue_()

    def event():
        with db(committed_db_url) as c:
            c.execute("SELECT notify_user(%s, 'device_status', jsonb_build_object('device_id', 0, 'status', 'online'))",
                      [user["id"]])

    def wait_held(n, seconds):
        deadline = time.monotonic() + seconds
        while len(held) < n:
            assert time.monotonic() < deadline, f"{len(held)} refetches, waiting for {n}"
            page.wait_for_timeout(50)

    page.route("**/monitoring", hold)
    event()
    wait_held(1, 30)
    for _ in range(2):   # events go on while it hangs
        event()
        page.wait_for_timeout(1500)
    assert len(held) == 1
    route, asked = held[0]
    route.continue_()
    answered = time.monotonic()
    took = answered - asked
    wait_held(2, 4 * took + 60)   # the events meanwhile: one refetch more, after the rest
    assert held[1][1] - answered >= min(4 * took, 30)   # the rest is capped at 30 s
    held[1][0].continue_()


# Holds every page socket until window.__releaseSockets() is called: the page's script runs and
# fetches while its live socket is not yet open (a slow handshake, made certain).
HOLD_SOCKETS = """
(() => {
  const Real = window.WebSocket;
  const gate = new Promise(resolve => { window.__releaseSockets = resolve; });
  window.WebSocket = function (url) {
    const held = { readyState: 0, send() {}, close() {} };
    gate.then(() => {
      const s = new Real(url);
      for (const k of ["onopen", "onmessage", "onclose"]) s[k] = e => held[k] && held[k](e);
      Object.defineProperty(held, "readyState", { get: () => s.readyState });
      held.send = d => s.send(d);
      held.close = () => s.close();
    });
    return held;
  };
  window.WebSocket.OPEN = Real.OPEN;
})();
"""


def test_chat_view_catches_a_status_change_made_before_its_socket_opened(page_for, user, committed_db_url):
    """The page renders "offline"; the device comes online (its event sent to nobody) before the
    page's socket opens: the first open refetches what it missed."""
    with db(committed_db_url) as c:
        device = make_device(c, user["id"], status="offline")
    page = page_for()
    sign_in(page, user["email"])
    page.add_init_script(HOLD_SOCKETS)
    with page.expect_response(lambda r: r.url.endswith(f"/api/devices/{device}/chats")):
        page.goto(f"/device/{device}/whatsapp-web")
    expect(page.locator("#wa-device-status")).to_have_text("offline")
    with db(committed_db_url) as c, c.transaction():
        c.execute("UPDATE user_devices SET status = 'online' WHERE id = %s", [device])
        c.execute("SELECT notify_user(%s, 'device_status', jsonb_build_object('device_id', %s::bigint, 'status', 'online'))",
                  [user["id"], device])
    page.evaluate("() => window.__releaseSockets()")
    wait_for_js(page, "() => document.documentElement.dataset.live === 'open'")
    expect(page.locator("#wa-device-status")).to_have_text("online")


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


def photo_preview():
    buf = io.BytesIO()
    Image.new("RGB", (96, 72), (200, 60, 90)).save(buf, "JPEG", quality=60)
    return buf.getvalue()


def campaign_send(c, uid, device, phone, text, wa_id):
    """A campaign message the sender sent (claimed and completed as a sender does)."""
    campaign = c.execute("""INSERT INTO campaigns (user_id, title, message, campaign_date, time_schedule, scheduled_at)
                            VALUES (%s, 'Promo', 'x', current_date, '09:00', now()) RETURNING id""", [uid]).fetchone()["id"]
    msg = c.execute("""SELECT id FROM _enqueue_messages(ARRAY[ROW(%s, %s, NULL, %s, NULL, NULL, %s, NULL, 0, 0,
                                                                   NULL, NULL, %s, NULL, NULL, NULL, NULL)::message_draft])""",
                    [uid, device, phone, text, campaign]).fetchone()["id"]
    c.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 'sim' WHERE id = %s", [msg])
    c.execute("SELECT complete_messages('sim', %s, %s)", [[msg], [wa_id]])


def test_chat_view_shows_the_queues_sends_ticks_thumbnails_and_whatsapp_times(page_for, user, committed_db_url):
    zone = ZoneInfo("Asia/Kuala_Lumpur")
    now = datetime.now(zone)
    with db(committed_db_url) as c:
        device = make_device(c, user["id"])
        campaign_send(c, user["id"], device, "60122222201", "Hi Ann, our promo starts today", "OUT-A")
        c.execute("SELECT record_inbound_message(%s, 'IMG1', '60122222202@s.whatsapp.net', '60122222202@s.whatsapp.net',"
                  " '60122222202', 'my receipt', %s, false, 'image', 'Ben', %s)",
                  [device, now - timedelta(days=1), photo_preview()])
        for n, days in ((3, 3), (4, 10)):
            inbound(c, device, f"6012222220{n}", f"hello from {days} days ago", f"OLD{n}")
            c.execute("UPDATE chats SET last_message_at = %s WHERE phone = %s",
                      [now - timedelta(days=days), f"6012222220{n}"])
    page = page_for(viewport={"width": 1400, "height": 900})
    sign_in(page, user["email"])
    page.goto(f"/device/{device}/whatsapp-web")
    times = page.locator("#wa-chats .wa-chat .time")
    expect(times).to_have_count(4)
    # Time today, "Yesterday", the weekday within a week, then the date: in the user's zone.
    expect(times).to_have_text([re.compile(r"^\d\d:\d\d$"), "Yesterday", (now - timedelta(days=3)).strftime("%A"),
                                (now - timedelta(days=10)).strftime("%d/%m/%Y")])
    chats = page.locator("#wa-chats .wa-chat")
    expect(chats.first.locator(".preview")).to_have_text("Hi Ann, our promo starts today")

    # The campaign's message is in its thread, with ticks that follow the receipts live.
    chats.first.click()
    out = page.locator("#wa-messages .wa-msg.out")
    expect(out).to_contain_text("Hi Ann, our promo starts today")
    expect(page.locator("#wa-messages .wa-day")).to_have_text(["Today"])
    expect(out.locator(".tick.sent")).to_have_count(1)
    with db(committed_db_url) as c:
        c.execute("SELECT record_receipts(%s, %s, 'delivered', now())", [device, ["OUT-A"]])
    expect(out.locator(".tick.delivered")).to_have_count(1)
    with db(committed_db_url) as c:
        c.execute("SELECT record_receipts(%s, %s, 'read', now())", [device, ["OUT-A"]])
    expect(out.locator(".tick.read")).to_have_count(1)

    # A received photo shows as its thumbnail, under yesterday's label.
    chats.nth(1).click()
    thumb = page.locator("#wa-messages .wa-msg.in img.thumb")
    expect(thumb).to_be_visible()
    expect(thumb).to_have_js_property("naturalWidth", 96)        # the JPEG preview was served and decoded
    expect(page.locator("#wa-messages .wa-msg.in")).to_contain_text("my receipt")
    expect(page.locator("#wa-messages .wa-day")).to_have_text(["Yesterday"])

    # A new campaign send opens its chat in the list live.
    with db(committed_db_url) as c:
        campaign_send(c, user["id"], device, "60122222209", "Hi Eve, a new offer", "OUT-E")
    expect(chats).to_have_count(5)
    expect(chats.first.locator(".preview")).to_have_text("Hi Eve, a new offer")


def test_the_simulated_contacts_answer_so_the_chat_view_is_alive(page_for, user, committed_db_url, start_sender):
    with db(committed_db_url) as c:
        [device] = add_devices(c, user["id"], 1)      # has a session: the sender connects it
    start_sender(WA_SIM_REPLY_RATE="1", WA_SIM_REPLY_AFTER_S="0.5")
    page = page_for(viewport={"width": 1400, "height": 900})
    sign_in(page, user["email"])
    page.goto(f"/device/{device}/whatsapp-web")
    expect(page.locator("#wa-device-status")).to_have_text("online")
    with db(committed_db_url) as c:   # Ann writes from her number (SimTransport.identity_of)
        for text in ("Hi Ann, are you coming?", "We start at eight"):
            c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                         VALUES (%s, %s, '60123333301', %s)""", [user["id"], device, text])
    chat = page.locator("#wa-chats .wa-chat")
    expect(chat).to_have_count(1)                   # the sends opened it, live
    chat.first.click()
    expect(page.locator("#wa-messages .wa-msg.out")).to_have_count(2)
    # The simulated contact answers each (text, or now and then a photo) and the thread shows it live.
    expect(page.locator("#wa-messages .wa-msg.in")).to_have_count(2)
    # Receipts come live too (not every one: WhatsApp loses some).
    expect(page.locator("#wa-messages .wa-msg.out .tick.delivered, #wa-messages .wa-msg.out .tick.read").first).to_be_visible()
