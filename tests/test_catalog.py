"""The marketplace REST API through a real jupyter-server, with a remote index on a real HTTP server."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import pytest
import yaml
from tornado.httpclient import HTTPClientError

PROFILES = """
image: example.org/singleuser:1
profiles:
  - {slug: small, display_name: Small, cpu: 2, memory: 4G, default: true}
  - {slug: tiny, display_name: Tiny, cpu: 1, memory: 1G}
  - {slug: gpu, display_name: GPU, cpu: 4, memory: 16G, gpu: {count: 1, model: T4}, groups: [vo.gpu]}
"""


def remote_module(module_id: str, **overrides) -> dict:
    metadata = {
        "metadata_version": "2.3.0",
        "title": f"Remote {module_id}",
        "summary": "Counts plankton in flow cytometry images",
        "description": "A **remote** module.",
        "links": {"source_code": "https://example.org/code"},
        "libraries": ["TensorFlow"],
        "tasks": ["Classification"],
        "categories": ["AI4 inference"],
        "tags": ["plankton"],
        "data-type": ["Image"],
        "resources": {"inference": {"cpu": 2, "gpu": 1, "memory_MB": 8000}},
    }
    metadata.update(overrides)
    return {"id": module_id, "metadata": metadata}


@pytest.fixture
def index_server(tmp_path):
    """A real HTTP server serving tmp_path/index.yaml, as a remote catalogue would."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.yaml").write_text(
        yaml.safe_dump(
            {"modules": [remote_module("plankton-counter"), remote_module("broken", libraries=["Torch"], tags="x")]}
        )
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_port}/index.yaml", server
    server.shutdown()
    server.server_close()


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, index_server):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(PROFILES)
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(profiles)},
        "CatalogService": {"remote_indexes": [index_server[1]], "cache_dir": str(tmp_path / "cache")},
    }


