"""Every page on a 375 px phone and a 1400 px desktop: nothing wider than the screen (no horizontal
page scroll). A screenshot of each page at each width is saved under artifacts/screens/
(git-ignored)."""
import psycopg
import pytest
from playwright.sync_api import expect
from psycopg.rows import dict_row

from tests.browser.conftest import ARTIFACTS, sign_in

WIDTHS = (375, 1400)
# Pages that draw a list they fetch after loading: what to wait for before measuring.
FETCHED = {"campaigns": ".picker-list li", "sequence-new": ".picker-list li", "sequence-edit": ".picker-list li",
           "chats": "#wa-chats li"}
SCREENS = ARTIFACTS / "screens"


@pytest.fixture
def account(user, committed_db_url):
    """The demo account's data (devices, leads, a campaign, a sequence) plus long names and chats."""
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        c.execute("SELECT seed_demo(%s)", [user["id"]])
        device = c.execute("SELECT min(id) AS id FROM user_devices WHERE user_id = %s", [user["id"]]).fetchone()["id"]
        c.execute("SELECT create_devices(%s, 4, 'Outlet {n} Kuala Lumpur Sentral main counter (weekday shift)')",
                  [user["id"]])
        c.execute("SELECT set_devices_paused(%s, %s, true)", [user["id"], [device]])
        for n in range(3):
            c.execute("SELECT record_inbound_message(%s, %s, %s, %s, %s, %s, now(), false, 'text', %s)",
                      [device, f"W{n}", f"6012345670{n}@s.whatsapp.net", f"6012345670{n}@s.whatsapp.net",
                       f"6012345670{n}", "A rather long question about the package, the price and delivery " * 3,
                       "Nur Aisyah binti Abdullah"])
        hook = c.execute("SELECT create_webhook_endpoint(%s, %s, %s, webhook_event_types(), 'CRM') AS id",
                         [user["id"], "https://hooks.example.com/whatsapp/events/receiver-with-a-long-path?tenant=1234567890",
                          "whsec_" + "w" * 40]).fetchone()["id"]
        c.execute("SELECT send_test_webhook(%s, %s)", [user["id"], hook])
        ids = c.execute("""SELECT (SELECT min(id) FROM campaigns WHERE user_id = %(u)s) AS campaign,
                                  (SELECT min(id) FROM sequences WHERE user_id = %(u)s) AS sequence""",
                        {"u": user["id"]}).fetchone()
    return {"device": device, **ids}


def pages(ids):
    return {"dashboard": "/dashboard", "monitoring": "/monitoring", "devices": "/devices", "leads": "/leads",
            "campaigns": "/campaigns", "campaign": f"/campaigns/{ids['campaign']}", "sequences": "/sequences",
            "sequence": f"/sequences/{ids['sequence']}", "sequence-edit": f"/sequences/{ids['sequence']}/edit",
            "sequence-new": "/sequences/new", "chats": f"/device/{ids['device']}/whatsapp-web",
            "account": "/account", "password": "/account/password", "webhooks": "/webhooks"}


def overflow(page):
    """How far the page is wider than the screen (0: no horizontal scroll)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def check(page, name, too_wide):
    """The page at each width (the layout follows the viewport, no reload): its width, a screenshot."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        # Resize observers (the overview's chart) redraw on the next frames.
        page.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
        if overflow(page) > 0:
            too_wide[f"{name} at {width} px"] = overflow(page)


def test_every_page_fits_a_phone_and_a_desktop(page_for, user, account):
    SCREENS.mkdir(parents=True, exist_ok=True)
    page = page_for(viewport={"width": WIDTHS[0], "height": 800})
    too_wide = {}
    for name, path in (("login", "/login"), ("register", "/register")):
        page.goto(path)
        check(page, name, too_wide)
    sign_in(page, user["email"])
    for name, path in pages(account).items():
        page.goto(path)
        if name in FETCHED:                       # the list the page fetches is drawn
            expect(page.locator(FETCHED[name]).first).to_be_visible()
        check(page, name, too_wide)
    assert too_wide == {}, f"pages wider than the screen (px too wide): {too_wide}"
