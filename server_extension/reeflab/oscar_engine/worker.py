"""A warm worker: one long-lived process per service instance, serving invocations over a pipe.

The engine starts `python -m reeflab.oscar_engine.worker`, writes the service spec as the first
JSON line on stdin, then one JSON line per invocation; the worker answers one JSON line each on
its original stdout. A module is loaded (and warmed) once per worker; a script runs per call
under OSCAR's contract (`INPUT_FILE_PATH`, `TMP_OUTPUT_DIR`). Whatever user code prints goes to
the invocation's log file, never into the protocol.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import mimetypes
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import traceback
import zipfile
from pathlib import Path
from typing import Any, TextIO

from ..modules.contract import file_args, predict_args
from .slices import CHUNK, read_slice, run_slice, slice_problem

PR_SET_PDEATHSIG = 1
# a module with several file arguments gets a zip of its files: at most this much unpacked
MAX_UNPACKED_BYTES = 2 * 1024**3
# glibc malloc (mallopt): blocks up to KEPT_BLOCK come from the heap, and freed memory stays there while invocations
# follow one another; given back (malloc_trim) after IDLE_TRIM_SECONDS without one
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_BLOCK = 256 * 2**20
IDLE_TRIM_SECONDS = 5.0


def keep_freed_memory() -> None:
    """Make glibc keep what a forward pass frees for the next one. By default it maps every block over its
    (dynamic, at most 32 MiB) threshold anew and trims the heap when 64 MiB are free at its top: the network's
    activations then come back as fresh pages, zeroed by the kernel at each pass (yolo-detector, 8 images of 640
    pixels a pass: ~8,800 minor faults and 16 ms of system time per image, 15 % of its CPU; none with this)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its own allocator's defaults
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, KEPT_BLOCK)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def give_freed_memory_back() -> None:
    """What the heap keeps free goes back to the system (glibc malloc_trim)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (an engine killed with SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ScriptRunner:
    """Runs the service script with /bin/sh per invocation, as OSCAR's FaaS supervisor does."""

    def __init__(self, spec: dict[str, Any]):
        handle, path = tempfile.mkstemp(prefix="reeflab-script-", suffix=".sh")
        with os.fdopen(handle, "w") as script:
            script.write(spec["script"])
        self.path = path
        # alone in its sandbox's pid namespace (bwrap's init is our parent): what a script left
        # running in the background may be stopped after each invocation without touching anyone else
        self.sweep = bool(spec.get("sandboxed")) and os.getppid() == 1

    def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        env = {
            **os.environ,
            "INPUT_FILE_PATH": request["input"],
            "TMP_INPUT_DIR": str(Path(request["input"]).parent),
            "TMP_OUTPUT_DIR": request["output_dir"],
            "JOB_UUID": request["id"],
        }
        with open(request["log"], "ab") as log:
            done = subprocess.run(  # fixed argv, no shell
                ["/bin/sh", self.path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=request["workdir"],
                preexec_fn=die_with_parent,  # safe: a script worker runs no threads
                check=False,
            )
        if self.sweep:  # nothing of this invocation may still be writing when the engine takes its files
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)
        if done.returncode != 0:
            return {"ok": False, "kind": "failure", "error": f"the service script exited with status {done.returncode}"}
        return {"ok": True}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self.path)


class _Upload:
    """The uploaded file as DEEPaaS validators see it (webargs file field: .file, .filename)."""

    def __init__(self, stream, filename: str):
        self.file, self.filename, self.name = stream, filename, filename
        self.content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"


