"""Browser tests: a real JupyterLab with ReefLab, driven by Chromium through Playwright's sync API.

The server runs under the base URL `/a%40b/` (as pytest-jupyter's does) so that every URL the panel
builds is proven to respect it, with its settings, workspaces and caches in a temporary folder, and a
remote catalogue index (a file:// URL) that adds realistic modules, one GPU-only, one with unsafe
and invalid metadata. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from reeflab.files import free_port
from reeflab.testing.catalogue import CatalogueProcess
from reeflab.testing.process import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
BASE_URL = "/a%40b/"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
# the lab page, the panel and each step wait at most this long (ms): tests stay well under 60 s
STEP_MS = 15_000

# What the JavaScript of an unsafe description would set if it ever ran.
XSS_MARKER = "__reeflabInjected"


def _remote_module(module_id: str, title: str, summary: str, **fields) -> dict:
    metadata = {
        "metadata_version": "2.3.0",
        "title": title,
        "summary": summary,
        "description": fields.pop("description", f"{summary}\n\nShared by a partner lab through a remote catalogue."),
        "dates": {"created": "2026-05-01", "updated": fields.pop("updated", "2026-10-01")},
        "links": {"source_code": f"https://example.org/{module_id}"},
        "libraries": fields.pop("libraries", ["PyTorch"]),
        "tasks": fields.pop("tasks", ["Computer Vision"]),
        "categories": ["AI4 pre trained", "AI4 inference"],
        "tags": fields.pop("tags", []),
        "data-type": fields.pop("data_type", ["Image"]),
        "resources": {"inference": fields.pop("inference", {"cpu": 1, "memory_MB": 1000})},
        **fields,
    }
    return {"id": module_id, "metadata": metadata}


def remote_catalogue() -> list[dict]:
    """A partner's catalogue: enough modules for two pages of results, across facets."""
    modules = [
        _remote_module(
            "coral-segmenter",
            "Coral cover segmenter",
            "Segment live coral, algae and sand in reef quadrat photos; needs a GPU.",
            tags=["coral", "segmentation", "reef"],
            inference={"cpu": 2, "memory_MB": 8000, "gpu": 1, "gpu_memory_MB": 8000},
        ),
        _remote_module(
            "whale-call-detector",
            "Whale call detector",
            "Find humpback and fin whale calls in hydrophone recordings.",
            tasks=["Classification", "Anomaly Detection"],
            data_type=["Audio"],
            tags=["acoustics", "cetaceans"],
        ),
        _remote_module(
            "sst-forecaster",
            "Sea surface temperature forecaster",
            "Forecast sea surface temperature a week ahead from buoy time series.",
            tasks=["Time Series", "Regression"],
            data_type=["Time Series"],
            libraries=["Scikit-learn"],
            tags=["temperature", "forecast"],
        ),
    ]
    species = ["grouper", "parrotfish", "snapper", "wrasse", "damselfish", "surgeonfish", "butterflyfish"]
    for i, name in enumerate(species):
        modules.append(
            _remote_module(
                f"{name}-counter",
                f"{name.capitalize()} counter",
                f"Count {name} in underwater video transects (object detection and tracking).",
                tags=["fish", "video", name],
                data_type=["Video"],
                updated=f"2026-09-{i + 10:02d}",
            )
        )
    plankton = ["diatoms", "copepods", "dinoflagellates", "radiolarians", "foraminifera", "ciliates", "larvae"]
    for i, taxon in enumerate(plankton):
        modules.append(
            _remote_module(
                f"{taxon}-classifier",
                f"{taxon.capitalize()} plankton classifier",
                f"Classify {taxon} in FlowCam and ZooScan images to genus level.",
                tasks=["Computer Vision", "Classification"],
                tags=["plankton", taxon],
                updated=f"2026-08-{i + 10:02d}",
            )
        )
    for i, kind in enumerate(["plastic bottles", "fishing nets", "microplastics", "tyres", "ropes"]):
        modules.append(
            _remote_module(
                f"litter-{i}",
                f"Marine litter detector: {kind}",
                f"Detect {kind} on beaches and the sea floor in drone and ROV images.",
                tags=["litter", "pollution"],
                libraries=["TensorFlow"],
            )
        )
    # Written by someone hostile or careless: invalid metadata (no tasks, a bad library), HTML and
    # script in the description, a javascript: link. The panel must show it without running any of it.
    unsafe = _remote_module(
        "reef-survey-tool",
        "Reef survey tool",
        "Survey helper with metadata problems.",
        libraries=["NotALibrary"],
        description=(
            "Counts **reef fish** in survey images.\n\n"
            f'<img src="x" onerror="window.{XSS_MARKER}=1">\n\n'
            f"<script>window.{XSS_MARKER}=2</script>\n\n"
            f"[a harmless looking link](javascript:window.{XSS_MARKER}=3)\n"
        ),
        links={"source_code": f"javascript:window.{XSS_MARKER}=4", "documentation": "https://example.org/reef-survey"},
    )
    del unsafe["metadata"]["tasks"]
    modules.append(unsafe)
    return modules


