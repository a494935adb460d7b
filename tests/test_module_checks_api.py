"""Module checks through the REST API: a check is a run of the user's (the real check runner in a detached process),
its report is a page too, and the marketplace shows each module's badge: from the user's own checks, else from the
reports the platform keeps for everyone; another user's registered version deploys only once it passed."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from reeflab.catalog.sources import RemoteIndex
from reeflab.checks.catalogue import CatalogueClient
from reeflab.checks.models import CheckReport, CheckResult
from reeflab.checks.service import tree_digest
from reeflab.checks.shared import SharedReports
from reeflab.client import checks
from reeflab.errors import BadRequest, Forbidden
from reeflab.hub.config import REPO
from reeflab.modules.fish_detector import model as fish_model
from reeflab.testing.catalogue import CatalogueProcess
from tornado.httpclient import HTTPClientError

MODULE = "fish-classifier"


@pytest.fixture
def remote_index(tmp_path):
    """A catalogue index listing modules that are not installed here, one published with a failed check."""
    index = tmp_path / "index.json"
    metadata = {"title": "Coral counter", "summary": "Counts corals", "description": "Counts corals."}
    survey = report("reef-survey", "/elsewhere/reef-survey", "3" * 64, failed="no tests found")
    modules = [
        {"id": "coral-counter", "metadata": metadata},
        {
            "id": "reef-survey",
            "metadata": {**metadata, "title": "Reef survey"},
            "check": survey.model_dump(mode="json"),
        },
    ]
    index.write_text(json.dumps({"modules": modules}))
    return index.as_uri()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """The platform's catalogue service, with tokens for ana (whose server the tests drive) and bob."""
    with CatalogueProcess(tmp_path_factory.mktemp("catalogue"), ["ana", "bob"]) as service:
        yield service


@pytest.fixture
def jp_server_config(jp_server_config, tmp_path, remote_index, catalogue):
    return {
        **jp_server_config,
        "ReefLabApp": {"profiles_file": str(REPO / "hub_config" / "profiles.yaml")},
        "ModuleCheckService": {
            "root_dir": str(tmp_path / "checks"),
            "poll_interval": 0.3,
            "catalogue_url": catalogue.url,
            "catalogue_token": catalogue.tokens["ana"],
        },
        "DeploymentService": {"root_dir": str(tmp_path / "deployments")},
        "CatalogService": {
            "cache_dir": str(tmp_path / "cache"),
            "registry_dir": str(tmp_path / "models"),
            "remote_indexes": [remote_index],
        },
        "TrackingService": {"tracking_uri": ""},
    }


@pytest.fixture
def services(jp_serverapp, jp_asyncio_loop):
    """The server's services; checks a test left running are stopped after it."""
    found = jp_serverapp.web_app.settings["reeflab"]
    yield found
    jp_asyncio_loop.run_until_complete(found.checks.stop_all())


async def api(jp_fetch, method: str, *path: str, body=None, **kwargs):
    data = json.dumps(body) if body is not None else ("" if method == "POST" else None)
    response = await jp_fetch("reeflab", "api", *path, method=method, body=data, **kwargs)
    return json.loads(response.body) if response.body else None


async def refused(jp_fetch, method: str, *path: str, body=None, **kwargs) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as err:
        await api(jp_fetch, method, *path, body=body, **kwargs)
    return err.value.code, json.loads(err.value.response.body)["message"]


async def ended(jp_fetch, check_id: str, timeout: float = 600) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = await api(jp_fetch, "GET", "checks", check_id)
        if run["state"] not in ("starting", "running"):
            return run
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {run}"
        await asyncio.sleep(0.5)


async def badge(jp_fetch, module: str) -> dict:
    """The module's badge on its search card, which its detail page shows too."""
    found = await api(jp_fetch, "GET", "catalog", "modules", params={"q": module, "per_page": 100})
    card = next(item for item in found["items"] if item["id"] == module)
    detail = await api(jp_fetch, "GET", "catalog", "modules", module)
    assert detail["check"] == card["check"]
    return card["check"]


