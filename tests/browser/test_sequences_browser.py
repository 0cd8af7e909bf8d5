"""The sequence builder in a real browser: steps added on the page are saved through the API with
triggers generated from the entry trigger; a server-side refusal is shown on the form."""
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
    page.locator("fieldset.step textarea[name=content]").first.fill("Hi {name}, welcome!")
    page.click("#add-step")
    page.locator("fieldset.step textarea[name=content]").nth(1).fill("Day two, {name}.")
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
    page.locator("fieldset.step textarea[name=content]").first.fill("Hello")
    page.click("#sequence-builder button[type=submit]")
    expect(page.locator("#builder-error")).to_contain_text("maximum delay must be at least the minimum")


def test_edit_keeps_the_entry_trigger_and_steps(page_for, user, committed_db_url):
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/sequences/new")
    page.fill("input[name=name]", "Reminders")
    page.fill("#sequence-trigger", "remind")
    page.locator("fieldset.step textarea[name=content]").first.fill("Reminder one")
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
