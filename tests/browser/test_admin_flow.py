"""An administrator's whole round in a real browser: log in, upload the sample plugin (a bad ZIP
refused on the form first), grant its permissions, save settings (a wrong number refused with the
field's message), enable it, a platform service publishes an event over HTTP, the result shows on
the event's page, the widget on the dashboard refreshes, and the plugin is uninstalled through
the confirmation dialog."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.helpers import REPO
from tests.integration import Deployment, lead, wait_for

pytestmark = pytest.mark.integration

#: ``scripts/screenshots`` sets it: the pages are saved there as the flow passes them.
SCREENSHOTS = os.environ.get("TEST_SCREENSHOTS")

PASSWORD = "correct horse battery"
PLUGIN = "lead-insights"


def stored_settings(deployment: Deployment) -> dict[str, object]:
    return {s["name"]: s["value"] for s in deployment.host.registry.get_settings(PLUGIN)}


def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def submit(page: Page, target: str | Locator) -> None:
    """Click what submits a form and wait for the answer's page to load. The button is scrolled
    to first: a click that has to scroll a page just re-rendered by a POST can land on the frame
    above it (seen with the settings form after a refused save)."""
    button = page.locator(target) if isinstance(target, str) else target
    button.scroll_into_view_if_needed()
    with page.expect_navigation(wait_until="load"):
        button.click()


def log_in(page: Page, name: str = "ada", password: str = PASSWORD) -> None:
    page.goto("/plugins")
    expect(page).to_have_url(re.compile(r"/login"))  # every page needs a session
    page.fill("#name", name)
    page.fill("#password", password)
    submit(page, 'form[action="/login"] button[type=submit]')


def test_admin_installs_configures_and_removes_a_plugin(
    deployment: Deployment, browser: Browser, tmp_path: Path
) -> None:
    deployment.cli("user", "create", "ada", "--role", "admin", input=PASSWORD + "\n")
    publish_token = deployment.cli("token", "create", "--scope", "publish", "--name", "crm").stdout.strip()
    sample = tmp_path / "lead-insights.zip"
    deployment.cli("plugin", "package", str(REPO / "sample_plugin"), "-o", str(sample))
    bad = tmp_path / "not-a-plugin.zip"
    bad.write_bytes(b"this is not a ZIP archive\n" * 20)
    web = deployment.start_web()
    deployment.start_worker("browser", pool="solo")

    # localhost, not 127.0.0.1: the browser keeps the app's Secure cookies on a secure context.
    # Reduced motion: Bootstrap then neither scrolls smoothly nor fades its dialogs, so a click
    # lands where the button is, not where it was a moment ago.
    context = browser.new_context(base_url=f"http://localhost:{web.port}", reduced_motion="reduce")
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        # A wrong password is refused on the form; the right one opens the plugin list.
        log_in(page, password="not the password")
        expect(page.locator(".alert-danger")).to_contain_text("name or password")
        log_in(page)
        expect(page).to_have_url(re.compile(r"/plugins$"))
        expect(page.get_by_text("No plugins installed yet")).to_be_visible()

        # Upload: a file that is not a ZIP is refused on the form, nothing is installed.
        page.click("text=Upload a plugin")
        page.set_input_files("#file", str(bad))
        submit(page, 'form[action="/plugins/upload"] button[type=submit]')
        expect(page.locator("#file-feedback")).to_contain_text("ZIP")
        expect(page.locator("#file")).to_have_class(re.compile("is-invalid"))
        shot(page, "upload-refused")
        assert deployment.host.registry.plugins() == []
        page.set_input_files("#file", str(sample))
        submit(page, 'form[action="/plugins/upload"] button[type=submit]')
        expect(page).to_have_url(re.compile(rf"/plugins/{PLUGIN}$"))
        expect(page.locator("#plugin-status")).to_have_text("Disabled")

        # Every permission starts off; each toggle grants one.
        permissions = page.locator("#permissions [data-permission]")
        names = [permissions.nth(i).get_attribute("data-permission") for i in range(permissions.count())]
        assert sorted(names) == ["booking_access", "dashboard_widget", "data_export", "lead_access"]
        for name in names:
            button = page.locator(f'#permissions [data-permission="{name}"] button')
            expect(button).to_have_attribute("aria-pressed", "false")
            submit(page, button)
            expect(page.locator(f'#permissions [data-permission="{name}"] button')).to_have_attribute(
                "aria-pressed", "true"
            )
        assert all(deployment.host.registry.show(PLUGIN).permissions.values())

        # Settings: a number past the maximum is refused with the field's own message, and
        # nothing is written; a good one is saved.
        page.fill("#setting-min_score", "150")
        page.fill("#setting-greeting", "Scores from the browser")
        submit(page, "#settings button[type=submit]")
        expect(page.locator("#settings-error")).to_be_visible()
        expect(page.locator('[data-setting="min_score"] .invalid-feedback')).to_contain_text("100")
        expect(page.locator("#setting-min_score")).to_have_value("150")  # what was typed stays
        shot(page, "settings-refused")
        assert stored_settings(deployment)["greeting"] == "Lead scores"
        page.fill("#setting-min_score", "40")
        submit(page, "#settings button[type=submit]")
        expect(page.locator(".alert-success")).to_contain_text("settings saved")
        expect(page.locator("#setting-min_score")).to_have_value("40")

        submit(page, "#toggle-plugin")
        expect(page.locator("#plugin-status")).to_have_text("Enabled")
        shot(page, "plugin-detail")

        # The widget's first snapshot (beat renders it on its interval; an operator can too).
        deployment.cli("widgets", "refresh", PLUGIN)
        page.goto("/dashboard")
        card = page.locator(f'[data-widget="{PLUGIN}"]')
        expect(card.locator(".widget-title")).to_have_text("Lead Insights")
        frame = card.locator("iframe.widget-frame")
        first_src = frame.get_attribute("src")
        widget = page.frame_locator(f'[data-widget="{PLUGIN}"] iframe.widget-frame')
        expect(widget.locator("body")).to_contain_text("Scores from the browser")
        expect(widget.locator("body")).to_contain_text("0")

        # A platform service publishes a lead over HTTP; the worker scores it.
        event_id = f"evt-{uuid.uuid4().hex[:12]}"
        answer = httpx.post(
            f"{web.url}/api/v1/events",
            json={**lead(1, company="Initech", source="referral"), "event_id": event_id},
            headers={"Authorization": f"Bearer {publish_token}"},
            timeout=30,
        )
        assert (answer.status_code, answer.json()) == (202, {"event_id": event_id})
        deployment.wait_done([event_id])
        page.goto(f"/events/{event_id}")
        expect(page.locator("#event-status")).to_have_text("done")
        row = page.locator(f'#results tr[data-plugin="{PLUGIN}"]')
        expect(row).to_contain_text("success")
        expect(row.locator("pre.result")).to_contain_text('"score"')
        shot(page, "event")

        # The dashboard: "render now" has the worker render it; the card's frame follows the
        # new snapshot without a page reload.
        page.goto("/dashboard")
        card = page.locator(f'[data-widget="{PLUGIN}"]')
        expect(card.locator("iframe.widget-frame")).to_have_attribute("src", first_src or "")
        card.locator(".widget-refresh").click()
        expect(card.locator("iframe.widget-frame")).not_to_have_attribute(
            "src", first_src or "", timeout=30_000
        )
        widget = page.frame_locator(f'[data-widget="{PLUGIN}"] iframe.widget-frame')
        expect(widget.locator("body")).to_contain_text("1")
        shot(page, "dashboard")

        # Its activity (the result, with timings), the ops page (isolation mode, queues) and the
        # audit log of what this administrator did.
        page.goto("/plugins")
        expect(page.locator(f'#plugins tr[data-plugin="{PLUGIN}"]')).to_contain_text("enabled")
        shot(page, "plugins")
        page.goto(f"/plugins/{PLUGIN}/activity")
        expect(page.locator("#results")).to_contain_text(event_id[:12])  # ids are shortened
        expect(page.locator("#results")).to_contain_text("lead_created")
        expect(page.locator("#error-rate")).to_have_text("0.0%")
        shot(page, "activity")
        page.goto("/ops")
        expect(page.locator("#isolation-mode")).to_have_text("process")
        expect(page.locator("#queues")).to_contain_text("events")
        shot(page, "ops")
        page.goto("/audit")
        audit = page.locator("#audit")
        for action in ("install", "grant", "enable"):
            expect(audit).to_contain_text(action)
        expect(audit).to_contain_text("ada")
        shot(page, "audit")

        # Uninstall through the dialog: cancelling keeps it, confirming removes it.
        page.goto(f"/plugins/{PLUGIN}")
        page.click("#uninstall-button")
        dialog = page.locator("#uninstall-modal")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Confirm uninstallation")
        dialog.locator("[data-bs-dismiss=modal]").first.click()
        expect(dialog).to_be_hidden()
        assert [p.id for p in deployment.host.registry.plugins()] == [PLUGIN]
        page.click("#uninstall-button")
        expect(dialog).to_be_visible()
        submit(page, "#confirm-uninstall")
        expect(page).to_have_url(re.compile(r"/plugins$"))
        expect(page.locator(".alert-success")).to_contain_text("uninstalled")
        wait_for(lambda: deployment.host.registry.plugins() == [], "the plugin to be gone", timeout=10)
    finally:
        context.close()