class ModuleRunner:
    """A DEEPaaS v2 module loaded once: arguments validated with its own schema, then `predict`."""

    def __init__(self, spec: dict[str, Any]):
        from importlib.metadata import entry_points

        from marshmallow import Schema

        keep_freed_memory()  # before the module loads; a zygote's forked workers inherit it

        found = [ep for ep in entry_points(group="deepaas.v2.model") if ep.name == spec["module"]]
        if not found:
            raise RuntimeError(f"no module named '{spec['module']}' is installed")
        self.model = found[0].load()
        if callable(getattr(self.model, "warm", None)):  # optional in DEEPaaS, as get_predict_args is
            self.model.warm()
        fields = predict_args(self.model)
        files = file_args(fields)
        if not files:
            raise RuntimeError(f"module '{spec['module']}' takes no file in predict: it cannot serve invocations")
        self.file_arg = files[0]
        self.file_args = files
        unknown = sorted(set(spec.get("predict_args", {})) - set(fields))
        if unknown:
            raise RuntimeError(
                f"REEFLAB_PREDICT_ARGS: {', '.join(unknown)} not accepted by the module's predict "
                f"(it takes: {', '.join(sorted(fields))})"
            )
        self.extra = spec.get("predict_args", {})
        self.schema = Schema.from_dict(fields)()

    def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        if isinstance(request.get("group"), list):
            return self.invoke_group(request)
        descriptor = read_slice(Path(request["input"]))
        if descriptor is not None:
            if not request.get("trusted"):
                return {"ok": False, "kind": "input", "error": "only the service's owner may send it batch slices"}
            problem = slice_problem(descriptor)
            if problem:
                return {"ok": False, "kind": "input", "error": problem}
            many = None
            if callable(getattr(self.model, "predict_batch", None)):
                many = functools.partial(self.predict_files, in_memory=True)
            return run_slice(descriptor, self.predict_file, many, Path(request["output_dir"]))
        return self.predict_file(Path(request["input"]), request["name"], Path(request["output_dir"]))

    def invoke_group(self, request: dict[str, Any]) -> dict[str, Any]:
        """Several queued jobs in one invocation (dispatcher.py packs their inputs in a tar whose member `k` is the
        `k`-th job's file): predicted together, CHUNK files a forward pass as batch slices are; job `k`'s outputs go
        to `<output_dir>/<k>/`; the reply holds each job's own reply, in order (`replies`)."""
        members, output = request["group"], Path(request["output_dir"])
        scratch = Path(tempfile.mkdtemp(prefix="reeflab-group-"))  # in the sandbox: its own tmpfs /tmp
        try:
            items, alone = [], {}
            with tarfile.open(request["input"]) as archive:
                for k, member in enumerate(members):
                    info = archive.getmember(str(k))
                    source = archive.extractfile(info) if info.isfile() else None
                    if source is None:
                        return {"ok": False, "kind": "failure", "error": f"the engine's group has no file for job {k}"}
                    path = scratch / str(k)
                    path.write_bytes(source.read())
                    if read_slice(path) is not None:  # an uploaded slice descriptor: processed alone, as one
                        alone[k] = {**request, "group": None, "input": str(path), "name": member["name"]}
                        alone[k]["output_dir"] = str(output / str(k))
                    items.append((path, str(member["name"]), output / str(k)))
            batched = [k for k in range(len(items)) if k not in alone]
            replies: dict[int, dict[str, Any]] = {k: self.invoke(single) for k, single in alone.items()}
            many = callable(getattr(self.model, "predict_batch", None))
            step = CHUNK if many else 1
            for first in range(0, len(batched), step):
                chunk = [items[k] for k in batched[first : first + step]]
                answers = self.predict_files(chunk) if many else [self.predict_file(*chunk[0])]
                replies.update(zip(batched[first : first + step], answers, strict=True))
        except (tarfile.TarError, KeyError, OSError) as error:
            return {"ok": False, "kind": "failure", "error": f"could not read the engine's group of inputs: {error}"}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"ok": True, "replies": [replies[k] for k in range(len(items))]}

    def predict_files(self, items: list[tuple[Path, str, Path]], in_memory: bool = False) -> list[dict[str, Any]]:
        """Several files through the module's `predict_batch` (one forward pass); each validated first.
        `in_memory`: the JSON results of that pass come back in the replies (`outputs`: [(file name, bytes)])
        instead of files in each item's output folder (files predicted one by one still go to their folder)."""
        replies: list[dict[str, Any] | None] = []
        valid, values = [], {}
        for path, name, _ in items:
            checked, refused = self.validate(path, name)
            replies.append(refused)
            if refused is None:
                valid.append(len(replies) - 1)
                values = checked
        if not valid or values.get("accept") == "image/png":  # annotated images: one by one
            return [reply or self.predict_file(*items[i]) for i, reply in enumerate(replies)]
        options = {k: v for k, v in values.items() if k != self.file_arg}
        try:
            paths, names = [str(items[i][0]) for i in valid], [items[i][1] for i in valid]
            results = self.model.predict_batch(paths, names, **options)
        except Exception:  # one bad file spoils the batch: fall back to one at a time
            traceback.print_exc()
            return [reply or self.predict_file(*items[i]) for i, reply in enumerate(replies)]
        for i, result in zip(valid, results, strict=True):
            stem = Path(items[i][1]).stem or "result"
            if in_memory:
                replies[i] = {"ok": True, "outputs": [(stem + ".json", json.dumps(result, default=str).encode())]}
            else:
                save_result(result, items[i][2], stem)
                replies[i] = {"ok": True}
        return replies

    def validate(
        self, path: Path, name: str, files: dict[str, tuple[Path, str]] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The module's predict arguments for these files (default: this one file as its first file argument),
        and the input error reply if they are refused."""
        from marshmallow import EXCLUDE, ValidationError

        files = files or {self.file_arg: (path, name)}
        with contextlib.ExitStack() as streams:
            uploads = {arg: _Upload(streams.enter_context(open(p, "rb")), n) for arg, (p, n) in files.items()}
            try:
                values = self.schema.load({**self.extra, **uploads}, unknown=EXCLUDE)
            except ValidationError as error:
                message = _validation_message(error.messages)
                if any(arg in error.messages and arg not in files for arg in self.file_args):
                    message += f" ({self._several_files_hint()})"
                return {}, {"ok": False, "kind": "input", "error": message}
            except Exception as error:  # a validator that crashed on this input
                traceback.print_exc()
                problem = f"the module could not read the input file '{name}' ({type(error).__name__}: {error})"
                return {}, {"ok": False, "kind": "input", "error": f"{self.file_arg}: {problem}"}
        return values, None

    def _several_files_hint(self) -> str:
        names = ", ".join(self.file_args)
        return (
            f"this module takes {len(self.file_args)} files ({names}): send a zip archive of them, "
            "each named after its argument (e.g. image.jpg for 'image') or in this order"
        )

    def input_files(self, path: Path, name: str, scratch: Path) -> tuple[dict[str, tuple[Path, str]], str | None]:
        """File argument -> (path, original name) for one input, as DEEPaaS gets one upload per file field: a
        module with several file arguments may get a zip holding its files; anything else is its first file."""
        if len(self.file_args) < 2 or not zipfile.is_zipfile(path):
            return {self.file_arg: (path, name)}, None
        with zipfile.ZipFile(path) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir()
                and not m.filename.startswith("__MACOSX/")
                and not Path(m.filename).name.startswith(".")
            ]
            if len(members) > len(self.file_args):
                return {}, f"the zip holds {len(members)} files, more than the module's file arguments: " + (
                    self._several_files_hint()
                )
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                return {}, f"the zip unpacks to more than {MAX_UNPACKED_BYTES // 1024**3} GiB"
            # a file named after an argument goes to it (image.jpg -> 'image'); the others fill the rest in order
            assigned: dict[str, zipfile.ZipInfo] = {}
            rest = []
            for member in members:
                base = Path(member.filename).name
                arg = next((a for a in self.file_args if a in (base, base.split(".")[0]) and a not in assigned), None)
                if arg is None:
                    rest.append(member)
                else:
                    assigned[arg] = member
            for arg in self.file_args:
                if arg not in assigned and rest:
                    assigned[arg] = rest.pop(0)
            files = {}
            for position, arg in enumerate(a for a in self.file_args if a in assigned):
                member = assigned[arg]
                base = Path(member.filename).name
                target = scratch / f"{position}-{base}"  # flat: no member name chooses where it is written
                with archive.open(member) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                files[arg] = (target, base)
        return files, None

    def predict_file(self, path: Path, name: str, output_dir: Path) -> dict[str, Any]:
        """Validate and predict one input (a file, or a zip of files for several file arguments); its result
        goes into `output_dir`."""
        from deepaas.model.v2.wrapper import UploadedFile

        with tempfile.TemporaryDirectory(prefix="reeflab-inputs-") as scratch:
            try:
                files, problem = self.input_files(path, name, Path(scratch))
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                problem = f"the zip archive '{name}' could not be read: {error}"
            if problem:
                return {"ok": False, "kind": "input", "error": problem}
            values, refused = self.validate(path, name, files)
            if refused:
                return refused
            for arg, (file_path, file_name) in files.items():
                content_type = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
                values[arg] = UploadedFile(arg, str(file_path), content_type, file_name)
            try:
                result = self.model.predict(**values)
            except Exception as error:  # the module's failure is this invocation's failure
                traceback.print_exc()
                return {"ok": False, "kind": "failure", "error": f"predict failed: {type(error).__name__}: {error}"}
            save_result(result, output_dir, Path(name).stem or "result")
        return {"ok": True}

    def close(self) -> None:
        pass


def save_result(result: Any, output_dir: Path, stem: str) -> Path:
    """Write what `predict` returned into the output folder: a returned file as is, else JSON."""
    output_dir.mkdir(parents=True, exist_ok=True)
    source = getattr(result, "name", None) or getattr(result, "filename", None)
    if isinstance(source, str) and os.path.isfile(source):  # an open file or DEEPaaS ReturnedFile
        target = output_dir / (stem + (Path(source).suffix or ".bin"))
        shutil.copyfile(source, target)
        with contextlib.suppress(Exception):
            result.close()
        return target
    if isinstance(result, bytes | bytearray):
        target = output_dir / (stem + ".bin")
        target.write_bytes(result)
        return target
    text = json.dumps(result, default=str)
    print(text)  # into the invocation log, as deepaas-cli logs what predict returned
    target = output_dir / (stem + ".json")
    target.write_text(text)
    return target


def _validation_message(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{field}: {' '.join(map(str, problems))}" for field, problems in messages.items())
    return str(messages)


@contextlib.contextmanager
def output_into(log_path: str):
    """Send fds 1 and 2 (Python and C-level output alike) to the invocation log meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log):
            os.close(fd)


