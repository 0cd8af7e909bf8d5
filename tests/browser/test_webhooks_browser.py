"""The Webhooks page: add an endpoint, send it a test event, and see the delivery's HTTP status
appear live once the deliverer (its loopback test launcher) has sent it to a local receiver."""
import re

from playwright.sync_api import expect

from common.webhooks import verify
from tests.browser.conftest import sign_in
from tests.test_webhooks import deliverers, receiver  # noqa: F401 (fixtures)
from web import webhooks as web_webhooks


def test_add_an_endpoint_send_a_test_event_and_see_it_delivered(page_for, user, receiver, deliverers, monkeypatch):  # noqa: F811
    monkeypatch.setattr(web_webhooks, "ADDRESS_POLICY", "127.0.0.1".__eq__)
    page = page_for()
    sign_in(page, user["email"])
    page.goto("/webhooks")
    page.fill("#endpoint-form input[name=url]", receiver.url)
    page.fill("#endpoint-form input[name=description]", "my CRM")
    page.click("#endpoint-form button[type=submit]")
    row = page.locator("#endpoints tbody tr", has_text=receiver.url)
    expect(row).to_contain_text("my CRM")
    row.locator("summary").click()
    secret = row.locator("code").inner_text()
    row.get_by_role("button", name="Send test").click()
    expect(page.locator("#deliveries tbody tr", has_text="webhook.test")).to_contain_text("pending")
    deliverers()                               # the page shows the attempt live, no reload
    expect(page.locator("#deliveries tbody tr", has_text="webhook.test")).to_contain_text(
        re.compile(r"delivered.*200", re.S), timeout=60_000)
    headers, body = receiver.requests[0]
    assert headers["X-Webhook-Event"] == "webhook.test" and verify(secret, headers, body)
    # Disable, then delete.
    row.get_by_role("button", name="Disable").click()
    expect(page.locator("#endpoints tbody tr", has_text=receiver.url)).to_contain_text("disabled")
    page.once("dialog", lambda d: d.accept())
    page.locator("#endpoints tbody tr", has_text=receiver.url).get_by_role("button", name="Delete").click()
    expect(page.locator("#endpoints")).to_contain_text("No endpoints yet.")
