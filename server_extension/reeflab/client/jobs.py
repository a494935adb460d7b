"""Notebook jobs from Python: `job = submit("notebooks/train_yolo.ipynb", parameters={"epochs": 5}); job.wait()`."""

from __future__ import annotations

import time
from typing import Any

from tqdm.auto import tqdm

from .connection import Connection, ReefLabClientError, Resource, default_connection

ACTIVE = ("starting", "running")


class JobFailed(ReefLabClientError):
    """The notebook raised: `cell_index`, `ename` and `evalue` say where and what."""

    def __init__(self, info: dict[str, Any]):
        error = info.get("error") or {}
        self.cell_index = error.get("cell_index")
        self.ename, self.evalue = error.get("ename"), error.get("evalue")
        where = f"cell {self.cell_index} raised " if self.cell_index is not None else ""
        super().__init__(409, f"job {info['id']} {info['state']}: {where}{info.get('reason') or ''}".strip())


class Job(Resource):
    """A handle on one job; `info` is its latest state from the server."""

    collection = ("jobs",)

    @property
    def output(self) -> str:
        """The executed notebook, relative to your Jupyter root folder (open it in JupyterLab)."""
        return self.info["output"]

    def __repr__(self) -> str:
        cells = self.info.get("progress") or {}
        where = f"cell {cells.get('cell', 0)}/{cells.get('cells', 0)}"
        return f"<Job {self.id} {self.info['notebook']} {self.state} {where}>"

    def wait(self, timeout: float | None = None, progress: bool = True, interval: float = 1.0) -> Job:
        """Block until the job ends, showing its cells as a progress bar; raise JobFailed unless it completed."""
        deadline = time.monotonic() + timeout if timeout else None
        with tqdm(desc=self.info["title"], unit="cell", disable=not progress) as bar:
            while self.refresh().state in ACTIVE:
                cells = self.info["progress"]
                bar.total = cells["cells"] or None
                bar.n = max(0, cells["cell"] - 1)  # cells done
                bar.set_postfix_str(cells["source"][:40])
                if deadline and time.monotonic() > deadline:
                    raise TimeoutError(f"{self!r} still running after {timeout:.0f} s")
                time.sleep(interval)
            if self.state == "completed":
                bar.n = bar.total or bar.n
            bar.set_description(f"{self.info['title']}: {self.state}")
        if self.state != "completed":
            raise JobFailed(self.info)
        return self

    def logs(self, tail: int = 200) -> list[str]:
        return self.connection.get("jobs", self.id, "log", tail=tail)["lines"]

    def follow(self):
        """Yield the job's log lines as they are written, until it ends."""
        url = self.connection.api_url("jobs", self.id, "log")
        with self.connection.session.get(url, params={"follow": "1"}, stream=True, timeout=None) as response:
            if not response.ok:
                raise ReefLabClientError(response.status_code, response.text[:300])
            yield from response.iter_lines(decode_unicode=True)

    def output_notebook(self) -> dict[str, Any]:
        """The executed notebook as nbformat JSON."""
        return self.connection.get("jobs", self.id, "output")

    def cancel(self) -> Job:
        self.info = self.connection.post("jobs", self.id, "cancel")
        return self

    def delete(self) -> None:
        """Forget the job (cancelling it if it runs); its output notebook stays in your folder."""
        self.connection.request("DELETE", "jobs", self.id)


def submit(
    notebook: str,
    parameters: dict[str, Any] | None = None,
    *,
    profile: str | None = None,
    kernel: str | None = None,
    title: str | None = None,
    connection: Connection | None = None,
) -> Job:
    """Run a notebook (path relative to your Jupyter root folder) with parameters as a job."""
    connection = connection or default_connection()
    body = {"notebook": notebook, "parameters": parameters or {}, "profile": profile, "kernel": kernel, "title": title}
    return Job(connection.post("jobs", json={k: v for k, v in body.items() if v is not None}), connection)


def list_jobs(connection: Connection | None = None) -> list[Job]:
    connection = connection or default_connection()
    return [Job(info, connection) for info in connection.get("jobs")["jobs"]]


def get(job_id: str, connection: Connection | None = None) -> Job:
    connection = connection or default_connection()
    return Job(connection.get("jobs", job_id), connection)
