"""Notebook jobs from Python: `job = submit("notebooks/train_yolo.ipynb", parameters={"epochs": 5}); job.wait()`."""

from __future__ import annotations

from typing import Any

from .connection import Connection, ReefLabClientError, Run


class JobFailed(ReefLabClientError):
    """The notebook raised: `cell_index`, `ename` and `evalue` say where and what."""

    def __init__(self, info: dict[str, Any]):
        error = info.get("error") or {}
        self.cell_index = error.get("cell_index")
        self.ename, self.evalue = error.get("ename"), error.get("evalue")
        where = f"cell {self.cell_index} raised " if self.cell_index is not None else ""
        super().__init__(409, f"job {info['id']} {info['state']}: {where}{info.get('reason') or ''}".strip())


class Job(Run):
    """A handle on one job; `info` is its latest state from the server."""

    collection, listed_as, unit, failure = ("jobs",), "jobs", "cell", JobFailed

    @property
    def output(self) -> str:
        """The executed notebook, relative to your Jupyter root folder (open it in JupyterLab)."""
        return self.info["output"]

    def __repr__(self) -> str:
        cells = self.info.get("progress") or {}
        where = f"cell {cells.get('cell', 0)}/{cells.get('cells', 0)}"
        return f"<Job {self.id} {self.info['notebook']} {self.state} {where}>"

    def show_progress(self, bar) -> None:
        """Its cells as a progress bar."""
        cells = self.info["progress"]
        bar.total = cells["cells"] or None
        done = max(0, cells["cell"] - 1)  # cells done
        bar.n = (bar.total or done) if self.state == "completed" else done
        bar.set_postfix_str(cells["source"][:40])

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


def submit(
    notebook: str,
    parameters: dict[str, Any] | None = None,
    *,
    profile: str | None = None,
    kernel: str | None = None,
    title: str | None = None,
    processes: int | None = None,
    nodes: int | None = None,
    connection: Connection | None = None,
) -> Job:
    """Run a notebook (path relative to your Jupyter root folder) with parameters as a job; with `processes`, a
    distributed one (torchrun: that many ranks on each of its `nodes`; `job.logs(rank=N)` reads a rank's log)."""
    body = {"notebook": notebook, "parameters": parameters or {}, "profile": profile, "kernel": kernel, "title": title}
    body.update({k: v for k, v in (("processes", processes), ("nodes", nodes)) if v is not None})
    return Job.create(body, connection)


def list_jobs(connection: Connection | None = None) -> list[Job]:
    return Job.all(connection)


def get(job_id: str, connection: Connection | None = None) -> Job:
    return Job.fetch(job_id, connection)