def report(module: str, source: str, digest: str, failed: str | None = None, version: str = "") -> CheckReport:
    results = [
        CheckResult(name="metadata", title="ai4-metadata is valid", state="passed", reason="valid", seconds=0.1),
        CheckResult(
            name="tests",
            title="its tests pass",
            state="failed" if failed else "passed",
            reason=failed or "3 passed",
            seconds=2.0,
        ),
    ]
    return CheckReport(
        module=module,
        version=version,
        digest=digest,
        source=source,
        checked=datetime.now(UTC),
        passed=not failed,
        results=results,
    )


async def test_a_check_of_a_built_in_module_passes_shows_on_its_card_and_publishes(
    jp_fetch, services, connection, catalogue, tmp_path
):
    assert (await badge(jp_fetch, MODULE)) == {"state": "unchecked", "checked": None, "report": None, "failed": []}

    run = await api(jp_fetch, "POST", "checks", body={"module": MODULE})
    assert run["module"] == MODULE and run["state"] in ("starting", "running") and run["report"] is None
    run = await ended(jp_fetch, run["id"])
    assert run["state"] == "completed", run["reason"]
    checked = run["report"]
    failed = {r["name"]: r["reason"] for r in checked["results"] if r["state"] == "failed"}
    assert checked["passed"] and not failed, failed
    assert checked["module"] == MODULE and run["source"] == checked["source"]
    assert run["badge"]["state"] == "passed"

    shown = await badge(jp_fetch, MODULE)
    assert shown["state"] == "passed" and shown["report"] == run["id"] and shown["checked"] == run["badge"]["checked"]
    assert [c["id"] for c in (await api(jp_fetch, "GET", "checks"))["checks"]] == [run["id"]]

    page = await jp_fetch("reeflab", "api", "checks", run["id"], "report.html")
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = page.body.decode()
    assert html.lstrip().lower().startswith(("<!doctype html", "<html"))
    for result in checked["results"]:
        assert result["title"] in html or result["name"] in html, result["name"]

    # the same from Python
    from_python = await asyncio.to_thread(checks.Check.fetch, run["id"], connection)
    assert from_python.passed and from_python.failed == {} and repr(from_python).endswith(f"{MODULE} passed>")
    assert (await asyncio.to_thread(from_python.page)) == html

    log = await api(jp_fetch, "GET", "checks", run["id"], "log")
    assert any("metadata" in line for line in log["lines"])

    # the check is its owner's: another user's request finds none, an anonymous one is refused
    with pytest.raises(Exception, match="No check"):
        services.checks.get("someone-else", run["id"])
    code, _ = await refused(jp_fetch, "GET", "checks", run["id"], headers={"Authorization": ""})
    assert code in (401, 403)

    # published with its report to the platform's catalogue, as ana (the service knows her by her token)
    item = await api(jp_fetch, "POST", "catalog", "published", body={"module": MODULE})
    assert item["id"] == MODULE and item["check"] == checked and item["metadata"]["title"]
    assert item["publisher"] == "ana"
    assert [m["id"] for m in (await api(jp_fetch, "GET", "catalog", "published"))["modules"]] == [MODULE]
    # bob's marketplace reads the index with his own token and shows the badge
    bob = CatalogueClient(catalogue.url, catalogue.tokens["bob"])
    (remote,) = RemoteIndex(bob.index_url, tmp_path / "bobs-cache", headers=bob.headers).entries()
    assert (remote.id, remote.source) == (MODULE, "remote")
    assert services.checks.badge(remote, "bob") == {**run["badge"], "report": f"{MODULE}@published"}
    # he can neither take it out nor publish over it; nobody without a token reads the index
    with pytest.raises(Forbidden, match="published by another user"):
        await asyncio.to_thread(bob.unpublish, MODULE)
    report_of_his = CheckReport.model_validate(checked)
    with pytest.raises(Forbidden, match="published by another user"):
        await asyncio.to_thread(bob.publish, MODULE, item["metadata"], report_of_his)
    assert httpx.get(bob.index_url).status_code == 401
    assert httpx.get(bob.index_url, headers={"Authorization": "token forged"}).status_code == 401
    # the service takes only a passing report of the module published, and valid metadata
    with pytest.raises(BadRequest, match="a report of its own check that passed"):
        await asyncio.to_thread(bob.publish, "bobs-module", item["metadata"], report_of_his)
    failing = report("bobs-module", "/home/bob/bobs-module", "4" * 64, failed="2 tests failed")
    with pytest.raises(BadRequest, match="a report of its own check that passed"):
        await asyncio.to_thread(bob.publish, "bobs-module", item["metadata"], failing)
    passing = report("bobs-module", "/home/bob/bobs-module", "4" * 64)
    with pytest.raises(BadRequest, match="metadata of 'bobs-module' is not valid"):
        await asyncio.to_thread(bob.publish, "bobs-module", {"title": "no version"}, passing)

    await api(jp_fetch, "DELETE", "catalog", "published", MODULE)
    assert (await api(jp_fetch, "GET", "catalog", "published"))["modules"] == []
    assert RemoteIndex(bob.index_url, tmp_path / "bobs-cache", headers=bob.headers).entries(refresh=True) == []
    code, message = await refused(jp_fetch, "DELETE", "catalog", "published", MODULE)
    assert code == 404 and "'fish-classifier' is not published" in message

    await api(jp_fetch, "DELETE", "checks", run["id"])
    assert (await badge(jp_fetch, MODULE))["state"] == "unchecked"
    code, message = await refused(jp_fetch, "POST", "catalog", "published", body={"module": MODULE})
    assert code == 409 and "has not been checked as it is now" in message
    code, message = await refused(jp_fetch, "GET", "checks", run["id"], "report.html")
    assert code == 404 and "/reeflab/api/checks" in message


