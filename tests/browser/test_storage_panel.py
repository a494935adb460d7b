"""Storage from the ReefLab panel: adding and browsing a connection against a real WebDAV server (wsgidav), and
the platform's own bucket (the real serverless engine and its SeaweedFS) with new folders and copied paths."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from reeflab.oscar_engine.testing import EngineProcess
from reeflab.storage.testing import WebDAVProcess

pytestmark = pytest.mark.timeout(120)
USER = "ana"


@pytest.fixture(scope="module")
def dav(tmp_path_factory):
    with WebDAVProcess(tmp_path_factory.mktemp("webdav"), user="ana") as server:
        (server.root / "surveys" / "2026-11").mkdir(parents=True)
        (server.root / "surveys" / "2026-11" / "transect-01.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 5000)
        (server.root / "reef-notes.txt").write_text("coral cover 34%\n")
        yield server


@pytest.fixture
def lab_storage(lab):
    """No connection of the test's own before and after it (the platform's own, if any, stays)."""

    def forget():
        for connection in lab.api("GET", "storage/connections").json()["connections"]:
            if not connection["platform"]:
                lab.api("DELETE", f"storage/connections/{connection['name']}")

    forget()
    yield lab
    forget()


def storage_section(lab_page):
    section = lab_page.panel.get_by_role("region", name="Storage", exact=True)
    section.get_by_role("button", name="Storage", exact=True).click()  # folded at first
    return section


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_add_a_webdav_connection_and_browse_it(lab_page, lab_storage, dav, theme, tmp_path):
    lab_page.open_lab(theme)
    lab_page.open_panel()
    section = storage_section(lab_page)
    section.get_by_role("button", name="Add a connection").click()
    form = section.get_by_role("form", name="Add a storage connection")
    form.get_by_label("Name").fill("cloud")
    form.get_by_label("URL").fill(dav.url)
    form.get_by_label("User").fill(dav.user)
    form.get_by_label("App password").fill("not-the-password")
    form.get_by_role("button", name="Add", exact=True).click()
    # the server tests it first and says why it was not saved, in words
    expect(form.get_by_role("alert")).to_contain_text("Connection not saved")
    form.get_by_label("App password").fill(dav.password)
    form.get_by_role("button", name="Add", exact=True).click()
    row = section.get_by_role("listitem", name="cloud", exact=True)
    expect(row).to_contain_text("WebDAV")
    expect(row).to_contain_text("not mounted")
    expect(section.get_by_role("status").filter(has_text="cloud was added")).to_be_visible()

    row.get_by_role("button", name="Browse").click()
    files = row.get_by_role("region", name="Files of cloud")
    entries = files.get_by_role("list", name="Entries")
    expect(entries.get_by_role("listitem").first).to_have_text("surveys")  # folders first
    expect(entries).to_contain_text("reef-notes.txt")
    files.get_by_role("button", name="surveys", exact=True).click()
    files.get_by_role("button", name="2026-11", exact=True).click()
    expect(entries).to_contain_text("transect-01.jpg")
    expect(entries).to_contain_text("5.0 kB")
    lab_page.screenshot("browsing")

    # upload from the computer into the folder being browsed, download back through the browser
    photo = tmp_path / "quadrat-07.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + b"7" * 1200)
    files.get_by_label("Files to upload to 2026-11").set_input_files(photo)
    expect(files.get_by_role("status").filter(has_text="Uploaded")).to_have_text(
        "Uploaded quadrat-07.jpg to surveys/2026-11."
    )
    expect(entries).to_contain_text("quadrat-07.jpg")
    assert (dav.root / "surveys" / "2026-11" / "quadrat-07.jpg").read_bytes() == photo.read_bytes()
    with lab_page.page.expect_download() as download:
        files.get_by_role("button", name="Download transect-01.jpg").click()
    assert download.value.suggested_filename == "transect-01.jpg"
    saved = tmp_path / "downloaded.jpg"
    download.value.save_as(saved)
    assert saved.read_bytes() == (dav.root / "surveys" / "2026-11" / "transect-01.jpg").read_bytes()
    # gone on the server meanwhile: said in words, nothing saved
    (dav.root / "surveys" / "2026-11" / "quadrat-07.jpg").unlink()
    files.get_by_role("button", name="Download quadrat-07.jpg").click()
    expect(files.get_by_role("alert")).to_contain_text("quadrat-07.jpg")
    lab_page.screenshot("files")

    row.get_by_role("button", name="Test").click()
    expect(row.get_by_role("status").filter(has_text="It works")).to_be_visible()
    # no secret ever reaches the page
    assert dav.password not in lab_page.page.content()
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("alertdialog").get_by_role("button", name="Delete it").click()
    expect(section.get_by_role("listitem", name="cloud", exact=True)).to_have_count(0)
    names = [c["name"] for c in lab_storage.api("GET", "storage/connections").json()["connections"]]
    assert "cloud" not in names


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with EngineProcess(tmp_path_factory.mktemp("engine") / "state", users=[USER], s3=True) as engine:
        yield engine


@pytest.fixture(scope="module")
def platform_lab(tmp_path_factory, engine, lab):
    """A lab server of user ana with the platform behind it (as under the hub): her `reeflab` connection."""
    env = {"REEFLAB_SERVERLESS_URL": engine.url, "REEFLAB_SERVERLESS_TOKEN": engine.tokens[USER]}
    with type(lab)(tmp_path_factory.mktemp("platform-lab"), env=env) as server:
        yield server


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_platform_bucket_a_new_folder_and_its_path(lab_page, platform_lab, engine, theme, tmp_path):
    bucket = engine.s3(USER)
    # the other theme's run made it: gone (the API takes SeaweedFS's folder along, not only its files)
    platform_lab.api("DELETE", "storage/connections/reeflab/file", params={"path": "fish-in", "confirm": "fish-in"})
    lab_page.lab = platform_lab
    origin = platform_lab.url.split("/", 3)[:3]
    lab_page.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin="/".join(origin))
    lab_page.open_lab(theme)
    lab_page.open_panel()
    section = storage_section(lab_page)
    row = section.get_by_role("listitem", name="reeflab", exact=True)
    # named reeflab, but the row says which bucket it is: the one serverless paths start with
    expect(row).to_contain_text("Your bucket ana on the platform: serverless input and output paths start with ana/")

    row.get_by_role("button", name="Browse").click()
    files = row.get_by_role("region", name="Files of reeflab")
    expect(files.get_by_role("navigation", name="Folder")).to_have_text("ana")
    files.get_by_role("button", name="New folder").click()
    form = files.get_by_role("form", name="New folder in ana")
    form.get_by_label("Folder name").fill("fish-in")
    lab_page.screenshot("naming")
    form.get_by_role("button", name="Create").click()
    expect(files.get_by_role("status").filter(has_text="Made the")).to_have_text("Made the folder ana/fish-in.")
    entries = files.get_by_role("list", name="Entries")
    expect(entries.locator('li[data-type="directory"]')).to_have_text(["fish-in"])
    # a folder on the platform's S3 for everyone who looks: the serverless side lists it with the user's key
    assert {"Prefix": "fish-in/"} in bucket.list_objects_v2(Bucket=USER, Delimiter="/")["CommonPrefixes"]

    files.get_by_role("button", name="Copy the path of fish-in").click()
    expect(files.get_by_role("status").filter(has_text="Copied")).to_have_text("Copied ana/fish-in")
    assert lab_page.page.evaluate("navigator.clipboard.readText()") == "ana/fish-in"

    # the same name again: refused in words, the form stays to change it
    files.get_by_role("button", name="New folder").click()
    files.get_by_label("Folder name").fill("fish-in")
    files.get_by_role("button", name="Create").click()
    expect(files.get_by_role("alert")).to_contain_text("reeflab already has a folder 'fish-in'")
    files.get_by_role("button", name="Cancel").click()

    # into the new folder: the path reads as a service's input, and uploads land there
    entries.get_by_role("button", name="fish-in", exact=True).click()
    expect(files.get_by_role("navigation", name="Folder")).to_have_text("ana / fish-in")
    expect(entries).to_contain_text("This folder is empty.")
    photo = tmp_path / "reef-01.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + b"1" * 900)
    files.get_by_label("Files to upload to fish-in").set_input_files(photo)
    expect(files.get_by_role("status").filter(has_text="Uploaded")).to_have_text("Uploaded reef-01.jpg to ana/fish-in.")
    expect(entries).to_contain_text("reef-01.jpg")
    assert bucket.get_object(Bucket=USER, Key="fish-in/reef-01.jpg")["Body"].read() == photo.read_bytes()
    files.get_by_role("button", name="Copy the path of reef-01.jpg").click()
    expect(files.get_by_role("status").filter(has_text="Copied")).to_have_text("Copied ana/fish-in/reef-01.jpg")
    lab_page.screenshot("platform-bucket")