class LabServer:
    """`jupyter lab` from this environment on a free 127.0.0.1 port, stopped when the block ends."""

    base_url = BASE_URL
    xss_marker = XSS_MARKER

    def __init__(self, root: Path, env: dict[str, str] | None = None):
        self.root = root
        self.extra_env = env or {}  # e.g. the serverless engine this server talks to
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}{BASE_URL}"
        self.log_path = root / "jupyter-lab.log"
        self.proc: subprocess.Popen | None = None

    def _environment(self) -> dict[str, str]:
        state = self.root / "state"
        settings = state / "settings"
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        # no news or update toasts over the panel
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        index = state / "partner-catalogue.json"
        index.write_text(json.dumps({"modules": remote_catalogue()}))
        return {
            **os.environ,
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
            "XDG_CACHE_HOME": str(state / "cache"),
            "REEFLAB_CATALOG_INDEXES": index.as_uri(),
            **self.extra_env,
        }

    def __enter__(self) -> LabServer:
        notebooks = self.root / "notebooks"
        notebooks.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).with_name("jupyter")),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--ServerApp.base_url={BASE_URL}",
            f"--ServerApp.root_dir={notebooks}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.port_retries=0",
            # deployments (and their logs) live with this server, not in the user's Jupyter data folder
            f"--DeploymentService.root_dir={self.root / 'state' / 'deployments'}",
            # and so do notebook jobs and pipeline runs (checked every 0.5 s: the panel shows steps as they go)
            f"--JobService.root_dir={self.root / 'state' / 'jobs'}",
            f"--PipelineService.root_dir={self.root / 'state' / 'pipelines'}",
            # and storage connections (the platform's own included): none leaks into another test's server
            f"--StorageService.root_dir={self.root / 'state' / 'storage'}",
            f"--ModuleCheckService.root_dir={self.root / 'state' / 'checks'}",
            f"--AnnotationService.root_dir={self.root / 'state' / 'annotation'}",  # its own Label Studio
            "--PipelineService.poll_interval=0.5",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        env = self._environment()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        try:
            wait_until(self._ready, timeout=60, what=f"jupyter lab on port {self.port} (log: {self.log_path})")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        try:
            return requests.get(self.api_url("reeflab/api/info"), headers=self.headers, timeout=5).ok
        except requests.RequestException:
            return False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def api_url(self, path: str) -> str:
        return self.url + path

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call the ReefLab REST API (`reeflab/api/<path>`) as the test user."""
        return requests.request(method, self.api_url(f"reeflab/api/{path}"), headers=self.headers, timeout=30, **kwargs)

    def delete_deployments(self) -> None:
        """Remove every deployment: each test starts with none, and quotas never fill up."""
        for deployment in self.api("GET", "deployments").json()["deployments"]:
            self.api("DELETE", f"deployments/{deployment['id']}")

    def set_theme(self, theme: str) -> None:
        """Choose the Lab theme through the settings REST API, before the page loads."""
        response = requests.put(
            self.api_url("lab/api/settings/@jupyterlab/apputils-extension:themes"),
            headers=self.headers,
            json={"raw": json.dumps({"theme": theme})},
            timeout=10,
        )
        response.raise_for_status()

    def __exit__(self, *exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


# pytest-jupyter's autouse fixtures would close the event loop Playwright's sync API runs in this
# thread, and clean up an in-process server these tests do not have: both are off here.
@pytest.fixture(autouse=True)
def jp_asyncio_loop():
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup():
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.call_report = report
    return report


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Iterator[LabServer]:
    """The test user's JupyterLab, publishing to a catalogue service (as the hub gives every server one)."""
    with CatalogueProcess(tmp_path_factory.mktemp("catalogue"), ["ana"]) as catalogue:
        env = {"REEFLAB_CATALOGUE_URL": catalogue.url, "REEFLAB_CATALOGUE_TOKEN": catalogue.tokens["ana"]}
        with LabServer(tmp_path_factory.mktemp("lab"), env=env) as server:
            yield server


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install-test` installs Chromium (apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


class LabPage:
    """One browser tab on JupyterLab, with the requests the page made and the errors it raised."""

    def __init__(self, page: Page, lab: LabServer | None, name: str):
        self.page = page
        self.lab = lab
        self.name = name
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", self._page_error)
        page.set_default_timeout(STEP_MS)

    def _page_error(self, error) -> None:
        # other extensions of this environment have their own startup errors: only ReefLab's count here
        if "reeflab" in (error.stack or ""):
            self.errors.append(error.stack)

    def open_lab(self, theme: str = "light") -> None:
        self.lab.set_theme(THEMES[theme])
        self.page.goto(f"{self.lab.url}lab?reset&token={self.lab.token}")
        self.page.locator(f'body[data-jp-theme-name="{THEMES[theme]}"]').wait_for(state="attached")
        # the launcher opens once the layout is restored: from then on nothing moves the focus away
        self.page.locator("#jp-main-dock-panel .jp-Launcher").wait_for()

    def open_panel(self) -> None:
        """Open the ReefLab panel from the left bar, as a user does."""
        self.page.locator('.jp-SideBar.jp-mod-left [data-id="reeflab-panel"]').click()
        self.page.locator(".jp-ReefLab-panel").wait_for()

    @property
    def panel(self):
        return self.page.locator(".jp-ReefLab-panel")

    @property
    def main(self):
        """The main-area tab shown now, when ReefLab opened it (a module's page, a Try, a log)."""
        return self.page.locator("#jp-main-dock-panel .jp-ReefLab-tab:not(.lm-mod-hidden)")

    @property
    def tabs(self):
        """The main area's tab titles (`.lm-mod-current`: the one shown)."""
        return self.page.locator("#jp-main-dock-panel .lm-TabBar-tab")

    def search(self, text: str) -> None:
        box = self.page.get_by_role("searchbox", name="Search modules")
        box.fill("")
        box.press_sequentially(text, delay=40)
        expect(box).to_have_value(text)

    def cards(self):
        return self.panel.locator(".jp-ReefLab-card")

    def card(self, title: str):
        return self.cards().filter(
            has=self.page.locator(".jp-ReefLab-cardTitle", has_text=re.compile(f"^{re.escape(title)}$"))
        )

    def search_requests(self) -> list[str]:
        return [url for url in self.requests if "/reeflab/api/catalog/modules?" in url or url.endswith("/modules")]

    def screenshot(self, label: str) -> Path:
        """The panel as the user sees it, and the whole window for context."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.locator("#jp-left-stack").screenshot(path=path, animations="disabled")
        self.page.screenshot(path=ARTIFACTS / f"{self.name}-{label}-window.png", animations="disabled")
        return path

    def window_screenshot(self, label: str) -> Path:
        """The whole window only: before JupyterLab loads (the hub's pages) there is no panel to frame."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=path, animations="disabled")
        return path


@contextmanager
def _tab(browser: Browser, lab: LabServer | None, request) -> Iterator[LabPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    page = LabPage(context.new_page(), lab, name)
    yield page
    report = getattr(request.node, "call_report", None)
    if report is not None and report.failed:
        if lab is not None:
            page.screenshot("failed")
        else:
            page.window_screenshot("failed")
    context.close()
    # an uncaught exception in the page is a bug even when the test's checks passed
    assert not page.errors, f"the page raised: {page.errors}"


@pytest.fixture
def lab_page(browser: Browser, lab: LabServer, request) -> Iterator[LabPage]:
    with _tab(browser, lab, request) as page:
        yield page


@pytest.fixture
def hub_page(browser: Browser, request) -> Iterator[LabPage]:
    """A fresh tab with no cookies and no lab server of its own: the test logs in to a hub through it."""
    with _tab(browser, None, request) as page:
        yield page
