"""Red team, hostile input: what a user sends the catalogue service and drift monitoring to reach beyond his own.

The catalogue service (reeflab.publishing) is one process for all users: xia tries to publish under wes's name
and to reach its files with path tricks in module ids and report names (sent byte for byte: clients would
normalise `../`). Drift webhooks: only http(s) URLs are taken. What an accepted webhook allows is a POST made
by the owner's own server, which runs as the owner's OS account: it reaches what her kernel reaches already,
so it crosses to no other user (tests/security/test_isolation.py shows what that account cannot reach).
"""

from __future__ import annotations

import http.client
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError
from reeflab.checks.models import CheckReport, CheckResult
from reeflab.monitoring.models import DriftRequest
from reeflab.testing.catalogue import CatalogueProcess

PUBLISHER, INTRUDER = "wes", "xia"
MODULES = Path(__file__).parents[2] / "server_extension/reeflab/modules"


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    with CatalogueProcess(tmp_path_factory.mktemp("catalogue"), [PUBLISHER, INTRUDER]) as service:
        yield service


def raw(service: CatalogueProcess, method: str, path: str, user: str, body: bytes | None = None):
    """The request exactly as written (no client-side normalisation of `..` or %2F): status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        headers = {"Authorization": f"token {service.tokens[user]}", "Content-Type": "application/json"}
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    finally:
        connection.close()


def publication(module: str) -> dict:
    """A publication the service takes: the module's real ai4-metadata and a passing report of its check."""
    metadata = yaml.safe_load((MODULES / "image_classifier" / "ai4-metadata.yml").read_text())
    passed = CheckResult(name="tests", title="its tests pass", state="passed", reason="3 passed", seconds=1.0)
    check = CheckReport(
        module=module,
        version="",
        digest="a" * 64,
        source=f"/home/{PUBLISHER}/{module}",
        checked=datetime.now(UTC),
        passed=True,
        results=[passed],
    )
    return {"id": module, "metadata": metadata, "check": check.model_dump(mode="json")}


def test_no_one_publishes_under_another_users_name(catalogue):
    status, said = raw(catalogue, "POST", "/modules", PUBLISHER, json.dumps(publication("reef-counter")).encode())
    assert status == 201 and json.loads(said)["publisher"] == PUBLISHER, said
    # xia names wes as the publisher of hers, or of his module: the service takes no publisher from the body
    for module in ("xias-counter", "reef-counter"):
        forged = {**publication(module), "publisher": PUBLISHER}
        status, said = raw(catalogue, "POST", "/modules", INTRUDER, json.dumps(forged).encode())
        assert status == 400 and "publisher: Extra inputs are not permitted" in said, said
    index = httpx.get(catalogue.url + "index.json", headers={"Authorization": f"token {catalogue.tokens[PUBLISHER]}"})
    assert [(m["id"], m["publisher"]) for m in index.json()["modules"]] == [("reef-counter", PUBLISHER)]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/modules/../index.json"),
        ("DELETE", "/modules/..%2Findex.json"),
        ("DELETE", "/modules/%2e%2e%2f%2e%2e%2ftokens.json"),
        ("DELETE", "/modules/reef%2F..%2F..%2Ftokens.json"),
        ("GET", "/reports/../../tokens.json"),
        ("GET", "/reports/..%2F..%2Ftokens@x.html"),
        ("GET", "/reports/%2e%2e%2f%2e%2e%2ftokens@x.html"),
        ("GET", "/reports/a%2F..%2F..%2F..%2Fcatalogue@log.html"),
        ("GET", "/reports/..@x.html"),
        ("GET", "/reports/a@x.html%00.json"),
    ],
)
def test_path_tricks_in_module_ids_and_report_names_reach_no_file(catalogue, method, path):
    status, said = raw(catalogue, method, path, INTRUDER)
    assert status in (400, 404), (status, said[:300])
    for token in catalogue.tokens.values():  # tokens.json: the service's callers
        assert token not in said
    assert "Traceback" not in said and "ReefLab catalogue" not in said  # nor a file's content, nor its log


def test_a_report_name_of_the_right_shape_that_does_not_exist_is_a_clear_404(catalogue):
    """The route is alive (the refusals above are its checks, not a dead path): a plain missing name says so."""
    status, said = raw(catalogue, "GET", "/reports/fish-detector@abc123.html", INTRUDER)
    assert status == 404 and "The platform has no report 'fish-detector@abc123'" in said, said
    status, said = raw(catalogue, "DELETE", "/modules/nothing-here", INTRUDER)
    assert status == 404 and "'nothing-here' is not published" in said, said


@pytest.mark.parametrize(
    "webhook",
    [
        "file:///etc/shadow",
        "FILE:///etc/shadow",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "dict://127.0.0.1:11211/stats",
        "ftp://127.0.0.1/",
        "javascript:alert(1)",
        "//127.0.0.1:8081/hub/api",
        "http:///etc/passwd",
        "unix:///var/run/docker.sock",
    ],
)
def test_a_drift_webhook_must_be_an_http_url_with_a_host(webhook):
    with pytest.raises(ValidationError, match=r"give an http:// or https:// URL with a host"):
        DriftRequest(enabled=True, reference="reference", webhook=webhook)


def test_an_http_webhook_is_taken():
    assert DriftRequest(enabled=True, reference="reference", webhook="https://hooks.example/x").webhook
