"""Label Studio's labelling page opened from the panel: "Open in Label Studio" on a project opens, in a new tab,
the user's own Label Studio through their server (no Label Studio login), with the task's image and the
project's label buttons; a box drawn and submitted there is counted in the panel. Light and dark; then the
same on the real hub, as a user who logged in there."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from reeflab.client import Connection, annotation
from reeflab.modules.fish_detector.synth import generate_samples
from reeflab.testing.hub import HubProcess

pytestmark = pytest.mark.timeout(480)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
SCENES = 2
SLOW_MS = 150_000  # Label Studio's first start, on 2 shared cores
# Label Studio's own theme follows the panel's (its page keeps the choice in localStorage)
STUDIO_THEME = "localStorage.setItem('preferred-color-scheme', '{}')"
HUB_USER = "lena"
PASSWORD = "c0ral-Reef-77"
SPAWN_MS = 90_000


@pytest.fixture
def project(lab):
    """Two generated scenes in the lab's folder 'pages' and a detection project over them; none after."""
    generate_samples(lab.root / "notebooks" / "pages", n=SCENES, seed=11).unlink()  # images only
    made = requests.post(  # its Label Studio may start for it first (~1 min on a fresh database)
        lab.api_url("reeflab/api/annotation/projects"),
        headers=lab.headers,
        json={"title": "Reef pages", "folder": "pages", "labels": ["fish", "coral"]},
        timeout=300,
    )
    made.raise_for_status()
    yield made.json()
    lab.api("DELETE", f"annotation/projects/{made.json()['id']}")


def open_labelling_page(lab_page, lab, project, theme: str, counts: str):
    """The panel's Annotation section in `theme` (the project's row says `counts`), then "Open in Label Studio":
    the new tab, once it shows the task's image and the label buttons."""
    lab_page.page.context.add_init_script(STUDIO_THEME.format(theme.capitalize()))
    lab_page.open_lab(theme)
    lab_page.open_panel()
    section = lab_page.panel.get_by_role("region", name="Annotation", exact=True)
    section.get_by_role("button", name="Annotation", exact=True).click()  # folded at first
    row = section.get_by_role("listitem", name="Reef pages")
    expect(row).to_contain_text(counts, timeout=60_000)
    link = row.get_by_role("link", name="Open Reef pages in Label Studio")
    expect(link).to_have_attribute("target", "_blank")
    row.scroll_into_view_if_needed()
    lab_page.screenshot(theme)

    images = []
    lab_page.page.context.on("response", lambda r: images.append(r) if "/data/local-files/" in r.url else None)
    with lab_page.page.context.expect_page() as opened:
        link.click()
    studio = opened.value
    # the user's server's route, logged in by it: no Label Studio address, no login form
    assert studio.url.startswith(f"{lab.url}reeflab/annotation/ui/projects/{project['id']}/data"), studio.url
    expect(studio.get_by_role("button", name="Submit current annotation")).to_be_visible(timeout=SLOW_MS)
    expect(studio.locator("input[name=password]")).to_have_count(0)
    # the project's labels as buttons, and the task's image loaded through the server
    expect(studio.get_by_text("fish", exact=True)).to_be_visible()
    expect(studio.get_by_text("coral", exact=True)).to_be_visible()
    studio.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 100)")
    assert images and all(r.status == 200 and r.url.startswith(lab.url) for r in images), [
        (r.status, r.url) for r in images
    ]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    studio.screenshot(path=ARTIFACTS / f"{lab_page.name}-label-studio-{theme}.png", animations="disabled")
    return studio


def test_open_in_label_studio_labels_an_image_through_the_server(lab_page, lab, project):
    studio = open_labelling_page(lab_page, lab, project, "light", f"0 of {SCENES} labelled")

    # the annotator picks "fish", draws a box over the image and submits, as on any Label Studio
    studio.get_by_text("fish", exact=True).click()
    image = studio.locator("img[src^='blob:']").first
    box = image.bounding_box()
    studio.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    studio.mouse.down()
    studio.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=10)
    studio.mouse.up()
    studio.get_by_role("button", name="Submit current annotation").click()
    project_url = f"annotation/projects/{project['id']}"
    for _ in range(60):
        if lab.api("GET", project_url).json()["labelled"] == 1:
            break
        studio.wait_for_timeout(1000)
    stored = lab.api("GET", project_url).json()
    assert stored["labelled"] == 1, stored
    studio.close()

    # dark: the panel counts the submitted box, and the page opens again as it did
    open_labelling_page(lab_page, lab, project, "dark", f"1 of {SCENES} labelled").close()


