"""The catalogue service checks the modules installed with the platform itself, once, and again only when their
files change; users read its reports (their marketplace's badges) with their token, never write them."""

from __future__ import annotations

import httpx
from reeflab.catalog.sources import installed_entries
from reeflab.checks.catalogue import CatalogueClient
from reeflab.testing.catalogue import CatalogueProcess
from reeflab.testing.process import wait_until


def test_the_platform_checks_every_installed_module_once(tmp_path):
    installed = sorted(e.id for e in installed_entries() if e.entry_point is not None)
    assert {"fish-detector", "yolo-detector", "fish-classifier", "image-classifier"} <= set(installed)
    with CatalogueProcess(tmp_path, ["ana"], check_installed=True) as service:
        ana = CatalogueClient(service.url, service.tokens["ana"], max_age=0)

        def all_checked():
            listing = httpx.get(f"{service.url}reports.json", headers=ana.headers, timeout=5).json()["reports"]
            return listing if len(listing) == len(installed) else None

        listing = wait_until(all_checked, 600, "the platform's checks of the installed modules", interval=2)
        assert sorted(item["report"]["module"] for item in listing) == installed
        for module in installed:
            ((name, report),) = ana.reports(module)
            failed = {r.name: r.reason for r in report.results if r.state == "failed"}
            assert name == f"{module}@platform" and report.passed, failed
            assert "DEEPaaS API answers" in ana.page(name).decode()
        kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "service" / "reports").iterdir()}
        # users only read: there is no route that writes a report
        assert httpx.post(f"{service.url}reports.json", headers=ana.headers, json={}).status_code == 405

    # started again, with no module changed: nothing is checked again
    with CatalogueProcess(tmp_path, ["ana"], check_installed=True) as service:

        def looked():  # the log of both starts: the second's verdict on the modules
            said = [line for line in service.log_path.read_text().splitlines() if "installed modules:" in line]
            return said[1] if len(said) == 2 else None

        verdict = wait_until(looked, 120, "the service to look at the modules")
        assert verdict.endswith(f"installed modules: 0 checked now, {len(installed)} unchanged since their check")
        ana = CatalogueClient(service.url, service.tokens["ana"], max_age=0)
        assert [name for name, _ in ana.reports("fish-detector")] == ["fish-detector@platform"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "service" / "reports").iterdir()} == kept
