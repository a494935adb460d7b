"""Pipeline runs: shipped Elyra pipelines through the REST API and the real engine; failures, parallel nodes, cancel."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
from pathlib import Path

import nbformat
import psutil
import pytest
from reeflab.hub.config import REPO
from reeflab.oscar_engine.testing import EngineProcess
from tornado.httpclient import HTTPClientError

NOTEBOOKS = REPO / "notebooks"
SAMPLES = REPO / "server_extension" / "reeflab" / "modules" / "fish_detector" / "samples"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with EngineProcess(tmp_path_factory.mktemp("engine") / "state", users=["alice"]) as running:
        yield running


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, engine, monkeypatch):
    # what the hub gives a user server: the engine's URL and the user's token (runs inherit them)
    monkeypatch.setenv("REEFLAB_SERVERLESS_URL", engine.url)
    monkeypatch.setenv("REEFLAB_TOKEN", engine.tokens["alice"])
    monkeypatch.setenv("REEFLAB_URL", "http://127.0.0.1:9")  # module metadata from this environment
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},
        "PipelineService": {"root_dir": str(tmp_path / "pipeline-runs"), "poll_interval": 0.3},
        "CatalogService": {"cache_dir": str(tmp_path / "cache")},
    }


@pytest.fixture(autouse=True)
def no_leftover_runs(jp_serverapp, jp_asyncio_loop):
    yield
    jp_asyncio_loop.run_until_complete(jp_serverapp.web_app.settings["reeflab"].pipelines.stop_all())


async def call(jp_fetch, method: str, *path: str, body=None, **kwargs):
    body = json.dumps(body) if body is not None else ("" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", "pipelines", *path, method=method, body=body, **kwargs)
    return json.loads(response.body) if response.body else None


async def watch(jp_fetch, run_id: str, timeout: float = 240) -> tuple[dict, list[dict[str, str]]]:
    """Poll the run until it ends; also return every distinct set of node states seen on the way."""
    seen: list[dict[str, str]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = await call(jp_fetch, "GET", run_id)
        states = {n["id"]: n["state"] for n in run["nodes"]}
        if not seen or seen[-1] != states:
            seen.append(states)
        if run["state"] not in ("starting", "running"):
            return run, seen
        assert asyncio.get_running_loop().time() < deadline, f"run still {run['state']}: {run}"
        await asyncio.sleep(0.3)


def shipped_pipeline(root: Path) -> None:
    shutil.copytree(NOTEBOOKS / "pipelines", root / "pipelines")
    shutil.copy(NOTEBOOKS / "detect_classify.pipeline", root / "detect_classify.pipeline")


def node_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def small_pipeline(path: Path, nodes: dict[str, tuple[str, list[str]]]) -> None:
    """A generic Elyra pipeline file: node id -> (notebook file, parent ids)."""
    template = json.loads((NOTEBOOKS / "detect_classify.pipeline").read_text())
    model = template["pipelines"][0]["nodes"][0]
    built = []
    for node_id, (filename, parents) in nodes.items():
        node = json.loads(json.dumps(model))
        node["id"] = node_id
        node["app_data"]["label"] = node["app_data"]["ui_data"]["label"] = node_id
        node["app_data"]["component_parameters"].update(filename=filename, outputs=[], env_vars=[])
        links = [{"id": f"{p}-{node_id}", "node_id_ref": p, "port_id_ref": "outPort"} for p in parents]
        node["inputs"][0].pop("links", None)
        if links:
            node["inputs"][0]["links"] = links
        built.append(node)
    template["pipelines"][0]["nodes"] = built
    template["pipelines"][0]["app_data"]["properties"]["pipeline_defaults"]["env_vars"] = []
    path.write_text(json.dumps(template))


async def test_detect_crop_classify_runs_in_the_background_with_the_real_engine(jp_fetch, jp_root_dir):
    shipped_pipeline(jp_root_dir)
    photos = jp_root_dir / "photos"
    photos.mkdir()
    for name in ("fish_01.jpg", "fish_02.jpg", "fish_04.jpg"):
        shutil.copy(SAMPLES / name, photos / name)
    parameters = {"IMAGES_DIR": str(photos), "MIN_CONFIDENCE": 0.5, "REPORT_DIR": "survey-report"}
    run = await call(jp_fetch, "POST", body={"pipeline": "detect_classify.pipeline", "parameters": parameters})
    assert [n["id"] for n in run["nodes"]] == ["detect", "crop", "classify", "report"]
    assert all(n["state"] == "pending" for n in run["nodes"])

    run, seen = await watch(jp_fetch, run["id"])
    assert run["state"] == "completed", run["reason"]
    # each node was seen running, then finished, one after another as the links say
    for node in ("detect", "crop", "classify", "report"):
        assert any(states[node] == "running" for states in seen), (node, seen)
    assert all(n["state"] == "completed" and n["progress"]["cell"] == n["progress"]["cells"] for n in run["nodes"])

    work, report = (jp_root_dir / "pipelines" / folder / run["run_name"] for folder in ("work", "survey-report"))
    detections = json.loads((work / "detections.json").read_text())["images"]
    assert [d["file"] for d in detections] == ["fish_01.jpg", "fish_02.jpg", "fish_04.jpg"]
    truth = json.loads((SAMPLES / "ground_truth.json").read_text())["images"]
    with open(report / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == sum(len(d["detections"]) for d in detections)
    for name in ("fish_01.jpg", "fish_02.jpg", "fish_04.jpg"):  # every fish found once, labelled by the classifier
        assert sum(r["file"] == name for r in rows) == len(truth[name]["boxes"])
    assert all(float(r["confidence"]) >= 0.5 and r["class"] and (work / r["crop"]).is_file() for r in rows)
    # the fish classifier has trained weights: it names a species of the synthetic reef, with confidence
    species = {"orange", "yellow", "silver", "red", "blue", "purple", "pink", "green"}
    assert {r["class"] for r in rows} <= species and all(float(r["class_probability"]) > 0.5 for r in rows), rows
    assert sorted(p.name for p in (report / "annotated").iterdir()) == [
        "fish_01.png",
        "fish_02.png",
        "fish_04.png",
    ]
    # executed notebooks per node in the run's folder; the pipeline's own notebooks are left as shipped
    for node in run["nodes"]:
        executed = nbformat.read(jp_root_dir / node["output"], as_version=4)
        assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")
    assert not any(c.get("outputs") for c in nbformat.read(jp_root_dir / "pipelines" / "detect.ipynb", 4).cells)
    log = await call(jp_fetch, "GET", run["id"], "log", params={"node": "detect"})
    fish_04 = sum(r["file"] == "fish_04.jpg" for r in rows)
    assert f"fish_04.jpg: {fish_04} detections" in log["lines"], log["lines"]
    listed = await call(jp_fetch, "GET")
    assert [r["id"] for r in listed["runs"]] == [run["id"]]


async def test_two_runs_of_one_pipeline_keep_their_files_apart_and_keep_the_server_alive(
    jp_fetch, jp_root_dir, activity_hub, monkeypatch, jp_serverapp
):
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "pipeline-activity-token")
    jp_serverapp.web_app.settings["reeflab"].pipelines.activity.url = activity_hub[0]
    jp_serverapp.web_app.settings["reeflab"].pipelines.activity.interval = 0.5
    node_notebook(
        jp_root_dir / "write.ipynb",
        "import os, time\nfrom reeflab.pipelines import nodes",
        "work = nodes.run_folder(os.environ.get('WORK_DIR', 'work'))\nwork.mkdir(parents=True)\ntime.sleep(2)",
        "(work / 'result.txt').write_text(os.environ['WHO'])",
    )
    small_pipeline(jp_root_dir / "twice.pipeline", {"write": ("write.ipynb", [])})
    first, second = [
        await call(jp_fetch, "POST", body={"pipeline": "twice.pipeline", "parameters": {"WHO": who}})
        for who in ("first", "second")
    ]
    assert first["run_name"] != second["run_name"] and first["run_name"].startswith("twice-")
    for run in (first, second):
        ended, _seen = await watch(jp_fetch, run["id"])
        assert ended["state"] == "completed", ended["reason"]
    # the second run wrote beside the first, not over it
    assert (jp_root_dir / "work" / first["run_name"] / "result.txt").read_text() == "first"
    assert (jp_root_dir / "work" / second["run_name"] / "result.txt").read_text() == "second"
    # and while they ran, the hub heard that the server is busy (the idle culler leaves it alone)
    assert activity_hub[1] and activity_hub[1][0][0] == "token pipeline-activity-token"


async def test_a_broken_node_stops_the_run_naming_node_and_cell_after_parallel_nodes(jp_fetch, jp_root_dir):
    for name in ("left", "right"):
        node_notebook(jp_root_dir / f"{name}.ipynb", "import time", "time.sleep(2)", f"open('{name}.done', 'w')")
    node_notebook(jp_root_dir / "join.ipynb", "x = 1", "raise ValueError('no fish in this folder')", "y = 2")
    node_notebook(jp_root_dir / "after.ipynb", "open('after.done', 'w')")
    nodes = {
        "left": ("left.ipynb", []),
        "right": ("right.ipynb", []),
        "join": ("join.ipynb", ["left", "right"]),
        "after": ("after.ipynb", ["join"]),
    }
    small_pipeline(jp_root_dir / "broken.pipeline", nodes)
    run = await call(jp_fetch, "POST", body={"pipeline": "broken.pipeline", "max_parallel": 2})
    run, _seen = await watch(jp_fetch, run["id"])

    assert run["state"] == "failed"
    assert "'join'" in run["reason"] and "cell 1" in run["reason"] and "no fish in this folder" in run["reason"]
    by_id = {n["id"]: n for n in run["nodes"]}
    assert by_id["join"]["error"]["ename"] == "ValueError" and by_id["join"]["error"]["cell_index"] == 1
    assert by_id["after"]["state"] == "skipped" and not (jp_root_dir / "after.done").exists()
    left, right = by_id["left"], by_id["right"]  # independent nodes ran side by side
    assert left["started_at"] < right["finished_at"] and right["started_at"] < left["finished_at"]


async def test_cancel_stops_the_running_node_and_its_kernel(jp_fetch, jp_root_dir, jp_serverapp):
    node_notebook(jp_root_dir / "slow.ipynb", "import time", "time.sleep(120)")
    small_pipeline(jp_root_dir / "slow.pipeline", {"slow": ("slow.ipynb", [])})
    run = await call(jp_fetch, "POST", body={"pipeline": "slow.pipeline"})
    deadline = asyncio.get_running_loop().time() + 60
    while (await call(jp_fetch, "GET", run["id"]))["nodes"][0]["progress"]["cell"] < 2:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.3)
    service = jp_serverapp.web_app.settings["reeflab"].pipelines
    pid = service.get(run["owner"], run["id"]).runtime["pid"]
    kernels = json.loads((Path(service.root_dir) / run["id"] / "status.json").read_text())["kernel_pids"]
    cancelled = await call(jp_fetch, "POST", run["id"], "cancel")
    assert cancelled["state"] == "cancelled" and cancelled["nodes"][0]["state"] == "cancelled"
    assert kernels and not any(psutil.pid_exists(p) for p in [pid, *kernels] if _alive(p))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_bad_requests_say_what_to_fix(jp_fetch, jp_root_dir):
    (jp_root_dir / "notes.txt").write_text("x")
    (jp_root_dir / "empty.pipeline").write_text("{}")
    cases = [
        ({"pipeline": "missing.pipeline"}, "No pipeline 'missing.pipeline'"),
        ({"pipeline": "notes.txt"}, "not an Elyra pipeline"),
        ({"pipeline": "../x.pipeline"}, "without '..'"),
        ({"pipeline": "empty.pipeline"}, "is not an Elyra pipeline file"),
        ({"pipeline": "empty.pipeline", "parameters": {"BAD NAME": 1}}, "environment variable name"),
    ]
    for body, message in cases:
        with pytest.raises(HTTPClientError) as err:
            await call(jp_fetch, "POST", body=body)
        assert err.value.code == 400 and message in json.loads(err.value.response.body)["message"], body
    with pytest.raises(HTTPClientError) as err:
        await call(jp_fetch, "GET", "0123abcd")
    assert err.value.code == 404
