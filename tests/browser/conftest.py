"""Browser tests: Playwright driving Debian's Chromium (headless) against the app served on a
free loopback port over the module's database. Each test saves a screenshot under artifacts/."""
import os
import time
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import expect
from psycopg.rows import dict_row

from tests.factories import PASSWORD, make_user
from tests.liveserver import serving
from tests.test_sender_support import spawn_worker, stop_process

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def server(app):
    with serving(app) as host:
        yield f"http://{host}"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/bootstrap.sh installs Debian's chromium")
    from playwright.sync_api import expect, sync_playwright
    expect.set_options(timeout=30_000)   # assertions retry until then (5 s by default: too short under load)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def start_sender(committed_db_url, tmp_path):
    """start_sender(**env) -> the real sender pool (`python -m sender`, simulated WhatsApp) on the
    module's database; env such as WA_SIM_REPLY_RATE shapes the simulated network."""
    procs = []

    def start(**env):
        procs.append(spawn_worker(committed_db_url, tmp_path / "simnet", module="sender", SENDER_PROCESSES="1", **env))
        return procs[-1]

    yield start
    for proc in procs:
        stop_process(proc, timeout=15)


@pytest.fixture
def sender(start_sender):
    """The real sender pool with the simulated network's defaults."""
    return start_sender()


@pytest.fixture
def user(committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        uid = make_user(c)
        email = c.execute("SELECT email FROM users WHERE id = %s", [uid]).fetchone()["email"]
    return {"id": uid, "email": email}


@pytest.fixture
def page_for(browser, server, request):
    """page_for(viewport=...) -> a new page; a screenshot of each is saved when the test ends, and
    the test fails if the browser blocked anything under the Content-Security-Policy."""
    contexts, blocked = [], []

    def make(viewport=None):
        ctx = browser.new_context(viewport=viewport or {"width": 1280, "height": 800}, base_url=server)
        ctx.set_default_timeout(30000)   # a loaded 2-core machine is slow; waits end on their condition
        contexts.append(ctx)
        page = ctx.new_page()
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        return page

    yield make
    ARTIFACTS.mkdir(exist_ok=True)
    for n, ctx in enumerate(contexts):
        for page in ctx.pages:
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{'-' + str(n) if n else ''}.png"), full_page=True)
        ctx.close()
    assert not blocked, f"blocked by the Content-Security-Policy: {blocked}"


def sign_in(page, email):
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard")
    wait_live(page)


def wait_live(page):
    """The live socket is open once the shared client says so."""
    expect(page.locator("html")).to_have_attribute("data-live", "open")


def wait_for_js(page, expression, seconds=30):
    """Polls a JavaScript expression until it is true. page.wait_for_function evals the expression
    inside the page, which the Content-Security-Policy forbids; page.evaluate goes through DevTools."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)
