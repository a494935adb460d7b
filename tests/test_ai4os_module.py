"""An upstream-style AI4OS module runs unchanged: the DEEPaaS v2 contract as DEEPaaS itself defines it.

The fixture (tests/fixtures/ai4os_triplet) has only `get_predict_args` and `predict`, its metadata in
`ai4-metadata.yml` at its repository root, a GPU recommended for inference and three file arguments.
It is pip-installed in place (editable, as its Dockerfile would), so that sandboxed serverless workers,
which see no /tmp of ours, can import it too.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests
from reeflab.client import Connection, deployments
from reeflab.hub.config import REPO
from reeflab.oscar_engine.testing import EngineProcess
from test_serverless_engine import module_service

FIXTURE = Path(__file__).parent / "fixtures" / "ai4os_triplet"
MODULE = "reef-triplet"
FILES = {"before": b"coral before bleaching" * 10, "after": b"coral after" * 7, "mask": b"\x00\x01" * 33}


@pytest.fixture(scope="module")
def ai4os_module():
    """The fixture module installed as AI4OS images install theirs (`pip install -e .`), removed afterwards."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(FIXTURE)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    try:
        yield MODULE
    finally:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-y", "-q", "ai4os-reef-triplet"], capture_output=True
        )
        for leftover in (*FIXTURE.glob("*.egg-info"), FIXTURE / "build"):
            shutil.rmtree(leftover, ignore_errors=True)


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, ai4os_module):
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},
        "DeploymentService": {"root_dir": str(tmp_path / "deployments"), "poll_interval": 0.5},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture
def no_leftover_deployments(jp_serverapp, jp_asyncio_loop):
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].deployments.stop_all())