def query(params: dict) -> list[tuple[str, str]] | None:
    """Query pairs, a list value giving a repeated parameter (?tasks=a&tasks=b)."""
    pairs = [(k, str(v)) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    return pairs or None


async def get(jp_fetch, *path, **params):
    response = await jp_fetch("reeflab", "api", "catalog", *path, params=query(params))
    assert response.code == 200
    return json.loads(response.body)


async def error(jp_fetch, *path, **params):
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("reeflab", "api", "catalog", *path, params=query(params))
    return err.value.code, json.loads(err.value.response.body)["message"]


async def test_lists_builtin_and_remote_modules_with_facets(jp_fetch):
    data = await get(jp_fetch, "modules", per_page=100)
    ids = {item["id"]: item for item in data["items"]}
    assert {"yolo-detector", "image-classifier", "plankton-counter", "broken"} <= set(ids)
    assert ids["yolo-detector"]["source"] == "builtin" and ids["yolo-detector"]["deployable"]
    assert ids["plankton-counter"]["source"] == "remote" and not ids["plankton-counter"]["deployable"]
    assert ids["broken"]["valid"] is False
    tasks = {f["value"]: f["count"] for f in data["facets"]["tasks"]}
    assert tasks["Classification"] >= 2  # the built-in classifier and the remote plankton counter


async def test_modules_without_trained_weights_say_so_and_how_to_train_them(jp_fetch):
    """The generic YOLO modules are networks built from a yaml: cards and details say they are not trained,
    and the detector names what the retrain pipeline needs; the fish detector ships trained weights."""
    cards = {item["id"]: item for item in (await get(jp_fetch, "modules", per_page=100))["items"]}
    assert cards["yolo-detector"]["trained"] is cards["image-classifier"]["trained"] is False
    assert cards["fish-detector"]["trained"] is cards["plankton-counter"]["trained"] is True
    detector = await get(jp_fetch, "modules", "yolo-detector")
    assert detector["trained"] is False
    assert detector["retrain"] == {"BASE_MODULE": "yolo-detector", "BASE_WEIGHTS": "yolov8n.yaml"}
    assert (await get(jp_fetch, "modules", "image-classifier"))["retrain"] is None
    assert (await get(jp_fetch, "modules", "fish-detector"))["retrain"] is None


async def test_free_text_and_facet_filters(jp_fetch):
    found = await get(jp_fetch, "modules", q="plank")
    assert [i["id"] for i in found["items"]][0] == "plankton-counter"
    filtered = await get(jp_fetch, "modules", libraries=["PyTorch"], tasks=["Classification"])
    assert sorted(i["id"] for i in filtered["items"]) == ["fish-classifier", "image-classifier"]


@pytest.mark.parametrize(
    "params, says",
    [
        ({"page": "0"}, "page"),
        ({"per_page": "lots"}, "'per_page' must be a whole number"),
        ({"per_page": "1000"}, "per_page"),
        ({"sort": "stars"}, "sort"),
        ({"task": "Classification"}, "Unknown search parameter task"),
    ],
)
async def test_bad_queries_are_400_with_a_message(jp_fetch, params, says):
    code, message = await error(jp_fetch, "modules", **params)
    assert code == 400 and says in message


async def test_module_detail_has_full_metadata_and_problems(jp_fetch):
    detail = await get(jp_fetch, "modules", "yolo-detector")
    assert detail["metadata"]["description"].startswith("A generic object detector")
    assert detail["metadata"]["resources"]["inference"]["cpu"] == 1
    assert detail["valid"] and detail["entry_point"] == "yolo-detector"

    broken = await get(jp_fetch, "modules", "broken")
    fields = {p["field"] for p in broken["problems"]}
    assert {"libraries.0", "tags"} <= fields


async def test_unknown_module_is_404(jp_fetch):
    code, message = await error(jp_fetch, "modules", "no-such-module")
    assert code == 404 and "no-such-module" in message


async def test_deployment_form_prefills_and_clips_to_the_users_profiles(jp_fetch):
    form = await get(jp_fetch, "modules", "yolo-detector", "form")
    assert form["deployable"] and form["default"] == "small" and form["reason"] is None
    assert [p["slug"] for p in form["profiles"]] == ["small", "tiny"]  # gpu is reserved for vo.gpu
    small = form["profiles"][0]
    assert small["fits"] and small["prefill"] == {"cpu": 1, "memory_MB": 2000, "gpu": 0}
    tiny = form["profiles"][1]
    assert not tiny["fits"] and "2 GB memory" in tiny["reason"]


async def test_form_says_why_a_module_needs_more_than_the_user_may_get(jp_fetch, jp_serverapp):
    form = await get(jp_fetch, "modules", "plankton-counter", "form")
    assert form["default"] == "small"  # a recommendation, not a minimum: the default profile, with a warning
    assert form["profiles"][0]["reason"].startswith("below its recommendation of 8 GB memory (has 4 GB)")
    assert "1 GPU" in form["reason"] and "gpu" in form["reason"] and "reserved" in form["reason"]

    jp_serverapp.web_app.settings["reeflab"].identity.standalone_groups = ["vo.gpu"]
    member = await get(jp_fetch, "modules", "plankton-counter", "form")
    assert member["default"] == "gpu" and member["reason"] is None
    assert member["profiles"][-1]["prefill"] == {"cpu": 2, "memory_MB": 8000, "gpu": 1}


async def test_refresh_refetches_the_remote_index_and_keeps_the_cache_if_it_is_down(jp_fetch, index_server):
    root, _, server = index_server
    await get(jp_fetch, "modules")  # first use fetches and caches
    (root / "index.yaml").write_text(yaml.safe_dump({"modules": [remote_module("new-module")]}))
    # without refresh the cached index is used
    assert "new-module" not in {i["id"] for i in (await get(jp_fetch, "modules", per_page=100))["items"]}

    refreshed = json.loads((await jp_fetch("reeflab", "api", "catalog", "refresh", method="POST", body=b"")).body)
    assert refreshed["errors"] == []
    ids = {i["id"] for i in (await get(jp_fetch, "modules", per_page=100))["items"]}
    assert "new-module" in ids and "plankton-counter" not in ids

    server.shutdown()
    server.server_close()
    down = json.loads((await jp_fetch("reeflab", "api", "catalog", "refresh", method="POST", body=b"")).body)
    assert down["errors"] and "index.yaml" in down["errors"][0]
    assert "new-module" in {i["id"] for i in (await get(jp_fetch, "modules", per_page=100))["items"]}
