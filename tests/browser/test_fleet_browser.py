"""A fleet of 3000 devices in a real browser: the devices page searches, filters, sorts and pages on
the server; a selection spanning pages (every matching device) gets new caps and is paused and
resumed, shown live; one device is edited; many are added by a name pattern; and the device
picker of the campaign and sequence forms chooses by search and "all online" instead of 3000
checkboxes."""
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import expect
from psycopg.rows import dict_row

from tests.browser.conftest import sign_in
from tests.factories import set_quota

FLEET = 3000


def db(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@pytest.fixture
def fleet(user, committed_db_url):
    """3000 devices "Sales 1" .. "Sales 3000": n divisible by 3 offline, the others online."""
    with db(committed_db_url) as c:
        set_quota(c, user["id"], "devices", FLEET + 100)   # an administrator sized the account for a fleet
        ids = c.execute("SELECT create_devices(%s, %s, 'Sales {n}') AS ids", [user["id"], FLEET]).fetchone()["ids"]
        c.execute("""UPDATE user_devices SET status = CASE WHEN substr(device_name, 7)::int %% 3 = 0 THEN 'offline'
                                                       ELSE 'online' END,
                                         phone = (60110000000 + substr(device_name, 7)::int)::text
                      WHERE id = ANY (%s)""", [ids])
        online = [r["id"] for r in c.execute("SELECT id FROM user_devices WHERE id = ANY (%s) AND status = 'online'"
                                             " ORDER BY id", [ids])]
    return {"ids": ids, "online": online}


def count_text(page):
    return page.locator("#device-count")


def test_devices_page_at_fleet_scale(page_for, user, fleet, committed_db_url):
    page = page_for(viewport={"width": 1400, "height": 900})
    sign_in(page, user["email"])
    page.goto("/devices")
    expect(count_text(page)).to_have_text("1–50 of 3000")
    expect(page.locator("tr[data-device-id]")).to_have_count(50)
    page.evaluate("window.notReloaded = true")   # the list is swapped in place, never the whole page

    # Search (name or number), status filter, sort and pages: all answered by the server.
    page.fill("#device-filter input[name=q]", "sales 12")
    expect(count_text(page)).to_have_text("1–50 of 111")          # 12, 120-129, 1200-1299
    page.select_option("#device-filter select[name=status]", "offline")
    expect(count_text(page)).to_have_text("1–39 of 39")
    expect(page.locator("tr[data-device-id] .status").first).to_have_text("offline")
    page.fill("#device-filter input[name=q]", "")
    page.select_option("#device-filter select[name=status]", "")
    page.select_option("#device-filter select[name=dir]", "desc")
    expect(page.locator("tr[data-device-id] .name").first).to_have_text("Sales 999")
    page.click(".pager a:has-text('Next')")
    expect(count_text(page)).to_have_text("51–100 of 3000")
    assert "page=2" in page.url and "dir=desc" in page.url          # the address keeps the view

    # Every online device (2000, over 40 pages) gets new caps at once, then is paused and resumed.
    page.select_option("#device-filter select[name=status]", "online")
    expect(count_text(page)).to_have_text("1–50 of 2000")
    page.check("#select-page")
    expect(page.locator("#bulk-count")).to_have_text("50 selected")
    page.click("#select-matching")
    expect(page.locator("#bulk-count")).to_have_text("2000 selected")
    page.click("[data-bulk=edit]")
    dialog = page.locator("#device-settings")
    expect(dialog.locator(".one-device")).to_be_hidden()           # no single name for 2000 devices
    dialog.locator("input[name=hourly_limit]").fill("40")
    dialog.locator("input[name=daily_limit]").fill("400")
    dialog.locator("#settings-save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("tr[data-device-id] .pacing").first).to_contain_text("40/h · 400/day")
    with db(committed_db_url) as c:
        caps = c.execute("SELECT status, hourly_limit, daily_limit, count(*) FROM user_devices WHERE user_id = %s"
                         " GROUP BY 1, 2, 3 ORDER BY 1", [user["id"]]).fetchall()
    assert [tuple(r.values()) for r in caps] == [("offline", 80, 800, 1000), ("online", 40, 400, 2000)]
    page.click("[data-bulk=pause]")
    expect(page.locator("tr[data-device-id] .paused-badge").first).to_be_visible()
    expect(page.locator("tr[data-device-id] [data-action=resume]").first).to_be_visible()
    with db(committed_db_url) as c:
        assert c.execute("SELECT count(*) AS n FROM user_devices WHERE user_id = %s AND paused_at IS NOT NULL",
                         [user["id"]]).fetchone()["n"] == 2000
    page.click("[data-bulk=resume]")
    expect(page.locator("tr[data-device-id] .paused-badge").first).to_be_hidden()
    page.click("[data-bulk=clear]")
    expect(page.locator("#bulk-bar")).to_be_hidden()

    # Paused elsewhere (another tab, the API): the row shows it live, connection status untouched.
    first = page.locator("tr[data-device-id]").first
    device = int(first.get_attribute("data-device-id"))
    with db(committed_db_url) as c:
        c.execute("SELECT set_devices_paused(%s, %s, true)", [user["id"], [device]])
    expect(first.locator(".paused-badge")).to_be_visible()
    expect(first.locator(".status")).to_have_text("online")
    first.locator("[data-action=resume]").click()
    expect(first.locator(".paused-badge")).to_be_hidden()

    # One device: its name and delays.
    first.locator("[data-action=edit]").click()
    expect(dialog.locator("input[name=device_name]")).to_have_value(re.compile(r"^Sales \d+$"))
    dialog.locator("input[name=device_name]").fill("Front desk")
    dialog.locator("input[name=min_delay_seconds]").fill("90")
    dialog.locator("#settings-save").click()
    expect(dialog.locator("#settings-error")).to_contain_text("maximum delay (60 s) must be at least")
    dialog.locator("input[name=max_delay_seconds]").fill("120")
    dialog.locator("#settings-save").click()
    expect(dialog).to_be_hidden()
    page.fill("#device-filter input[name=q]", "front")
    expect(page.locator(f'tr[data-device-id="{device}"] .name')).to_have_text("Front desk")
    expect(page.locator(f'tr[data-device-id="{device}"] .pacing')).to_contain_text("90–120 s")

    # Many at once by a name pattern.
    page.click("#device-add-card summary")
    page.fill("#device-add input[name=device_name]", "Booth {n} KL")
    page.fill("#device-add input[name=count]", "3")
    page.fill("#device-add input[name=first_number]", "7")
    page.click("#device-add button[type=submit]")
    page.select_option("#device-filter select[name=status]", "")
    page.fill("#device-filter input[name=q]", "booth")
    expect(page.locator("tr[data-device-id] .name")).to_have_text(["Booth 9 KL", "Booth 8 KL", "Booth 7 KL"])
    assert page.evaluate("window.notReloaded === true")


def test_device_picker_in_the_campaign_and_sequence_forms(page_for, user, fleet, committed_db_url):
    page = page_for(viewport={"width": 1400, "height": 900})
    sign_in(page, user["email"])
    page.goto("/campaigns")
    picker = page.locator("#campaign-form .device-picker")
    expect(picker.locator(".picker-summary")).to_have_text("all devices (none chosen)")
    expect(picker.locator(".picker-list li")).to_have_count(100)     # a page, not 3000 checkboxes
    expect(picker.locator(".picker-more")).to_be_visible()
    picker.locator(".picker-actions [data-pick=online]").click()
    expect(picker.locator(".picker-summary")).to_have_text("2000 chosen")
    picker.locator("[data-pick=none]").click()
    expect(picker.locator(".picker-summary")).to_have_text("all devices (none chosen)")
    picker.locator(".picker-q").fill("sales 25")
    expect(picker.locator(".picker-total")).to_have_text("111")
    for name in ("Sales 2500", "Sales 2501"):
        picker.locator(".picker-q").fill(name.lower())
        expect(picker.locator(".picker-list li")).to_have_count(1)
        expect(picker.locator(".picker-list li")).to_contain_text(name)
        picker.locator(".picker-list input[type=checkbox]").check()
    expect(picker.locator(".picker-summary")).to_have_text("2 chosen")

    start = datetime.now(ZoneInfo("Asia/Kuala_Lumpur")) + timedelta(days=1)
    form = page.locator("#campaign-form")
    form.locator("input[name=title]").fill("Picked devices")
    form.locator("textarea[name=message]").fill("Hello {name}")
    form.locator("input[name=campaign_date]").fill(start.strftime("%Y-%m-%d"))
    form.locator("input[name=time_schedule]").fill("09:00")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/campaigns/*")
    with db(committed_db_url) as c:
        chosen = c.execute("""SELECT array(SELECT d.device_name FROM user_devices d WHERE d.id = ANY (c.device_ids)
                                            ORDER BY d.id) AS names
                                FROM campaigns c WHERE c.user_id = %s""", [user["id"]]).fetchone()["names"]
    assert chosen == ["Sales 2500", "Sales 2501"]

    # A sequence sends from every online device: the status filter, then "All shown".
    page.goto("/sequences/new")
    page.fill("input[name=name]", "Fleet drip")
    page.fill("#sequence-trigger", "fleet")
    page.locator("#step-editor textarea[name=content]").fill("Hi {name}")   # day 1 is open
    picker = page.locator("#sequence-builder .device-picker")
    picker.locator(".picker-status").select_option("online")
    expect(picker.locator(".picker-total")).to_have_text("2000")
    picker.locator("[data-pick=matching]").click()
    expect(picker.locator(".picker-summary")).to_have_text("2000 chosen")
    page.click("#sequence-builder button[type=submit]")
    page.wait_for_url(re.compile(r"/sequences/\d+$"))
    with db(committed_db_url) as c:
        ids = c.execute("SELECT device_ids FROM sequences WHERE user_id = %s", [user["id"]]).fetchone()["device_ids"]
    assert sorted(ids) == fleet["online"]
    # Editing shows what was chosen.
    page.goto(page.url + "/edit")
    expect(page.locator("#sequence-builder .picker-summary")).to_have_text("2000 chosen")