async def test_modules_that_cannot_be_checked_are_refused_with_the_reason(jp_fetch, services):
    code, message = await refused(jp_fetch, "POST", "checks", body={"module": "no-such-module"})
    assert code == 400 and "No module 'no-such-module' in the marketplace" in message
    code, message = await refused(jp_fetch, "POST", "checks", body={"module": "coral-counter"})
    assert code == 400 and "not installed on this server" in message and "pip install" in message
    code, message = await refused(jp_fetch, "POST", "checks", body={})
    assert code == 400 and message.startswith("Invalid check request: module:")
    code, message = await refused(jp_fetch, "POST", "checks", body={"module": MODULE, "script": "rm -rf /"})
    assert code == 400 and "script" in message
    assert (await api(jp_fetch, "GET", "checks"))["checks"] == []
    code, message = await refused(jp_fetch, "GET", "checks", "0123abcd")
    assert code == 404 and "list yours at /reeflab/api/checks" in message


async def test_shared_reports_give_the_badge_while_they_match_the_module(jp_fetch, services):
    shared = services.checks.shared
    folder = REPO / "server_extension" / "reeflab" / "modules" / MODULE.replace("-", "_")

    # a report of the module as it was before (another digest) says nothing about it now
    shared.save(f"{MODULE}@old", report(MODULE, str(folder), "0" * 64, failed="2 tests failed"))
    assert (await badge(jp_fetch, MODULE))["state"] == "unchecked"

    shared.save(f"{MODULE}@now", report(MODULE, str(folder), tree_digest(folder), failed="1 test failed: test_api"))
    shown = await badge(jp_fetch, MODULE)
    assert shown["state"] == "failed" and shown["failed"] == ["tests"] and shown["report"] == f"{MODULE}@now"

    page = (await jp_fetch("reeflab", "api", "checks", f"{MODULE}@now", "report.html")).body.decode()
    assert "its tests pass" in page and "1 test failed: test_api" in page

    # a module of a remote index is shown with the report the platform keeps, else the one published with it
    shared.save("coral-counter@1", report("coral-counter", "https://example.org/coral-counter", "1" * 64))
    assert (await badge(jp_fetch, "coral-counter"))["state"] == "passed"
    shown = await badge(jp_fetch, "reef-survey")
    assert shown["state"] == "failed" and shown["report"] == "reef-survey@published"
    page = (await jp_fetch("reeflab", "api", "checks", "reef-survey@published", "report.html")).body.decode()
    assert "no tests found" in page
    code, message = await refused(jp_fetch, "GET", "checks", "coral-counter@published", "report.html")
    assert code == 404 and "No check" in message


