"""A module's predict arguments, read when a service is made, so a service that could never run is refused then.

The engine runs `python -m reeflab.oscar_engine.introspect MODULE` in a worker's sandbox, as the service's owner
(importing a module runs its code), and caches the answer per module for a while: `{"args": [...],
"files": [...]}` or `{"error": "..."}` as the last line of its output.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from .sandbox import SandboxPolicy

log = logging.getLogger(__name__)
CACHE_SECONDS = 600.0


@dataclass(frozen=True)
class ModuleArguments:
    """What a module's predict accepts; `error` says why it could not be read (then nothing is known)."""

    args: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    error: str = ""


class ArgumentReader:
    """Reads modules' predict arguments in the sandbox; blocking, so the engine calls it in a thread."""

    def __init__(self, sandbox: SandboxPolicy, env: dict[str, str], timeout: float):
        self.sandbox, self.env, self.timeout = sandbox, env, timeout
        self._cache: dict[str, tuple[float, ModuleArguments]] = {}

    def read(self, module: str, owner: str) -> ModuleArguments | None:
        """The module's arguments, or None where no worker may run here (the worker will say why at the first call)."""
        cached = self._cache.get(module)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        if self.sandbox.problem():
            return None
        box = self.sandbox.prepare("introspect", owner)
        try:
            program = [self.sandbox.python, "-m", "reeflab.oscar_engine.introspect", module]
            done = subprocess.run(  # fixed argv, no shell
                box.command(program),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                env=box.environment(self.env),
                cwd=box.folder / "home",
                preexec_fn=box.preexec(None),
                timeout=self.timeout,
                check=False,
            )
            lines = done.stdout.decode(errors="replace").strip().splitlines()
            answer = json.loads(lines[-1]) if lines else {}
        except subprocess.TimeoutExpired:
            answer = {"error": f"loading it took more than {self.timeout:.0f} s"}
        except (OSError, ValueError) as error:
            log.warning("could not read the predict arguments of module %s: %s", module, error)
            return None
        finally:
            box.remove()
        if not isinstance(answer, dict) or not (answer.get("error") or isinstance(answer.get("args"), list)):
            log.warning("module %s: no predict arguments read (%s)", module, done.stderr[-500:])
            return None
        args, files = tuple(map(str, answer.get("args") or ())), tuple(map(str, answer.get("files") or ()))
        found = ModuleArguments(args, files, str(answer.get("error") or ""))
        self._cache[module] = (time.monotonic(), found)
        return found


def describe(module: str) -> dict[str, object]:
    """In the sandbox: load the module's entry point (no warm-up) and list its predict arguments."""
    from importlib.metadata import entry_points

    from ..modules.contract import ENTRY_POINT_GROUP, file_args, predict_args

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == module]
    if not found:
        return {"error": f"no module named '{module}' is installed"}
    try:
        fields = predict_args(found[0].load())
    except Exception as error:  # the module's own import failed: it cannot serve anything
        return {"error": f"it cannot be loaded ({type(error).__name__}: {error})"}
    return {"args": sorted(fields), "files": file_args(fields)}


def main() -> int:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what the module prints while importing stays out of the answer
    replies.write(json.dumps(describe(sys.argv[1] if len(sys.argv) > 1 else "")) + "\n")
    replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