def load(spec: dict[str, Any]) -> tuple[ModuleRunner | ScriptRunner | None, str]:
    """The service's runner, or None and why it could not load."""
    try:
        return (ModuleRunner(spec) if spec.get("module") else ScriptRunner(spec)), ""
    except Exception as error:
        traceback.print_exc()
        return None, str(error) if isinstance(error, RuntimeError) else f"{type(error).__name__}: {error}"


def serve(requests: TextIO, replies: TextIO, runner: ModuleRunner | None = None) -> int:
    """Read the spec, load the service (unless a zygote forked us with it loaded: `runner`), then answer
    invocations until stdin closes."""

    def send(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    if runner is None:
        runner, problem = load(json.loads(requests.readline() or "{}"))
        if runner is None:
            send({"ready": False, "error": problem})
            return 1
    send({"ready": True, "pid": os.getpid()})
    idle: threading.Timer | None = None  # a module worker's memory kept between invocations goes back after it
    try:
        for line in requests:
            if idle is not None:
                idle.cancel()
            request = json.loads(line)
            with output_into(request["log"]):
                try:
                    reply = runner.invoke(request)
                except Exception as error:  # keep serving: this invocation alone fails
                    traceback.print_exc()
                    reply = {"ok": False, "kind": "failure", "error": f"{type(error).__name__}: {error}"}
            send({"id": request["id"], **reply})
            if isinstance(runner, ModuleRunner):
                idle = threading.Timer(IDLE_TRIM_SECONDS, give_freed_memory_back)
                idle.daemon = True
                idle.start()
    finally:
        if idle is not None:
            idle.cancel()
        runner.close()
    return 0


def main() -> int:
    die_with_parent()
    if os.getppid() != int(os.environ.get("REEFLAB_ENGINE_PID", os.getppid())):
        return 1  # the engine died before we could ask to follow it
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints (imports, warm) go to the worker log, not into the protocol
    return serve(sys.stdin, replies)


if __name__ == "__main__":
    sys.exit(main())
