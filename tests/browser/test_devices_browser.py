"""In a real browser with the real sender pool (`python -m sender`, simulated WhatsApp): add a
device, pair it by QR, simulate the phone's scan, and watch the row turn online live, in place."""
import re

from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_live


def test_pair_a_simulated_device_and_watch_it_come_online(page_for, user, sender):
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/devices")
    page.click("#device-add-card summary")
    page.fill("#device-add input[name=device_name]", "Front desk")
    page.click("#device-add button[type=submit]")
    tr = page.locator("tr[data-device-id]", has_text="Front desk")
    expect(tr.locator(".status")).to_have_text("offline")
    expect(tr.locator('[data-action="logout"]')).to_be_hidden()
    wait_live(page)
    page.evaluate("window.notReloaded = true")  # gone if the page reloads instead of updating in place

    tr.locator('[data-action="pair"]').click()
    expect(tr.locator(".status")).to_have_text("connecting")
    expect(tr.locator(".pairing img.qr")).to_be_visible()  # the sender's QR, pushed live

    tr.locator('[data-action="simulate-scan"]').click()
    expect(tr.locator(".status")).to_have_text("online")
    expect(tr.locator(".phone")).to_have_text(re.compile(r"^\d{7,15}$"))
    expect(tr.locator('[data-action="logout"]')).to_be_visible()
    expect(tr.locator('[data-action="pair"]')).to_be_hidden()
    expect(tr.locator(".pairing")).to_be_hidden()
    assert page.evaluate("window.notReloaded === true")