def register_by_hand(registry_dir, name: str, owner: str, version: str = "1.0.0") -> None:
    """A registered model of another user's (as a shared registry would list it): the fish detector's weights."""
    folder = registry_dir / name / version
    folder.mkdir(parents=True)
    shutil.copy(fish_model.model_path(), folder / "weights.pt")
    metadata = yaml.safe_load((REPO / "server_extension/reeflab/modules/yolo_detector/ai4-metadata.yml").read_text())
    (folder / "ai4-metadata.yml").write_text(yaml.safe_dump(metadata))
    record = {
        "name": name,
        "owner": owner,
        "base_module": "yolo-detector",
        "entry_point": "yolo-detector",
        "task": "detect",
        "versions": [
            {"version": version, "created": "2026-01-01T00:00:00Z", "sha256": "0" * 64, "size": 1, "source": "a file"}
        ],
    }
    (registry_dir / name / "model.json").write_text(json.dumps(record))


async def test_another_users_registered_version_deploys_only_once_it_passed_its_checks(jp_fetch, services, tmp_path):
    register_by_hand(tmp_path / "models", "reef-fish", owner="alice")
    services.catalog.reload()
    body = {"module": "reef-fish", "kind": "try"}
    code, message = await refused(jp_fetch, "POST", "deployments", body=body)
    assert code == 400 and "version 1.0.0 has not been checked yet" in message

    source = str(REPO / "server_extension" / "reeflab" / "modules" / "yolo_detector")
    failing = report("reef-fish", source, "2" * 64, failed="predict raised ValueError: bad weights", version="1.0.0")
    services.checks.shared.save("reef-fish@1.0.0", failing)
    code, message = await refused(jp_fetch, "POST", "deployments", body=body)
    assert code == 400 and "failed the platform's checks" in message
    assert "tests (its tests pass): predict raised ValueError: bad weights" in message
    assert (await badge(jp_fetch, "reef-fish"))["state"] == "failed"

    services.checks.shared.save("reef-fish@1.0.0", report("reef-fish", source, "2" * 64, version="1.0.0"))
    entry = services.catalog.get("reef-fish")
    assert services.checks.refusal(entry, "bob") is None
    assert (await badge(jp_fetch, "reef-fish"))["state"] == "passed"
    # the owner's own is theirs to deploy, checked or not
    services.checks.shared.save("reef-fish@1.0.0", failing)
    assert services.checks.refusal(entry, "alice") is None


async def test_a_registered_version_is_checked_with_its_weights_and_its_report_kept_for_everyone(
    jp_fetch, services, jp_root_dir
):
    shutil.copy(fish_model.model_path(), jp_root_dir / "fish.pt")
    body = {"name": "reef-fish", "version": "1.0.0", "base_module": "yolo-detector", "weights": "fish.pt"}
    await api(jp_fetch, "POST", "training", "models", body=body, request_timeout=120)
    (run,) = (await api(jp_fetch, "GET", "checks"))["checks"]
    assert run["module"] == "reef-fish" and run["version"] == "1.0.0"

    run = await ended(jp_fetch, run["id"])
    assert run["state"] == "completed", run["reason"]
    assert (run["report"]["module"], run["report"]["version"]) == ("reef-fish", "1.0.0")
    kept = services.checks.shared
    assert kept.get("reef-fish@1.0.0") == CheckReport.model_validate(run["report"])
    page = (await jp_fetch("reeflab", "api", "checks", run["id"], "report.html")).body
    assert kept.page("reef-fish@1.0.0").read_bytes() == page
    assert (await jp_fetch("reeflab", "api", "checks", "reef-fish@1.0.0", "report.html")).body == page
    shown = await badge(jp_fetch, "reef-fish")
    assert shown["state"] == run["badge"]["state"] and shown["report"] == run["id"]  # the owner's own check first


