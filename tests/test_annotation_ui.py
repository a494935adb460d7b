"""Label Studio's labelling pages through the hub: uma opens her project's page at
<hub>/user/uma/reeflab/annotation/ui/... with her own hub credentials (no Label Studio password), its static
files, task API and images load from there, and an annotation posted as the page posts it is stored; vic and
cross-site writes are refused. A real hub, uma's real server and her real Label Studio (once for this module)."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlparse

import pytest
import requests
from reeflab.client import Connection, annotation
from reeflab.modules.fish_detector.synth import generate_samples

SCENES = 2


@pytest.fixture(scope="module")
def hub_users():
    # names of their own: another module's hub retires an OS account of the same name when it creates its user
    return ("uma", "vic")


@pytest.fixture(scope="module")
def uma(servers) -> Connection:
    return Connection(*servers["uma"])


def upload(user: Connection, path: str, data: bytes | None) -> None:
    body = (
        {"type": "directory"}
        if data is None
        else {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    )
    user.session.put(user.url + "api/contents/" + path, json=body, timeout=30).raise_for_status()


@pytest.fixture(scope="module")
def project(uma, tmp_path_factory):
    """Two generated scenes in uma's folder 'scenes' and a detection project over them (her Label Studio starts)."""
    local = tmp_path_factory.mktemp("scenes")
    names = list(json.loads(generate_samples(local, n=SCENES, seed=3).read_text())["images"])
    upload(uma, "scenes", None)
    for name in names:
        upload(uma, f"scenes/{name}", (local / name).read_bytes())
    made = annotation.create("Reef pages", "scenes", labels=["fish", "coral"], connection=uma)
    made.scenes = {name: (local / name).read_bytes() for name in names}
    yield made
    made.delete()


@pytest.fixture(scope="module")
def ui(uma) -> str:
    """The labelling pages' route on uma's server, as the browser reaches it through the hub."""
    return uma.url + "reeflab/annotation/ui/"


