"""In a real browser with the real sender pool (`python -m sender`, simulated WhatsApp): add a
device, pair it by QR, simulate the phone's scan, and watch the row turn online live, in place."""
import re
import time

from playwright.sync_api import expect

from tests.browser.conftest import sign_in, wait_for_js, wait_live


def add_device(page_for, user, name):
    """Signed in on the devices page, a device added through its form: (page, its row), offline."""
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/devices")
    page.click("#device-add-card summary")
    page.fill("#device-add input[name=device_name]", name)
    page.click("#device-add button[type=submit]")
    tr = page.locator("tr[data-device-id]", has_text=name)
    expect(tr.locator(".status")).to_have_text("offline")
    return page, tr


def test_pair_a_simulated_device_and_watch_it_come_online(page_for, user, sender):
    page, tr = add_device(page_for, user, "Front desk")
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


def test_a_qr_still_rendering_when_the_scan_lands_stays_hidden(page_for, user, sender):
    """The QR's SVG is fetched after its live event; a scan that lands meanwhile wins."""
    page, tr = add_device(page_for, user, "Back office")
    wait_live(page)
    page.evaluate("""() => {
      window.rendered = 0;
      const create = URL.createObjectURL;
      URL.createObjectURL = (blob) => { window.rendered += 1; return create(blob); };
    }""")
    held = []
    page.route("**/qr.svg", lambda route: held.append(route))   # every QR rendering waits until the scan has landed

    tr.locator('[data-action="pair"]').click()
    deadline = time.monotonic() + 60
    while not held:
        assert time.monotonic() < deadline, "no QR reached the page within 60 s"
        page.wait_for_timeout(100)   # lets Playwright dispatch the route callback
    tr.locator('[data-action="simulate-scan"]').click()
    expect(tr.locator(".status")).to_have_text("online")

    for route in held:
        route.continue_()
    wait_for_js(page, f"window.rendered >= {len(held)}")
    expect(tr.locator(".pairing")).to_be_hidden()
    assert page.evaluate("() => window.rendered") >= 1
