"""Deployments on one machine: real deepaas-run processes behind the authenticated route."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys

import psutil
import pytest
from PIL import Image
from reeflab.cli import main as reeflab_cli
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, tiny_profiles):
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(tiny_profiles)},
        "DeploymentService": {"root_dir": str(tmp_path / "deployments"), "try_minutes": 0.25, "poll_interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture(autouse=True)
def no_leftover_deployments(jp_serverapp, jp_asyncio_loop):
    """Deployments outlive their server by design: stop what a test left running."""
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].deployments.stop_all())


async def call(jp_fetch, method: str, *path: str, body=None, **kwargs):
    response = await jp_fetch("reeflab", "api", "deployments", *path, method=method, body=_body(method, body), **kwargs)
    return json.loads(response.body) if response.body else None


def _body(method: str, body) -> str | None:
    if body is not None:
        return json.dumps(body)
    return "" if method == "POST" else None


async def refused(jp_fetch, method: str, *path: str, body=None) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as err:
        await call(jp_fetch, method, *path, body=body)
    return err.value.code, json.loads(err.value.response.body)["message"]


async def wait_for(jp_fetch, deployment_id: str, states: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        deployment = await call(jp_fetch, "GET", deployment_id)
        if deployment["state"] in states:
            return deployment
        assert asyncio.get_running_loop().time() < deadline, f"still {deployment['state']}: {deployment}"
        await asyncio.sleep(0.5)


def multipart(name: str, filename: str, content: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = "reeflabboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 80, 140)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def test_deploy_predict_through_the_route_logs_and_delete(jp_fetch, jp_serverapp):
    created = await call(jp_fetch, "POST", body={"module": "yolo-detector", "title": "My detector"})
    assert created["state"] == "starting" and created["profile"] and created["hardware"]["cpu"] >= 1
    assert "runtime" not in created and created["path"] == f"reeflab/deployments/{created['id']}/"
    ready = await wait_for(jp_fetch, created["id"], ("ready", "failed"))
    assert ready["state"] == "ready", ready["reason"]

    body, content_type = multipart("files", "reef.jpg", jpeg(), "image/jpeg")
    predicted = await jp_fetch(
        "reeflab",
        "deployments",
        created["id"],
        "v2/models/yolo-detector/predict/",
        method="POST",
        body=body,
        headers={"Content-Type": content_type},
        params={"conf": "0.3"},
        request_timeout=120,
    )
    prediction = json.loads(predicted.body)["predictions"]
    assert prediction["file"] == "reef.jpg" and prediction["width"] == 64

    listed = await call(jp_fetch, "GET")
    assert [d["id"] for d in listed["deployments"]] == [created["id"]]
    logs = await call(jp_fetch, "GET", created["id"], "logs", params={"tail": "50"})
    assert any("predict" in line for line in logs["lines"])
    # the platform checks it every half second here: its log shows the caller's request, never those checks
    await asyncio.sleep(2)
    lines = (await call(jp_fetch, "GET", created["id"], "logs", params={"tail": "200"}))["lines"]
    assert any('"POST ' in line and "/predict/" in line for line in lines), lines
    assert not any('"GET ' in line and "/v2/models/ " in line for line in lines), lines

    followed: list[bytes] = []
    follow = asyncio.ensure_future(
        jp_fetch(
            "reeflab", "api", "deployments", created["id"], "logs",
            params={"follow": "1", "tail": "5"}, streaming_callback=followed.append, request_timeout=120,
        )
    )  # fmt: skip
    await asyncio.sleep(1)
    await jp_fetch(
        "reeflab", "deployments", created["id"], "v2/models/yolo-detector/predict/",
        method="POST", body=body, headers={"Content-Type": content_type}, request_timeout=120,
    )  # fmt: skip

    service = jp_serverapp.web_app.settings["reeflab"].deployments
    pid = service.get(ready["owner"], created["id"]).runtime["pid"]
    restarted = await call(jp_fetch, "POST", created["id"], "restart")
    assert restarted["state"] == "starting"
    assert (await wait_for(jp_fetch, created["id"], ("ready", "failed")))["state"] == "ready"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # old one gone
    pid = service.get(ready["owner"], created["id"]).runtime["pid"]
    assert psutil.pid_exists(pid)
    await call(jp_fetch, "DELETE", created["id"])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    code, _ = await refused(jp_fetch, "GET", created["id"])
    assert code == 404
    assert not (service.store.folder(created["id"])).exists()
    # the follower saw the log grow (the predict after it started) and ended with the deployment
    await asyncio.wait_for(follow, 30)
    streamed = b"".join(followed).decode()
    assert streamed.count("\n") > 5 and "predict" in streamed


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"module": "no-such-module"}, 404, "No module 'no-such-module'"),
        ({"module": "yolo-detector", "profile": "gpu-t4"}, 403, "reserved for members"),
        ({"module": "yolo-detector", "profile": "huge"}, 400, "Unknown hardware profile 'huge'"),
        ({"module": "yolo-detector", "hardware": {"cpu": 64, "memory_MB": 1000}}, 400, "beyond profile"),
        ({"module": "yolo-detector", "env": {"PATH": "/tmp"}}, 400, "env: PATH is set by ReefLab"),
        (
            {"module": "yolo-detector", "profile": "cpu-small", "hardware": {"cpu": 1, "memory_MB": 99999}},
            400,
            "beyond",
        ),
        ({"module": "yolo-detector", "replicas": 3}, 400, "replicas"),
        ({}, 400, "module"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(jp_fetch, body, status, says):
    code, message = await refused(jp_fetch, "POST", body=body)
    assert code == status and says in message
    assert (await call(jp_fetch, "GET"))["deployments"] == []


async def test_a_profile_below_the_recommendation_is_accepted_with_a_warning(jp_fetch):
    # resources.inference is a recommendation (as on AI4OS): less is allowed, and said
    created = await call(jp_fetch, "POST", body={"module": "yolo-detector", "profile": "tiny"})
    assert created["profile"] == "tiny" and created["hardware"]["memory_MB"] == 1000
    assert len(created["warnings"]) == 1 and "2 GB of memory (gets 1 GB)" in created["warnings"][0]
    await call(jp_fetch, "DELETE", created["id"])


async def test_try_deployments_end_by_themselves_and_are_limited(jp_fetch):
    first = await call(jp_fetch, "POST", body={"module": "image-classifier", "kind": "try"})
    assert first["expires"]
    await call(jp_fetch, "POST", body={"module": "image-classifier", "kind": "try"})
    code, message = await refused(jp_fetch, "POST", body={"module": "image-classifier", "kind": "try"})
    assert code == 403 and "tries at once" in message

    ended = await wait_for(jp_fetch, first["id"], ("stopped", "failed"), timeout=60)
    assert ended["state"] == "stopped" and "try period" in ended["reason"]


@pytest.fixture
def crashing_module(tmp_path):
    """A real installed module whose warm() fails, as one with missing weights does."""
    assert reeflab_cli(["module", "new", "crashy", "--dir", str(tmp_path)]) == 0
    api = tmp_path / "crashy" / "src" / "crashy" / "api.py"
    api.write_text(
        api.read_text().replace(
            '    """Load weights here, once per worker."""',
            '    raise RuntimeError("cannot open weights file /models/crashy.pt")',
        )
    )
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e"]
    subprocess.run([*pip, str(tmp_path / "crashy")], check=True, capture_output=True, timeout=300)
    try:
        yield "crashy"
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "crashy"], capture_output=True)


async def test_a_module_that_crashes_at_start_fails_with_its_error(jp_fetch, crashing_module):
    await jp_fetch("reeflab", "api", "catalog", "refresh", method="POST", body=b"")
    created = await call(jp_fetch, "POST", body={"module": crashing_module})
    failed = await wait_for(jp_fetch, created["id"], ("failed", "ready"), timeout=120)
    assert failed["state"] == "failed"
    assert "cannot open weights file /models/crashy.pt" in failed["reason"]
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "deployments", created["id"], "v2/models/")
    assert err.value.code == 409 and b"failed, not ready" in err.value.response.body


async def test_the_route_refuses_deployments_that_are_not_ready_or_not_yours(jp_fetch):
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "deployments", "0123abcd", "v2/models/")
    assert err.value.code == 404