def origin_of(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"


def test_the_labelling_page_and_its_files_load_through_the_hub(uma, ui, project, hub):
    assert project.page_url == ui + f"projects/{project.id}/data?labeling=1"  # what the panel opens
    page = uma.session.get(project.page_url, timeout=300)  # her Label Studio may still start
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"], page.text[:500]
    html = page.text
    prefix = urlparse(ui).path.rstrip("/")  # /user/uma/reeflab/annotation/ui
    # Label Studio's links are this route, at the browser's own origin: none leads to its 127.0.0.1 port
    assert f'hostname: "{origin_of(ui)}{prefix}"' in html
    assert "reeflab.invalid" not in html and "127.0.0.1:" not in html.replace(origin_of(ui), "")
    # the browser gets neither Label Studio's cookies nor its login
    assert "sessionid" not in page.headers.get("Set-Cookie", "")
    assert "csrftoken" not in page.headers.get("Set-Cookie", "")
    folder = hub.homes / "uma" / ".local" / "share" / "jupyter" / "reeflab" / "annotation"
    secrets = json.loads((folder / "credentials.json").read_text())
    assert secrets["password"] not in html and secrets["token"] not in html

    scripts = re.findall(r'<script src="([^"]+)"', html)
    styles = re.findall(r'<link href="([^"]+\.css[^"]*)"', html)
    assert any("/react-app/main.js" in s for s in scripts) and styles
    for url in scripts + styles:
        assert url.startswith(origin_of(ui) + prefix + "/"), url
        loaded = uma.session.get(url, timeout=60)
        assert loaded.status_code == 200 and len(loaded.content) > 100, (url, loaded.status_code)


def test_the_task_api_and_its_image_load_through_the_hub(uma, ui, project):
    tasks = uma.session.get(ui + "api/tasks", params={"project": project.id}, timeout=60)
    assert tasks.status_code == 200, tasks.text
    listed = tasks.json()["tasks"]
    assert len(listed) == SCENES
    task = uma.session.get(ui + f"api/tasks/{listed[0]['id']}", params={"project": project.id}, timeout=60).json()
    image = task["data"]["image"]
    # the page loads the image from this route (Label Studio would serve it at the site root)
    assert image.startswith(urlparse(ui).path + "data/local-files/?d="), image
    loaded = uma.session.get(origin_of(ui) + image, timeout=60)
    assert loaded.status_code == 200 and loaded.headers["Content-Type"].startswith("image/")
    assert loaded.content == project.scenes[task["data"]["file"].split("/")[-1]]


@pytest.fixture(scope="module")
def bucket_project(s3, uma, project):
    """The same scenes in uma's bucket on a real SeaweedFS, her connection 'survey' to it, a project over them."""
    from reeflab.client import storage
    from reeflab.storage.platform_s3 import PlatformS3, s3_client, user_bucket

    key = PlatformS3(s3.endpoint, s3.key).user_key("uma")
    bucket = user_bucket("uma")
    client = s3_client(s3.endpoint, key)
    for name, data in project.scenes.items():
        client.put_object(Bucket=bucket, Key=f"scenes/{name}", Body=data)
    connection = storage.connect(
        "survey",
        endpoint=s3.endpoint,
        bucket=bucket,
        access_key=key["access_key"],
        secret_key=key["secret_key"],
        connection=uma,
    )
    made = annotation.create("Reef pages S3", "survey:scenes", labels=["fish"], connection=uma)
    yield made
    made.delete()
    connection.remove()


def test_a_bucket_image_loads_through_the_hub(uma, ui, project, bucket_project):
    """A project over a storage connection: Label Studio hands out its own address for each object, which is
    this route at the browser's origin."""
    tasks = uma.session.get(ui + "api/tasks", params={"project": bucket_project.id}, timeout=60).json()["tasks"]
    task = uma.session.get(ui + f"api/tasks/{tasks[0]['id']}", timeout=60).json()
    image = task["data"]["image"]
    assert image.startswith(ui + f"tasks/{task['id']}/resolve/"), image
    loaded = uma.session.get(image, timeout=60)
    assert loaded.status_code == 200 and loaded.content == project.scenes[task["data"]["file"].split("/")[-1]]


def test_an_annotation_submitted_through_the_page_is_stored(uma, ui, project):
    task = uma.session.get(ui + "api/tasks", params={"project": project.id}, timeout=60).json()["tasks"][0]
    box = {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 640,
        "original_height": 480,
        "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 25.0, "rotation": 0, "rectanglelabels": ["coral"]},
    }
    # what the labelling page sends on Submit: same-origin, with the browser's Origin and no Label Studio cookie
    posted = uma.session.post(
        ui + f"api/tasks/{task['id']}/annotations?project={project.id}",
        json={"result": [box], "lead_time": 4.2, "project": str(project.id)},
        headers={"Origin": origin_of(ui)},
        timeout=60,
    )
    assert posted.status_code == 201, posted.text
    stored = uma.session.get(ui + f"api/tasks/{task['id']}/annotations", timeout=60).json()
    assert [a["result"][0]["value"]["rectanglelabels"] for a in stored] == [["coral"]]
    assert project.refresh().info["labelled"] == 1  # ReefLab's count, as Label Studio keeps it

    # a page of another site cannot write through her session
    forged = uma.session.post(
        ui + f"api/tasks/{task['id']}/annotations",
        json={"result": [box]},
        headers={"Origin": "http://elsewhere.example"},
        timeout=60,
    )
    assert forged.status_code == 403 and "cross-origin" in forged.json()["message"]
    assert len(uma.session.get(ui + f"api/tasks/{task['id']}/annotations", timeout=60).json()) == 1


def test_label_studios_log_out_is_the_servers(uma, ui, project):
    """Label Studio's own "Log out" leads to her server's logout (the hub's); the page still opens after it."""
    out = uma.session.get(ui + "user/logout/", allow_redirects=False, timeout=60)
    assert out.status_code == 302 and out.headers["Location"] == urlparse(uma.url).path + "logout"
    again = uma.session.get(project.page_url, allow_redirects=False, timeout=60)
    assert again.status_code == 200 and "react-app/main.js" in again.text


def test_only_the_owner_reaches_her_label_studio(servers, ui, project):
    # vic's token on uma's route: the hub refuses it
    vic = requests.get(
        ui + f"projects/{project.id}/data",
        headers={"Authorization": f"token {servers['vic'][1]}"},
        allow_redirects=False,
        timeout=60,
    )
    assert vic.status_code == 403
    api = requests.get(
        ui + "api/tasks",
        params={"project": project.id},
        headers={"Authorization": f"token {servers['vic'][1]}"},
        timeout=60,
    )
    assert api.status_code == 403 and "data/local-files" not in api.text
    # no credentials: sent to log in at the hub, not to the page
    anonymous = requests.get(ui + f"projects/{project.id}/data", allow_redirects=False, timeout=60)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/hub/")
