"""The example notebooks and pipelines in a user's files: copied at the server's start, refreshed without
touching what the user changed, through the REST API of a real Jupyter server."""

from __future__ import annotations

import json
import shutil

import pytest
from reeflab.examples import shipped_examples
from reeflab.hub.config import REPO


@pytest.fixture
def platform(tmp_path):
    """The platform's copy of the examples (a test may publish a newer version of one)."""
    source = tmp_path / "shipped"
    shutil.copytree(REPO / "notebooks", source, ignore=shutil.ignore_patterns("work", "report"))
    return source


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, platform):
    return {
        **jp_server_config,
        "ExamplesService": {
            "source": str(platform),
            "copy_at_start": True,
            "manifest": str(tmp_path / "data" / "examples.json"),
        },
    }


async def refresh(jp_fetch) -> dict:
    response = await jp_fetch("reeflab", "api", "examples", method="POST", body="")
    return json.loads(response.body)


async def test_a_new_server_gets_the_examples_and_refresh_keeps_the_users_edits(
    jp_fetch, jp_serverapp, jp_root_dir, platform
):
    await jp_serverapp.extension_manager.start_extension("reeflab")  # as a real server's start does
    mine = jp_root_dir / "notebooks"
    assert (mine / "detect_classify.pipeline").read_bytes() == (
        REPO / "notebooks" / "detect_classify.pipeline"
    ).read_bytes()
    assert (mine / "pipelines" / "classify.ipynb").is_file() and (mine / "retrain.pipeline").is_file()
    listed = json.loads((await jp_fetch("reeflab", "api", "examples")).body)
    assert listed["folder"] == "notebooks" and "pipelines/detect.ipynb" in listed["files"]
    assert not [f for f in listed["files"] if f.startswith(("pipelines/work/", "pipelines/report/"))]

    # the user edits one example and deletes another; the platform then ships new versions of three
    (mine / "train_yolo.ipynb").write_text('{"cells": [], "mine": true}')
    (mine / "evaluate.ipynb").unlink()
    for name in ("train_yolo.ipynb", "batch_inference.ipynb", "pipelines/crop.ipynb"):
        (platform / name).write_text((platform / name).read_text().replace('"cells"', '"cells" ', 1))
    report = await refresh(jp_fetch)
    assert report["updated"] == ["batch_inference.ipynb", "pipelines/crop.ipynb"]  # untouched: the latest
    assert report["kept"] == ["train_yolo.ipynb"]  # edited: theirs, as they left it
    assert report["added"] == ["evaluate.ipynb"]  # deleted: back on an explicit refresh
    assert (mine / "train_yolo.ipynb").read_text() == '{"cells": [], "mine": true}'
    assert (mine / "pipelines" / "crop.ipynb").read_bytes() == (platform / "pipelines" / "crop.ipynb").read_bytes()
    # nothing more to do the second time
    assert await refresh(jp_fetch) == {
        "folder": "notebooks",
        "added": [],
        "updated": [],
        "kept": ["train_yolo.ipynb"],
        "deleted": [],
    }


def test_a_server_start_does_not_bring_back_what_the_user_deleted(tmp_path, platform):
    from reeflab.examples import ExamplesService

    service = ExamplesService(
        source=str(platform), manifest=str(tmp_path / "m.json"), notebook_root=str(tmp_path / "home")
    )
    assert "detect_classify.pipeline" in service.sync()["added"]
    (tmp_path / "home" / "notebooks" / "gone.txt").write_text("a file of the user's own is left alone")
    (tmp_path / "home" / "notebooks" / "federated_client.ipynb").unlink()
    again = service.sync()  # what a server start does
    assert again["deleted"] == ["federated_client.ipynb"] and again["added"] == []
    assert (tmp_path / "home" / "notebooks" / "gone.txt").is_file()


def test_the_examples_come_from_the_repository_in_a_development_install():
    assert shipped_examples() == REPO / "notebooks"
