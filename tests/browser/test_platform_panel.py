"""The admins' Platform section in the ReefLab panel, on a real hub with its usage service, through Chromium: an
admin logs in and sees the free capacity, each user's server and their CPU over the last day as bars (light and
dark); a user who is not an admin has no such section (their server answers 403)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import expect
from reeflab.testing.hub import HubProcess

pytestmark = pytest.mark.timeout(420)

ADMIN, USER = "plat-ada", "plat-ben"
PASSWORD = "c0ral-Reef-42"
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
LAB_MS = 90_000  # JupyterLab's first load through the hub, on 2 shared cores


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[HubProcess]:
    """The hub (one admin, one user), both servers started, the usage service sampling every second."""
    env = {"REEFLAB_ADMINS": ADMIN, "REEFLAB_USAGE_INTERVAL": "1"}
    with HubProcess(tmp_path_factory.mktemp("hub"), env=env) as hub:
        assert hub.api("POST", f"users/{USER}").status_code == 201
        for name in (ADMIN, USER):
            hub.spawn(name)
        yield hub
        for name in (ADMIN, USER):
            hub.api("DELETE", f"users/{name}/server")


def log_in(page, hub: HubProcess, name: str, theme: str = "light") -> None:
    """The hub's login page (the first login sets the password), then JupyterLab in `theme`."""
    token = hub.user_token(name)
    requests.put(
        f"{hub.url}user/{name}/lab/api/settings/@jupyterlab/apputils-extension:themes",
        headers={"Authorization": f"token {token}"},
        json={"raw": json.dumps({"theme": THEMES[theme]})},
        timeout=30,
    ).raise_for_status()
    browser = page.page
    browser.goto(hub.url)
    if re.search(r"/hub/login", browser.url):
        browser.get_by_label("Username").fill(name)
        browser.get_by_label("Password").fill(PASSWORD)
        browser.get_by_role("button", name="Sign in").click()
    browser.wait_for_url(re.compile(r"/hub/|/user/"), timeout=LAB_MS)
    browser.goto(f"{hub.url}user/{name}/lab?reset")
    browser.locator(f'body[data-jp-theme-name="{THEMES[theme]}"]').wait_for(state="attached", timeout=LAB_MS)
    browser.locator("#jp-main-dock-panel .jp-Launcher").wait_for(timeout=LAB_MS)


def test_an_admin_sees_the_platform_section(hub_page, hub: HubProcess):
    page = hub_page
    for theme in ("light", "dark"):
        log_in(page, hub, ADMIN, theme)
        page.open_panel()
        section = page.panel.get_by_role("region", name="Platform", exact=True)
        expect(section).to_be_visible()
        section.locator(".jp-ReefLab-sectionToggle").click()
        expect(section.get_by_label("Free capacity")).to_contain_text(re.compile(r"of \d+ CPUs idle"))
        expect(section.get_by_label("Free capacity")).to_contain_text("GB memory")
        users = section.get_by_role("list", name="Users")
        ben = users.get_by_role("listitem", name=USER, exact=True)
        expect(ben.get_by_label("Running")).to_have_text("server running")
        ada = users.get_by_role("listitem", name=ADMIN, exact=True)
        expect(ada.locator(".jp-ReefLab-badge")).to_have_text("admin")
        # their servers' CPU since they started: counted by the service, an hour's bar in the day's plot
        expect(ben.get_by_label("Usage")).to_contain_text("CPU-h")
        expect(ben.get_by_role("img")).to_be_visible()
        assert float(ben.locator("[data-cpu_hours]").last.get_attribute("data-cpu_hours")) > 0
        section.scroll_into_view_if_needed()
        page.screenshot(f"platform-{theme}")


def test_a_user_has_no_platform_section(hub_page, hub: HubProcess):
    page = hub_page
    with page.page.expect_response(lambda r: r.url.endswith("/reeflab/api/platform/status"), timeout=LAB_MS) as seen:
        log_in(page, hub, USER)
        page.open_panel()
    assert seen.value.status == 403
    expect(page.panel.get_by_role("region", name="Account and hardware", exact=True)).to_be_visible()
    expect(page.panel.get_by_role("region", name="Platform", exact=True)).to_have_count(0)
    page.screenshot("no-platform")
