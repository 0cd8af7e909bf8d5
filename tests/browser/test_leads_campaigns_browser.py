"""In a real browser: import a CSV and watch its progress bar fill live; create a campaign and watch
it run to finished with the real sender pool (`python -m sender`, simulated WhatsApp) and the
campaign tick driven as the clock would drive it."""
import re
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import expect
from psycopg.rows import dict_row

from tests.browser.conftest import sign_in, wait_live
from tests.test_sender_support import add_devices

ROWS = 120_000  # two validation chunks of 100k: progress moves in steps the page must show
FULL = re.compile(r"width: 100(\.0)?%")


def test_import_a_csv_and_watch_the_progress_bar(page_for, user):
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/leads")
    wait_live(page)
    # Every bar width the page shows, sampled while the import runs.
    page.evaluate("""window.widths = new Set();
        setInterval(() => document.querySelectorAll('#imports .progress > span')
          .forEach((s) => window.widths.add(parseFloat(s.style.width) || 0)), 10);""")
    lines = ["name,phone,niche,target_status,trigger,device_id"] + \
            [f"Lead {i},6013{i:08d},fitness,prospect,," for i in range(ROWS)]
    page.set_input_files("#import-form input[name=file]",
                         files=[{"name": "leads.csv", "mimeType": "text/csv", "buffer": "\n".join(lines).encode()}])
    page.click("#import-form button[type=submit]")

    row = page.locator("#imports tr[data-import-id]:not([data-import-id=upload])").first
    expect(row.locator(".status")).to_have_text("finished", timeout=240_000)   # ~30 s idle; minutes under load
    expect(row.locator(".inserted")).to_have_text(str(ROWS))
    expect(row.locator(".progress > span")).to_have_attribute("style", FULL)
    seen = page.evaluate("Array.from(window.widths)")
    assert any(0 < w < 100 for w in seen), seen   # the bar moved through the import, not just at its end


@pytest.fixture
def clock(committed_db_url):
    """The campaign tick every half second (pg_cron runs it every minute, in the main database only)."""
    stop = threading.Event()

    def tick():
        with psycopg.connect(committed_db_url, autocommit=True) as c:
            while not stop.wait(0.5):
                c.execute("CALL run_campaigns(5)")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def test_create_a_campaign_and_watch_it_finish(page_for, user, committed_db_url, sender, clock):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        [device] = add_devices(c, user["id"], 1)      # has a session: the sender connects it
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone, niche, target_status)
                     SELECT %s, %s, 'Lead ' || g, '6014' || lpad(g::text, 8, '0'), 'fitness', 'prospect'
                       FROM generate_series(1, 12) g""", [user["id"], device])
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/campaigns")
    start = datetime.now(ZoneInfo("Asia/Kuala_Lumpur")) - timedelta(minutes=1)   # the user's zone; due now
    form = page.locator("#campaign-form")
    form.locator("input[name=title]").fill("Launch")
    form.locator("textarea[name=message]").fill("Hi {name}, {we are|we're} open!")
    form.locator("input[name=campaign_date]").fill(start.strftime("%Y-%m-%d"))
    form.locator("input[name=time_schedule]").fill(start.strftime("%H:%M"))
    form.locator("input[name=min_delay_seconds]").fill("0")
    form.locator("input[name=max_delay_seconds]").fill("0")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/campaigns/*")

    box = page.locator("#campaign")
    expect(box.locator(".status")).to_have_text("finished", timeout=60000)
    expect(box.locator(".progress > span")).to_have_attribute("style", FULL)
    with psycopg.connect(committed_db_url) as c:
        assert c.execute("SELECT status, count(*) FROM broadcast_messages WHERE device_id = %s GROUP BY 1",
                         [device]).fetchall() == [("sent", 12)]


def test_campaign_form_previews_the_message_with_its_image_and_stores_the_upload_once(page_for, user,
                                                                                     committed_db_url, tmp_path):
    from tests.test_media import png
    image = tmp_path / "promo.png"
    image.write_bytes(png(size=(120, 80), mode="RGB"))
    page = page_for(viewport={"width": 375, "height": 800})
    sign_in(page, user["email"])
    page.goto("/campaigns")
    form = page.locator("#campaign-form")
    form.locator("textarea[name=message]").fill("Hi {name}, {sale|deal} today")
    expect(page.locator("#campaign-preview figcaption")).to_have_text("Hi Aisha, sale today")
    form.locator("input[name=image_file]").set_input_files(str(image))
    expect(page.locator("#campaign-preview img")).to_be_visible()
    form.locator("input[name=title]").fill("Pictured")
    form.locator("input[name=campaign_date]").fill("2030-01-01")
    form.locator("input[name=time_schedule]").fill("09:00")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/campaigns/*")
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        row = c.execute("""SELECT c.media_id, c.image_url, (SELECT count(*) FROM media m WHERE m.user_id = c.user_id) AS n
                             FROM campaigns c WHERE c.user_id = %s AND c.title = 'Pictured'""", [user["id"]]).fetchone()
    assert row["media_id"] is not None and row["image_url"] is None and row["n"] == 1