async def test_publishing_needs_the_catalogue_service(jp_fetch, services, monkeypatch):
    monkeypatch.setattr(services.checks, "catalogue", None)
    code, message = await refused(jp_fetch, "POST", "catalog", "published", body={"module": MODULE})
    assert code == 400 and "Publishing is off on this server" in message

    folder = REPO / "server_extension" / "reeflab" / "modules" / MODULE.replace("-", "_")
    services.checks.shared.save(f"{MODULE}@now", report(MODULE, str(folder), tree_digest(folder)))
    monkeypatch.setattr(services.checks, "catalogue", CatalogueClient("http://127.0.0.1:9/", "token", timeout=2))
    code, message = await refused(jp_fetch, "POST", "catalog", "published", body={"module": MODULE})
    assert code == 500 and "catalogue service does not answer" in message


async def test_installed_modules_show_the_platforms_report(jp_fetch, services, catalogue):
    """The catalogue service checks the installed modules itself (tests/test_catalogue_service.py); every user's
    marketplace shows its report as their badge until they check the module themselves."""
    folder = REPO / "server_extension" / "reeflab" / "modules" / "fish_detector"
    kept = SharedReports(catalogue.state / "service" / "reports")  # where the service keeps them
    checked = report("fish-detector", str(folder), tree_digest(folder))
    kept.save("fish-detector@platform", checked, b"<p>by the platform")
    services.checks.catalogue.max_age = 0
    shown = await badge(jp_fetch, "fish-detector")
    assert shown["state"] == "passed" and shown["report"] == "fish-detector@platform"
    page = await jp_fetch("reeflab", "api", "checks", "fish-detector@platform", "report.html")
    assert page.body == b"<p>by the platform"
    # once the module changed (another digest), the report no longer speaks for it
    kept.save("fish-detector@platform", report("fish-detector", str(folder), "5" * 64))
    assert (await badge(jp_fetch, "fish-detector"))["state"] == "unchecked"
    code, message = await refused(jp_fetch, "GET", "checks", "fish-classifier@platform", "report.html")
    assert code == 404


async def test_a_model_cannot_be_registered_where_check_reports_are_kept(jp_fetch, services):
    body = {"name": "checks", "version": "1.0.0", "weights": "fish.pt"}
    code, message = await refused(jp_fetch, "POST", "training", "models", body=body)
    assert code == 400 and "where the platform keeps check reports" in message


async def test_one_command_checks_a_module_on_the_platform_and_publishes_it(
    services, connection, catalogue, monkeypatch, capsys
):
    from reeflab import cli
    from reeflab.client import connection as client_connection

    monkeypatch.setattr(client_connection, "_default", connection)
    module = "image-classifier"  # never checked by this user: the command checks it first
    code = await asyncio.to_thread(cli.main, ["module", "publish", module])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"Published {module} to the platform's catalogue" in out.out
    (run,) = [c for c in await asyncio.to_thread(checks.list_checks, connection) if c.info["module"] == module]
    assert run.passed
    bob = CatalogueClient(catalogue.url, catalogue.tokens["bob"])
    assert [(m["id"], m["publisher"]) for m in bob.published()] == [(module, "ana")]

    assert await asyncio.to_thread(cli.main, ["module", "unpublish", module]) == 0
    assert bob.published() == []
    assert await asyncio.to_thread(cli.main, ["module", "unpublish", module]) == 2
    assert f"'{module}' is not published" in capsys.readouterr().err
