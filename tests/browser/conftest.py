"""The browser tests: Debian's headless Chromium (installed by ``scripts/setup --dev``, never a
browser downloaded by Playwright) driven by Playwright against the real ``services-ai web`` and
a real worker on Redis and PostgreSQL (the integration fixtures)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.integration.fixtures import *  # noqa: F403

#: Debian's package puts it here; TEST_CHROMIUM points elsewhere on another machine.
CHROMIUM = os.environ.get("TEST_CHROMIUM", "/usr/bin/chromium")

#: As root the browser's own sandbox cannot start; the other flags keep it off the network
#: (this machine refuses outside connections, and each refusal costs time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: run scripts/setup --dev (as root it "
            "installs Debian's chromium) or set TEST_CHROMIUM",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
