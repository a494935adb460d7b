"""Real servers as subprocesses for tests and benchmarks: started, awaited, stopped, logged."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def wait_until(predicate, timeout: float, what: str, interval: float = 0.25):
    """Poll `predicate` until it returns a truthy value; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class ServerProcess:
    """A server in its own session with its output in `log_path`; a context manager.

    Subclasses give `command()` and `healthy()`; `start()` waits until healthy and fails with
    the log's tail if the process exits first.
    """

    what = "the server"

    def __init__(self, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise TypeError(f"{type(self).__name__} must define command()")

    def healthy(self) -> bool:
        raise TypeError(f"{type(self).__name__} must define healthy()")

    def start(self, timeout: float = 90):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.what} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return self.healthy()
            except OSError:
                return False

        try:
            wait_until(up, timeout, f"{self.what} to answer")
        except BaseException:  # never left running by a start that failed (its `with` block is never entered)
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL of its whole session if it does not stop in time."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the main process alone, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