async def api(jp_fetch, *path: str, method: str = "GET", body: dict | None = None, **params) -> dict:
    payload = json.dumps(body) if body is not None else (b"" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", *path, method=method, body=payload, params=params)
    return json.loads(response.body)


def multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A form with one file part per field, as a browser or `curl -F` sends DEEPaaS several files."""
    boundary = "reeflabboundary"
    body = b""
    for field, (filename, content) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        body += (head + "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def expected(label: str = "transect") -> dict:
    return {
        "label": label,
        **{
            name: {"name": f"{name}.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()[:16]}
            for name, data in FILES.items()
        },
    }


async def test_found_deployed_on_cpu_with_a_warning_called_with_three_files_and_its_docs_load(
    jp_fetch, jp_base_url, jp_serverapp, http_server, tmp_path, no_leftover_deployments
):
    await jp_fetch("reeflab", "api", "catalog", "refresh", method="POST", body=b"")
    detail = await api(jp_fetch, "catalog", "modules", MODULE)
    assert detail["valid"] and detail["problems"] == [], detail["problems"]
    assert detail["metadata"]["title"] == "Reef triplet comparer"  # from ai4-metadata.yml: it has no get_metadata
    assert detail["metadata"]["resources"]["inference"]["gpu"] == 1
    cards = await api(jp_fetch, "catalog", "modules", q="reef triplet")
    card = next(item for item in cards["items"] if item["id"] == MODULE)
    form = await api(jp_fetch, "catalog", "modules", MODULE, "form")
    assert card["deployable"] is form["deployable"] is True
    assert not any(p["fits"] for p in form["profiles"]) and "recommends" in form["reason"]

    # only what is chosen is given: the rest is the module's recommendation, within the profile
    hardware = {"memory_MB": 1000, "gpu": 0}
    created = await api(jp_fetch, "deployments", method="POST", body={"module": MODULE, "hardware": hardware})
    assert created["hardware"] == {"cpu": 1, "memory_MB": 1000, "gpu": 0}
    assert len(created["warnings"]) == 1 and "1 GPU (gets 0)" in created["warnings"][0]
    deployment_id = created["id"]
    deadline = asyncio.get_running_loop().time() + 180
    while (found := await api(jp_fetch, "deployments", deployment_id))["state"] not in ("ready", "failed"):
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.5)
    assert found["state"] == "ready", found["reason"]
    assert found["warnings"] == created["warnings"]  # kept on the record, for the panel

    route = ("reeflab", "deployments", deployment_id)
    body, content_type = multipart({name: (f"{name}.bin", data) for name, data in FILES.items()})
    # DEEPaaS 2's URL, and DEEPaaS 3's (no trailing slash)
    for predict in (f"v2/models/{MODULE}/predict/", f"v2/models/{MODULE}/predict"):
        answer = await jp_fetch(
            *route, predict, method="POST", body=body, headers={"Content-Type": content_type}, params={"label": "T1"}
        )
        assert json.loads(answer.body)["predictions"] == expected("T1"), predict
    # the Python client, one file per argument
    folder = tmp_path / "triplet"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / f"{name}.bin").write_bytes(data)
    connection = Connection(f"http://127.0.0.1:{jp_serverapp.port}{jp_base_url}", jp_serverapp.identity_provider.token)
    deployment = await asyncio.get_running_loop().run_in_executor(None, deployments.get, deployment_id, connection)
    call = functools.partial(deployment.call, {name: folder / f"{name}.bin" for name in FILES}, label="T2")
    assert await asyncio.get_running_loop().run_in_executor(None, call) == expected("T2")
    models = json.loads((await jp_fetch(*route, "v2/models")).body)["models"]
    assert [m["name"] for m in models] == [MODULE]  # DEEPaaS's generic metadata: it has no get_metadata

    # the Swagger UI page, the assets and the document it names all load through the route
    page = (await jp_fetch(*route, "api")).body.decode()
    prefix = f"{jp_base_url}reeflab/deployments/{deployment_id}/"
    named = set(re.findall(r"""(?:src|href|url)\s*[:=]\s*["']([^"']+)["']""", page))
    assert f"{prefix}swagger.json" in named, named
    assets = [url for url in named if url.startswith(prefix + "static/")]
    assert assets, named
    for url in [*assets, f"{prefix}swagger.json"]:
        assert (await jp_fetch(url[len(jp_base_url) :])).code == 200, url
    spec = json.loads((await jp_fetch(*route, "swagger.json")).body)
    assert f"/{prefix[1:]}v2/models/{MODULE}/predict/" in spec["paths"]
    assert json.loads((await jp_fetch(*route, "openapi.json")).body) == spec  # DEEPaaS 3's name for it


def triplet_zip(names: dict[str, str]) -> bytes:
    """A zip of the three files, stored under the given names (argument -> name in the archive)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for argument in ("mask", "after", "before"):  # not in argument order: names decide
            archive.writestr(names[argument], FILES[argument])
    return buffer.getvalue()


def test_served_as_a_serverless_module_service_with_three_files(ai4os_module, tmp_path):
    with EngineProcess(tmp_path / "state", users=["alice"]) as engine:
        alice = engine.client("alice")
        assert alice.create_service(module_service("triplet", ai4os_module)).status_code == 201
        archive = tmp_path / "triplet.zip"
        archive.write_bytes(triplet_zip({name: f"{name}.bin" for name in FILES}))
        out = tmp_path / "result.json"
        assert alice.run_service("triplet", input=str(archive), output=str(out), timeout=180).status_code == 200
        assert json.loads(out.read_text()) == expected()

        # files not named after an argument fill the others in the archive's order (here x.bin, then y.bin)
        archive.write_bytes(triplet_zip({"mask": "mask.bin", "after": "x.bin", "before": "y.bin"}))
        assert alice.run_service("triplet", input=str(archive), output=str(out), timeout=180).status_code == 200
        assert {name: found["name"] for name, found in json.loads(out.read_text()).items() if name != "label"} == {
            "before": "x.bin",
            "after": "y.bin",
            "mask": "mask.bin",
        }

        # one file where three are needed: refused, saying how to send them
        (tmp_path / "one.bin").write_bytes(FILES["before"])
        with pytest.raises(requests.HTTPError) as refused:
            alice.run_service("triplet", input=str(tmp_path / "one.bin"), timeout=180)
        assert refused.value.response.status_code == 400
        assert "after" in refused.value.response.text and "zip archive" in refused.value.response.text
