"""Storage used by the rest of the platform: a job's `inputs`/`outputs` as `{"NAME": "connection:path"}`.

Each NAME becomes an environment variable of the job:
- an S3 path is given as `s3://bucket/key` with the connection's keys (`AWS_*`): boto3, s3fs, pandas,
  Ultralytics and the AWS CLI read it in place, nothing is copied;
- a WebDAV path is staged: inputs are copied into the job's scratch folder before the notebook starts,
  outputs are copied back after it ended well, and NAME is that local path. Staging was chosen over
  pointing at the FUSE mount `~/storage/<name>` because it works the same where no mount exists (a
  Kubernetes Job pod, a server whose mount died, a cluster without privileged sidecars), a notebook
  reading many small files does not pay a WebDAV round trip per file, and a failed copy is a clear
  job failure instead of a hung read.

Only the connections named get their credentials into the job, looked up in the submitting user's
own store (another user's connection is as absent as a missing one). Locations go to the runner's
spec (no secret); credentials go to the process environment only (`secrets`), never to a file,
a record, a log or a command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import BadRequest, NotFound

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# set by the platform: a binding may not hide them
RESERVED = ("PATH", "HOME", "PYTHONPATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
RESERVED_PREFIXES = ("AWS_", "RCLONE_", "WEBDAV_", "REEFLAB_", "JUPYTER", "MLFLOW_")


def check_names(bindings: dict[str, str], what: str) -> dict[str, str]:
    """Pydantic validator body: names usable as environment variables, references shaped 'connection:path'."""
    for name, reference in bindings.items():
        if not NAME.match(name):
            raise ValueError(f"{what} name '{name}' is not an environment variable name (letters, digits, '_')")
        if name.upper() in RESERVED or name.upper().startswith(RESERVED_PREFIXES):
            raise ValueError(f"{what} name '{name}' is reserved by ReefLab: choose another, e.g. 'DATA'")
        if ":" not in reference or not reference.partition(":")[0]:
            raise ValueError(f"{what} '{name}': write the location as '<connection>:<path>', not '{reference}'")
    return bindings


@dataclass
class Bindings:
    """What a job needs: `env` (locations, no secret), `secrets` (credentials), and the WebDAV copies."""

    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    stage_in: list[dict[str, str]] = field(default_factory=list)
    stage_out: list[dict[str, str]] = field(default_factory=list)

    def spec(self) -> dict:
        """The runner's part of spec.json: locations and rclone remotes only."""
        return {"env": self.env, "stage_in": self.stage_in, "stage_out": self.stage_out}


def bind(storage, owner: str, inputs: dict[str, str], outputs: dict[str, str], scratch: Path) -> Bindings:
    """`owner`'s references resolved (blocking: WebDAV passwords are obscured by rclone); 400 on any problem."""
    both = set(inputs) & set(outputs)
    if both:
        raise BadRequest(f"{', '.join(sorted(both))}: a name is either an input or an output, not both.")
    result = Bindings()
    owners_of: dict[str, str] = {}  # credential variable -> connection that set it
    for direction, bindings in (("input", inputs), ("output", outputs)):
        for name, reference in bindings.items():
            try:
                resolved = storage.resolve(owner, reference)
            except (BadRequest, NotFound) as err:
                raise BadRequest(f"{direction} {name}: {err.message}") from None
            for key, value in resolved.env.items():
                earlier = owners_of.setdefault(key, resolved.connection)
                if earlier != resolved.connection and result.secrets.get(key) != value:
                    raise BadRequest(
                        f"{direction} {name}: connections '{earlier}' and '{resolved.connection}' both need "
                        f"{key}; a job can use one {resolved.kind.upper()} account at a time: copy the data "
                        "into one connection first."
                    )
                result.secrets[key] = value
            if resolved.kind == "s3":
                result.env[name] = resolved.url
                continue
            local = scratch / name / (PurePosixPath(resolved.path).name or name)
            result.env[name] = str(local)
            copy = {"name": name, "remote": resolved.rclone, "local": str(local)}
            if direction == "input":
                result.stage_in.append(copy)
            else:
                # a path with an extension is a file the notebook writes; without, a folder made for it
                copy["folder"] = not PurePosixPath(resolved.path).suffix
                result.stage_out.append(copy)
    return result