def test_a_webdav_projects_image_shows_in_the_labelling_page(lab_page, lab, dav):
    """A project over a WebDAV folder (Label Studio reads no WebDAV): the labelling page shows the task's image, which
    the browser reads from the server's own route with its login (streamed from WebDAV; no WebDAV address or
    password reaches the page)."""
    (dav.root / "pages").mkdir(exist_ok=True)
    generate_samples(dav.root / "pages", n=SCENES, seed=17).unlink()  # images only
    body = {"kind": "webdav", "name": "cloud", "url": dav.url, "user": dav.user, "password": dav.password}
    assert lab.api("POST", "storage/connections", json=body).status_code == 201
    made = requests.post(  # its Label Studio may start for it first (~1 min on a fresh database)
        lab.api_url("reeflab/api/annotation/projects"),
        headers=lab.headers,
        json={"title": "Cloud pages", "folder": "cloud:pages", "labels": ["fish"]},
        timeout=300,
    )
    assert made.status_code == 201, made.text
    project = made.json()
    try:
        lab_page.open_lab("light")  # logged in to the server, as the panel's user is
        loaded = []
        lab_page.page.context.on("response", lambda r: loaded.append(r) if "/storage/connections/" in r.url else None)
        studio = lab_page.page.context.new_page()
        studio.goto(f"{lab.url}reeflab/annotation/ui/projects/{project['id']}/data?labeling=1")
        expect(studio.get_by_role("button", name="Submit current annotation")).to_be_visible(timeout=SLOW_MS)
        studio.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 100)")
        assert loaded and all(r.status == 200 and r.url.startswith(f"{lab.url}reeflab/api/storage/") for r in loaded), [
            (r.status, r.url) for r in loaded
        ]
        html = studio.content()
        assert dav.password not in html and str(dav.port) not in html
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        studio.screenshot(path=ARTIFACTS / f"{lab_page.name}-label-studio-webdav.png", animations="disabled")
        studio.close()
    finally:
        lab.api("DELETE", f"annotation/projects/{project['id']}")
        lab.api("DELETE", "storage/connections/cloud")


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[HubProcess]:
    """The real hub with one user, whose server runs and who has a project over two scenes of her files."""
    with HubProcess(tmp_path_factory.mktemp("hub")) as hub:
        assert hub.api("POST", f"users/{HUB_USER}").status_code == 201
        user = Connection(hub.spawn(HUB_USER), hub.user_token(HUB_USER), timeout=300)
        local = tmp_path_factory.mktemp("scenes")
        generate_samples(local, n=SCENES, seed=13)
        user.session.put(user.url + "api/contents/scenes", json={"type": "directory"}, timeout=30)
        for image in sorted(local.glob("*.jpg")):
            body = {"type": "file", "format": "base64", "content": base64.b64encode(image.read_bytes()).decode()}
            user.session.put(user.url + f"api/contents/scenes/{image.name}", json=body, timeout=30)
        hub.project = annotation.create("Hub reef", "scenes", labels=["fish", "coral"], connection=user)
        hub.user = user
        yield hub
        hub.project.delete()
        hub.api("DELETE", f"users/{HUB_USER}/server")


def test_open_in_label_studio_through_the_hub(hub_page, hub):
    """Logged in at the hub (no other password), the panel's link opens the page under /user/<name>/."""
    browser = hub_page.page
    browser.goto(hub.url)
    expect(browser).to_have_url(re.compile(r"/hub/login"))
    browser.get_by_label("Username").fill(HUB_USER)
    browser.get_by_label("Password").fill(PASSWORD)  # an added user's first login sets it
    browser.get_by_role("button", name="Sign in").click()
    browser.wait_for_url(re.compile(r"/hub/|/user/"))
    for theme in ("light", "dark"):
        settings = hub.user.url + "lab/api/settings/@jupyterlab/apputils-extension:themes"
        chosen = {"theme": "JupyterLab Light" if theme == "light" else "JupyterLab Dark"}
        hub.user.session.put(settings, json={"raw": json.dumps(chosen)}, timeout=30).raise_for_status()
        browser.context.add_init_script(STUDIO_THEME.format(theme.capitalize()))
        browser.goto(hub.user.url + "lab?reset")  # (reset: the panel is closed, as open_panel expects)
        browser.locator(f'body[data-jp-theme-name="{chosen["theme"]}"]').wait_for(state="attached", timeout=SPAWN_MS)
        browser.locator("#jp-main-dock-panel .jp-Launcher").wait_for(timeout=SPAWN_MS)
        browser.locator('.jp-SideBar.jp-mod-left [data-id="reeflab-panel"]').wait_for(timeout=SPAWN_MS)
        hub_page.open_panel()
        section = hub_page.panel.get_by_role("region", name="Annotation", exact=True)
        section.get_by_role("button", name="Annotation", exact=True).click()
        row = section.get_by_role("listitem", name="Hub reef")
        link = row.get_by_role("link", name="Open Hub reef in Label Studio")
        row.scroll_into_view_if_needed()
        hub_page.screenshot(f"hub-{theme}")
        with browser.context.expect_page() as opened:
            link.click()
        studio = opened.value
        expected = f"{hub.url}user/{HUB_USER}/reeflab/annotation/ui/projects/{hub.project.id}/data"
        assert studio.url.startswith(expected), studio.url
        expect(studio.get_by_role("button", name="Submit current annotation")).to_be_visible(timeout=SLOW_MS)
        expect(studio.get_by_text("fish", exact=True)).to_be_visible()
        expect(studio.get_by_text("coral", exact=True)).to_be_visible()
        studio.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 100)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        studio.screenshot(path=ARTIFACTS / f"{hub_page.name}-label-studio-{theme}.png", animations="disabled")
        studio.close()
