"""The console in a real browser: Debian's Chromium driven by Playwright, against a real server.

Sign in, create customer managed keys and a table under one, add and edit an item, switch the table's key,
disable that key and watch the table become inaccessible after the lifecycle sweep, then read the events
and the KMS timeline. Screenshots go to the test's tmp dir; with DYNAVAULT_UPDATE_SCREENSHOTS=1 two of them
also replace the README's in docs/ (a plain run leaves the checkout as it was).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import make_table

from .helpers import start_with_accounts

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (apt-get install chromium)")


def _reload_until(page, selector: str, text: str, timeout: float) -> str:
    deadline = time.time() + timeout
    seen = ""
    while time.time() < deadline:
        seen = page.locator(selector).inner_text()
        if text in seen:
            return seen
        time.sleep(0.5)
        page.reload()
    raise AssertionError(f"{selector} never showed {text!r} (last: {seen!r})")


def test_console_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    # Fast lifecycle: table keys refresh every second, the key sweep runs twice a second, a switch shows
    # UPDATING for ~3 s.
    srv, (key,) = start_with_accounts(tmp_path / "server", ["444444444444"], key_refresh_seconds=1,
                                      key_check_seconds=0.5, sse_update_seconds=3)
    try:
        ddb = srv.client("dynamodb", access_key=key.access_key_id, secret=key.secret)
        # neighbours for the list: one under the AWS owned key, one under the AWS managed key
        make_table(ddb, "sessions")
        make_table(ddb, "invoices", range_type="N", sse={"Enabled": True, "SSEType": "KMS"})
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS,
                viewport={"width": 1360, "height": 900})
            try:
                _drive(context.new_page(), srv.endpoint, key, shots)
            finally:
                context.close()
    finally:
        srv.kill()
    DOCS.mkdir(exist_ok=True)
    if os.environ.get("DYNAVAULT_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shots / "03-tables.png", DOCS / "console-tables.png")
        shutil.copy(shots / "09-audit.png", DOCS / "console-audit.png")


def _drive(page, endpoint: str, key, shots: Path) -> None:
    page.set_default_timeout(15_000)
    page.goto(endpoint + "/console/")
    assert "/console/login" in page.url  # no session: the sign-in page
    page.fill("input[name=access_key_id]", key.access_key_id)
    page.fill("input[name=secret_access_key]", key.secret)
    page.screenshot(path=str(shots / "01-sign-in.png"))
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/console/tables")

    # two customer managed keys: the table starts under the first and switches to the second
    arns = []
    for alias in ("alias/orders-2026", "alias/orders-next"):
        page.goto(endpoint + "/console/keys")
        page.fill("#create-key input[name=alias]", alias)
        page.fill("#create-key input[name=description]", f"orders data ({alias})")
        page.click("#create-key button")
        page.wait_for_selector("#key-state")
        assert page.locator("#key-state").inner_text() == "Enabled"
        arns.append(page.locator("dd.arn").first.inner_text().strip())
    page.screenshot(path=str(shots / "02-key.png"), full_page=True)

    page.goto(endpoint + "/console/tables/new")
    page.fill("input[name=name]", "orders")
    page.fill("input[name=pk]", "customer")
    page.fill("input[name=sk]", "order")
    page.select_option("select[name=sk_type]", "N")
    page.fill("input[name=gsi]", "by-status")
    page.fill("input[name=gsi_pk]", "status")
    page.check("input[name=encryption][value=customer]")
    page.select_option("select[name=key_arn]", arns[0])
    page.click("button:has-text('Create table')")
    page.wait_for_url("**/console/tables/orders")
    assert page.locator("#key-type").inner_text() == "customer managed"
    assert page.locator("#key-arn").inner_text().strip() == arns[0]

    # add an item, then edit it
    page.click("a:has-text('Add item')")
    page.fill("textarea[name=item]", '{"customer": {"S": "c-17"}, "order": {"N": "1001"}, '
                                     '"status": {"S": "open"}, "total": {"N": "42.50"}}')
    page.click("button:has-text('Save item')")
    page.wait_for_url("**/item?key=*")
    text = page.locator("textarea[name=item]").input_value()
    assert '"open"' in text
    page.fill("textarea[name=item]", text.replace('"open"', '"shipped"'))
    page.screenshot(path=str(shots / "04-item.png"), full_page=True)
    page.click("button:has-text('Save item')")
    page.wait_for_url("**/item?key=*")
    assert '"shipped"' in page.locator("textarea[name=item]").input_value()
    for n in range(2, 6):
        page.goto(endpoint + "/console/tables/orders/item")
        page.fill("textarea[name=item]", f'{{"customer": {{"S": "c-{n}"}}, "order": {{"N": "{n}"}}, '
                                         f'"status": {{"S": "open"}}}}')
        page.click("button:has-text('Save item')")
        page.wait_for_url("**/item?key=*")
    page.goto(endpoint + "/console/tables")
    page.screenshot(path=str(shots / "03-tables.png"), full_page=True)
    assert page.locator("tr:has-text('orders')").locator("text=customer managed").count() == 1
    assert page.locator("tr:has-text('invoices')").locator("text=AWS managed").count() == 1
    assert page.locator("tr:has-text('sessions')").locator("text=AWS owned").count() == 1

    page.goto(endpoint + "/console/tables/orders")
    assert page.locator("table.items").locator("text=shipped").count() == 1
    assert page.locator("table.items a:text-is('open')").count() == 5  # 5 rows, each with its link
    page.fill("#query input[name=pk]", "c-17")  # query by key
    page.click("#query button")
    page.wait_for_url("**/console/tables/orders?find=*")
    assert page.locator("table.items a:text-is('open')").count() == 1
    assert "c-17" not in page.url  # key values travel sealed
    page.goto(endpoint + "/console/tables/orders")

    # switch the table's key to the second customer managed key: UPDATING, then ENABLED under the new key
    page.check("#switch-key input[name=encryption][value=customer]")
    page.select_option("#switch-key select[name=key_arn]", arns[1])
    page.click("#switch-key button:has-text('Switch key')")
    page.wait_for_url("**/console/tables/orders")
    assert "switch requested" in page.locator(".flash.ok").inner_text()
    assert page.locator("#sse-status").inner_text() == "UPDATING"
    page.screenshot(path=str(shots / "05-updating.png"), full_page=True)
    # no reload from here: the page refreshes itself while UPDATING, until the switch is done
    page.wait_for_selector("#sse-status:text-is('ENABLED')", timeout=30_000)
    assert page.locator("#key-arn").inner_text().strip() == arns[1]
    page.screenshot(path=str(shots / "05-switched.png"), full_page=True)
    assert page.locator("table.items").locator("text=shipped").count() == 1
    page.click("#history-link")
    history = page.locator("#history").inner_text()
    assert arns[0] in history and arns[1] in history

    # disable the key the table is now under: the sweep marks the table inaccessible
    page.goto(endpoint + "/console/keys/" + arns[1].rsplit("/", 1)[1])
    page.click("button:has-text('Disable key')")
    page.wait_for_selector("#key-state")
    assert page.locator("#key-state").inner_text() == "Disabled"
    assert page.locator("a:has-text('orders')").count() == 1  # the tables this key protects
    page.screenshot(path=str(shots / "06-key-disabled.png"), full_page=True)
    page.goto(endpoint + "/console/tables/orders")
    _reload_until(page, "#sse-status", "INACCESSIBLE_ENCRYPTION_CREDENTIALS", 30)
    assert "KMS" in page.locator("#items-error").inner_text()  # no key, no data
    page.screenshot(path=str(shots / "07-inaccessible.png"), full_page=True)
    page.goto(endpoint + "/console/tables")
    assert page.locator("tr:has-text('orders')").locator("text=INACCESSIBLE_ENCRYPTION_CREDENTIALS").count() >= 1
    page.screenshot(path=str(shots / "08-tables-inaccessible.png"), full_page=True)

    # the events and the KMS timeline for the table
    page.goto(endpoint + "/console/audit?table=orders&window=15m")
    chart = page.locator("figure.timeline svg")
    assert chart.count() == 1
    legend = chart.text_content()
    assert "GenerateDataKey (2)" in legend  # one table key at creation, one at the switch
    assert "Decrypt (" in legend and "Decrypt (0)" not in legend
    assert "errors (0)" not in legend  # the disabled key's refusals
    events = page.locator("table.events").inner_text()
    assert "GenerateDataKey" in events and "Decrypt" in events and "DisabledException" in events
    page.screenshot(path=str(shots / "09-audit.png"), full_page=True)
    page.goto(endpoint + "/console/audit?key=" + arns[1].rsplit("/", 1)[1])
    key_events = page.locator("table.events").inner_text()
    assert "DisableKey" in key_events and "dynavault-console/" in key_events
