"""The sequence builder in a real browser: a 31-day calendar whose days hold the steps, saved through
the API with triggers generated from the entry trigger; live preview with image; a server-side refusal
shown on the form; the summary and detail pages' six figure boxes and the retry of failed steps."""
import re

import psycopg
from playwright.sync_api import expect
from psycopg.rows import dict_row

from tests.browser.conftest import sign_in


def test_build_a_sequence_with_two_steps(page_for, user, committed_db_url):
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/sequences/new")
    page.fill("input[name=name]", "Onboarding")
    page.fill("#sequence-trigger", "onboard")
    page.locator("#step-editor textarea[name=content]").fill("Hi {name}, welcome!")   # day 1 is open
    page.click("#calendar [data-day='2']")
    page.locator("#step-editor textarea[name=content]").fill("Day two, {name}.")
    page.click("#sequence-builder button[type=submit]")
    page.wait_for_url(re.compile(r"/sequences/\d+$"))
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        steps = c.execute("""SELECT st.day_number, st.trigger, st.trigger_delay_hours FROM sequence_steps st
                               JOIN sequences s ON s.id = st.sequence_id
                              WHERE s.user_id = %s ORDER BY st.day_number""", [user["id"]]).fetchall()
    assert [(s["day_number"], s["trigger"], float(s["trigger_delay_hours"])) for s in steps] == \
        [(1, "onboard", 24.0), (2, "onboard_day2", 0.0)]   # the wait comes after a step


def test_a_refused_sequence_shows_the_reason(page_for, user):
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/sequences/new")
    page.fill("input[name=name]", "Too fast")
    page.fill("#sequence-trigger", "fast")
    page.fill("input[name=min_delay_seconds]", "90")
    page.fill("input[name=max_delay_seconds]", "10")
    page.locator("#step-editor textarea[name=content]").fill("Hello")
    page.click("#sequence-builder button[type=submit]")
    expect(page.locator("#builder-error")).to_contain_text("maximum delay must be at least the minimum")


def test_edit_keeps_the_entry_trigger_and_steps(page_for, user, committed_db_url):
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/sequences/new")
    page.fill("input[name=name]", "Reminders")
    page.fill("#sequence-trigger", "remind")
    page.locator("#step-editor textarea[name=content]").fill("Reminder one")
    page.click("#sequence-builder button[type=submit]")
    page.wait_for_url(re.compile(r"/sequences/\d+$"))
    page.goto(page.url + "/edit")
    expect(page.locator("#sequence-trigger")).to_have_value("remind")
    page.fill("input[name=name]", "Reminders v2")
    page.click("#sequence-builder button[type=submit]")
    page.wait_for_url(re.compile(r"/sequences/\d+$"))
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        row = c.execute("""SELECT s.name, s.trigger, count(st.id) AS steps FROM sequences s
                             JOIN sequence_steps st ON st.sequence_id = s.id
                            WHERE s.user_id = %s AND s.trigger = 'remind' GROUP BY s.id""", [user["id"]]).fetchone()
    assert (row["name"], row["trigger"], row["steps"]) == ("Reminders v2", "remind", 1)


def png_bytes():
    from tests.test_media import png
    return png(size=(80, 60), mode="RGB")


def test_calendar_builder_at_phone_width_with_live_preview_and_an_uploaded_image(page_for, user, committed_db_url,
                                                                                 tmp_path):
    page = page_for(viewport={"width": 375, "height": 800})
    sign_in(page, user["email"])
    page.goto("/sequences/new")
    expect(page.locator("#calendar button")).to_have_count(31)
    page.fill("input[name=name]", "Month")
    page.fill("#sequence-trigger", "month")
    page.locator("#step-editor textarea[name=content]").fill("Hello {name}, day one")
    expect(page.locator("#step-preview figcaption")).to_have_text("Hello Aisha, day one")   # live, sample contact
    page.click("#calendar [data-day='15']")
    expect(page.locator("#editor-day")).to_have_text("15")
    page.locator("#step-editor textarea[name=content]").fill("Mid-month offer")
    image = tmp_path / "offer.png"
    image.write_bytes(png_bytes())
    page.set_input_files("#step-editor input[name=image_file]", str(image))
    expect(page.locator("#step-preview img")).to_be_visible()
    expect(page.locator("#calendar [data-day='15']")).to_have_class(re.compile("has-step"))
    expect(page.locator("#calendar [data-day='15'] .snippet")).to_contain_text("Mid-month offer")
    page.click("#calendar [data-day='1']")                            # back to day 1: its message is kept
    expect(page.locator("#step-editor textarea[name=content]")).to_have_value("Hello {name}, day one")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375   # no sideways scroll on a phone
    page.click("#sequence-builder button[type=submit]")
    page.wait_for_url(re.compile(r"/sequences/\d+$"))
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        steps = c.execute("""SELECT st.day_number, st.media_id IS NOT NULL AS image, st.is_entry_point
                               FROM sequence_steps st JOIN sequences s ON s.id = st.sequence_id
                              WHERE s.user_id = %s AND s.trigger = 'month' ORDER BY 1""", [user["id"]]).fetchall()
    assert [(s["day_number"], s["image"], s["is_entry_point"]) for s in steps] == [(1, False, True), (15, True, False)]
    page.goto(page.url + "/edit")                                       # the stored image shows when editing
    page.click("#calendar [data-day='15']")
    expect(page.locator("#step-preview img")).to_have_attribute("src", re.compile(r"^/media/\d+$"))


def test_six_figure_boxes_and_retry_of_failed_steps(page_for, user, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        c.execute("SELECT create_device(%s, 'phone')", [user["id"]])
        c.execute("UPDATE user_devices SET status = 'online', phone = '60110000009' WHERE user_id = %s", [user["id"]])
        sid = c.execute("""SELECT save_sequence(%s, NULL, '{"name": "Figures", "trigger": "figs", "steps": [
                             {"day_number": 1, "content": "one"}, {"day_number": 2, "content": "two"}]}') AS id""",
                        [user["id"]]).fetchone()["id"]
        c.execute("SELECT set_sequence_status(%s, %s, 'active')", [user["id"], sid])
        c.execute("""INSERT INTO leads (user_id, name, phone, trigger)
                     SELECT %s, 'L', (60170000000 + g)::text, 'figs' FROM generate_series(1, 3) g""", [user["id"]])
        assert c.execute("SELECT activate_due_steps() AS n").fetchone()["n"] == 3
        c.execute("""UPDATE broadcast_messages SET status = 'failed', failed_at = now(), error_message = 'boom'
                      WHERE id = (SELECT min(id) FROM broadcast_messages WHERE sequence_id = %s)""", [sid])
    page = page_for(viewport={"width": 375, "height": 800})
    sign_in(page, user["email"])
    page.goto("/sequences")
    expect(page.locator("#sequence-totals .stat")).to_have_count(6)
    expect(page.locator("#sequence-totals .stat-failed strong")).to_have_text("1")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.goto(f"/sequences/{sid}")
    boxes = page.locator(".sequence-figures .stat")
    expect(boxes).to_have_count(6)
    expect(boxes.nth(0)).to_contain_text("3")                            # contacts
    expect(page.locator(".sequence-figures .stat-failed strong")).to_have_text("1")
    page.on("dialog", lambda d: d.accept())
    page.click("#retry-all")
    expect(page.locator(".sequence-figures .stat-failed strong")).to_have_text("0")   # reloaded after the retry
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE sequence_id = %s AND retry_of IS NOT NULL",
                         [sid]).fetchone()["n"] == 1
