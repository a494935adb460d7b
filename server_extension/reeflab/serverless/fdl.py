"""OSCAR service definitions (FDL): validation with messages that name the field to fix.

ReefLab reads a few extra settings from `environment.variables`, so an FDL written for ReefLab
still deploys unchanged on a real OSCAR cluster:

- `REEFLAB_MODULE`: serve this DEEPaaS module (a `deepaas.v2.model` entry point) from warm
  workers instead of running `script` per invocation; `image` is then ignored locally.
- `REEFLAB_PREDICT_ARGS`: JSON object of extra `predict` arguments (e.g. `{"conf": 0.4}`).
- `REEFLAB_IDLE_SECONDS`: stop an idle warm worker after this many seconds (default: engine's).

Variables that decide which code programs load, or where they find it, are refused (see
`refusal`): the engine sets PATH, HOME and TMPDIR of its sandboxed workers itself.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import BadRequest
from ..profiles import memory_bytes

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRET_MASK = "********"
MODULE_VAR = "REEFLAB_MODULE"
PREDICT_ARGS_VAR = "REEFLAB_PREDICT_ARGS"
IDLE_VAR = "REEFLAB_IDLE_SECONDS"
# what a module's container runs per invocation on a real OSCAR cluster (DEEPaaS's own CLI)
OSCAR_MODULE_SCRIPT = """\
#!/bin/sh
# deepaas-cli refuses to choose when the image holds several models: name the service's one
export DEEPAAS_V2_MODEL="${DEEPAAS_V2_MODEL:-$REEFLAB_MODULE}"
name=$(basename "$INPUT_FILE_PATH")
deepaas-cli predict --files "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/${name%.*}.json"
"""
MIN_MEMORY = 16 * 2**20  # below this not even the worker's Python starts
_CPU_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")
_VARIABLE_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # Kubernetes' rule for container variables
_LOADS_CODE = "it changes which code programs load"
# name -> why a service may not set it
REFUSED_VARIABLES = {
    "PATH": "the engine sets where its workers find programs",
    "HOME": "the engine gives each worker a home of its own",
    "TMPDIR": "each worker has a private /tmp of its own",
    "PYTHONPATH": "it changes where Python imports code from",
    "PYTHONHOME": "it changes where Python finds its standard library",
    "PYTHONSTARTUP": "Python would run the file it names",
    "PYTHONUSERBASE": "it changes where Python imports code from",
    "PYTHONPLATLIBDIR": "it changes where Python imports code from",
    "PYTHONEXECUTABLE": "it changes which Python programs run",
    "PYTHONBREAKPOINT": "Python would import the code it names",
    "BASH_ENV": "shells would run the file it names",
    "ENV": "shells would run the file it names",
    "IFS": "it changes how shells split the script's words",
    "CDPATH": "it changes where shell scripts' `cd` goes",
    "SHELLOPTS": "it changes how shells run scripts",
    "BASHOPTS": "it changes how shells run scripts",
    "PS4": "shells would run the commands in it",
    "GCONV_PATH": "the C library would load character-set modules from it",
    "LOCPATH": "the C library would read locale data from it",
    "HOSTALIASES": "it changes which hosts names resolve to",
    "OPENSSL_CONF": "OpenSSL would load the engines it names",
    "OPENSSL_ENGINES": "OpenSSL would load engines from it",
    "NODE_OPTIONS": _LOADS_CODE,
    "NODE_PATH": _LOADS_CODE,
    "PERL5LIB": _LOADS_CODE,
    "PERL5OPT": _LOADS_CODE,
    "PERLLIB": _LOADS_CODE,
    "RUBYLIB": _LOADS_CODE,
    "RUBYOPT": _LOADS_CODE,
    "CLASSPATH": _LOADS_CODE,
    "JAVA_TOOL_OPTIONS": _LOADS_CODE,
    "_JAVA_OPTIONS": _LOADS_CODE,
    "JDK_JAVA_OPTIONS": _LOADS_CODE,
}
REFUSED_PREFIXES = {
    "LD_": "the dynamic loader reads LD_* variables (LD_PRELOAD, LD_LIBRARY_PATH put libraries into every program)",
    "DYLD_": "the dynamic loader reads DYLD_* variables",
    "BASH_FUNC_": "bash would import the function in it",
    "OMP_TOOL": "OpenMP would load the tool libraries it names",
    "CUDA_INJECTION": "CUDA would load the library it names",
    "REEFLAB_ENGINE": "REEFLAB_ENGINE* are the engine's own settings",
}


def cpu_millicores(value: str) -> int:
    """Parse a Kubernetes CPU quantity ("0.5", "2", "500m") into millicores."""
    match = _CPU_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a CPU quantity such as '0.5', '2' or '500m'")
    number, milli = match.groups()
    return max(1, round(float(number) * (1 if milli else 1000)))


class OscarModel(BaseModel):
    """A part of an FDL whose keys match case-insensitively, as OSCAR's Go binding reads them (`Variables`)."""

    @model_validator(mode="before")
    @classmethod
    def _fold_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            for key in (name, info.alias):
                if key:
                    known[key.lower()] = key
        folded: dict[Any, Any] = {}
        for key, value in data.items():
            target = known.get(key.lower(), key) if isinstance(key, str) else key
            if target in folded:
                raise ValueError(f"'{target}' is given twice (keys match whatever their case, as in OSCAR)")
            folded[target] = value
        return folded


class StorageIO(OscarModel):
    """An input or output storage path of the service (used by upload triggers and outputs)."""

    model_config = ConfigDict(extra="allow")

    storage_provider: str = "minio.default"
    path: str = Field(min_length=1)
    suffix: list[str] = []
    prefix: list[str] = []


class Environment(OscarModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, str] = {}
    secrets: dict[str, str] = {}

    @field_validator("variables", "secrets", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # YAML turns `DEBUG: 1` into an int; the container would see the string "1"
        if isinstance(value, dict):
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return value


class Synchronous(OscarModel):
    model_config = ConfigDict(extra="allow")

    min_scale: int = Field(0, ge=0)
    max_scale: int = Field(0, ge=0, description="0: as many as the engine allows")


class Expose(OscarModel):
    """OSCAR's `expose` (types.Expose): the service runs as a long-running HTTP server on `api_port`, reached at
    /system/services/<name>/exposed/. Locally one instance runs (min_scale > 1 and max_scale are kept and shown)."""

    model_config = ConfigDict(extra="allow")

    api_port: int | list[int] = Field(description="The port the service listens on (OSCAR 4 also takes [port])")
    min_scale: int = Field(1, ge=0, description="0: started by the first request, stopped when idle")
    max_scale: int = Field(10, ge=1)
    cpu_threshold: int = Field(80, ge=1, le=100)
    rewrite_target: bool = False
    default_command: bool = False
    set_auth: bool = False
    health_path: str = "/"
    auth_type: Literal["basic", "forward"] = "basic"
    nodePort: int | list[int] = []  # noqa: N815 (OSCAR's name)

    @field_validator("api_port")
    @classmethod
    def _check_port(cls, value: int | list[int]) -> int | list[int]:
        ports = value if isinstance(value, list) else [value]
        if len(ports) != 1 or not 1 <= ports[0] <= 65535:
            raise ValueError("give the one port (1-65535) the service's HTTP server listens on, e.g. 5000")
        return value

    @field_validator("nodePort")
    @classmethod
    def _no_node_port(cls, value: int | list[int]) -> int | list[int]:
        if value not in (0, []):
            raise ValueError(
                "not offered: no port of this machine is opened to a service; it is reached at "
                "/system/services/<name>/exposed/ (remove nodePort)"
            )
        return value

    @field_validator("health_path")
    @classmethod
    def _check_health_path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?#\\") or any(ord(c) < 33 for c in value):
            raise ValueError(f"{value!r} is not a path: give the path that answers when the service is up, e.g. '/'")
        return value

    @model_validator(mode="after")
    def _check_scale(self) -> Expose:
        if self.max_scale < self.min_scale:
            raise ValueError("max_scale must be at least min_scale")
        return self

    @property
    def port(self) -> int:
        return self.api_port[0] if isinstance(self.api_port, list) else self.api_port


class ServiceDefinition(OscarModel):
    """The FDL fields the local engine acts on; any other OSCAR field is kept and echoed back."""

    model_config = ConfigDict(extra="allow")

    name: str
    image: str = ""
    script: str = ""
    cpu: str = "0.2"
    memory: str = "256Mi"
    log_level: str = "INFO"
    visibility: Literal["private", "public", "restricted"] = "private"
    allowed_users: list[str] = []
    environment: Environment = Environment()
    input: list[StorageIO] = []
    output: list[StorageIO] = []
    synchronous: Synchronous = Synchronous()
    expose: Expose | None = None
    storage_providers: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if len(value) > 39 or not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a service name: use 1-39 lowercase letters, digits and '-', "
                "starting and ending with a letter or digit (e.g. 'fish-detector')"
            )
        return value

    @field_validator("expose", mode="before")
    @classmethod
    def _unset_expose(cls, value: Any) -> Any:
        """`api_port` 0 or [] is OSCAR's "not exposed" (what every service shows, and a dashboard sends back)."""
        if isinstance(value, dict):
            port = next((v for k, v in value.items() if isinstance(k, str) and k.lower() == "api_port"), None)
            if port is not None and port in (0, [], [0]):
                return None
        return value

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("cpu")
    @classmethod
    def _check_cpu(cls, value: str) -> str:
        match = _CPU_RE.match(value)
        if match and float(match.group(1)) <= 0:
            raise ValueError(f"{value!r}: a service needs some CPU, e.g. '0.5' or '500m'")
        cpu_millicores(value)
        return value

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if memory_bytes(value) < MIN_MEMORY:
            raise ValueError(f"{value!r}: a service needs at least 16Mi of memory, e.g. '256Mi' or '2Gi'")
        return value

    @model_validator(mode="after")
    def _check_execution(self) -> ServiceDefinition:
        variables = self.environment.variables
        if not self.module and not self.script.strip():
            raise ValueError(
                "give 'script' (the shell script run for each invocation) or set "
                f"environment.variables.{MODULE_VAR} to the name of an installed module"
            )
        if PREDICT_ARGS_VAR in variables:
            try:
                args = json.loads(variables[PREDICT_ARGS_VAR])
            except ValueError:
                args = None
            if not isinstance(args, dict):
                raise ValueError(
                    f'environment.variables.{PREDICT_ARGS_VAR} must be a JSON object, e.g. {{"conf": 0.4}}'
                )
        if self.expose is not None and self.expose.default_command and not self.module:
            raise ValueError(
                "expose.default_command: ReefLab's local engine runs no container image, so there is no default "
                f"command to run: give a script that starts the HTTP server, or set environment.variables.{MODULE_VAR} "
                "to serve that module's DEEPaaS API (what its image runs by default)"
            )
        if IDLE_VAR in variables and not variables[IDLE_VAR].isdigit():
            raise ValueError(f"environment.variables.{IDLE_VAR} must be a whole number of seconds")
        max_scale = self.synchronous.max_scale
        if max_scale and max_scale < self.synchronous.min_scale:
            raise ValueError("synchronous.max_scale must be 0 (no limit) or at least synchronous.min_scale")
        return self

    # -- what the engine needs ---------------------------------------------------------

    @property
    def module(self) -> str:
        return self.environment.variables.get(MODULE_VAR, "").strip()

    @property
    def predict_args(self) -> dict[str, Any]:
        return json.loads(self.environment.variables.get(PREDICT_ARGS_VAR) or "{}")

    @property
    def cpu_millicores(self) -> int:
        return cpu_millicores(self.cpu)

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)

    def idle_seconds(self, default: float) -> float:
        value = self.environment.variables.get(IDLE_VAR)
        return float(value) if value else default

    def visible_to(self, user: str, owner: str) -> bool:
        """Whether `user` may see and invoke the service (the owner may also change it)."""
        if user == owner or self.visibility == "public":
            return True
        return self.visibility == "restricted" and user in self.allowed_users

    def public_view(self, owner: bool) -> dict[str, Any]:
        """The definition as the API shows it: secret values masked, storage credentials to the owner only.

        oscar-python's storage client reads `storage_providers` from the service, so the owner gets them.
        """
        data = self.model_dump(mode="json")
        data["environment"]["secrets"] = {key: SECRET_MASK for key in self.environment.secrets}
        if not owner:
            data["storage_providers"] = {}
        return data


def parse_definition(data: Any, previous: ServiceDefinition | None = None) -> ServiceDefinition:
    """Validate an FDL service (a JSON object); 400 with 'field: what to fix' on any error.

    On update, secrets sent back masked (as GET shows them) keep their previous values.
    """
    if not isinstance(data, dict):
        raise BadRequest("send the service definition as a JSON object (OSCAR FDL: name, image, script, ...)")
    if any(isinstance(key, str) and key.lower() == "functions" for key in data):
        raise BadRequest(
            "this is a whole FDL file: send one service definition, the object under "
            "functions.oscar[].<cluster id> (oscar-python's create_service(path) and oscar-cli do this for you)"
        )
    data = {key: value for key, value in data.items() if key not in ("owner", "token")}  # read-only fields
    try:
        definition = ServiceDefinition.model_validate(data)
    except ValidationError as error:
        raise BadRequest("invalid service definition: " + describe(error)) from None
    check_environment(definition.environment)
    if previous is not None:
        secrets = definition.environment.secrets
        for key, value in secrets.items():
            if value == SECRET_MASK and key in previous.environment.secrets:
                secrets[key] = previous.environment.secrets[key]
    return definition


def refusal(name: str) -> str | None:
    """Why a service may not set the environment variable `name` (None: it may).

    Thread counts (OMP_NUM_THREADS ...) stay allowed: the worker's cgroup bounds its CPU anyway.
    """
    if not _VARIABLE_RE.match(name):
        return "not a variable name: use letters, digits, '_', '-' and '.', not starting with a digit"
    if name in REFUSED_VARIABLES:
        return REFUSED_VARIABLES[name]
    return next((why for prefix, why in REFUSED_PREFIXES.items() if name.startswith(prefix)), None)


def check_environment(environment: Environment) -> None:
    """400 naming the first variable or secret a service may not set, and why."""
    for kind in ("variables", "secrets"):
        for name, value in getattr(environment, kind).items():
            why = refusal(name)
            if why is None and "\0" in value:
                why = "a value cannot hold a NUL character"
            if why is not None:
                raise BadRequest(f"invalid service definition: environment.{kind}.{name}: not allowed: {why}")


def allowed(variables: dict[str, str]) -> dict[str, str]:
    """The variables a worker gets: those refused now are dropped (a service stored before the rule)."""
    return {name: value for name, value in variables.items() if refusal(name) is None and "\0" not in value}


def describe(error: ValidationError) -> str:
    """One line per problem, each starting with the dotted path of the field."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "definition"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def module_definition(
    module: str,
    metadata: dict[str, Any] | None = None,
    name: str | None = None,
    inputs: list[str] = (),
    outputs: list[str] = (),
    **fields: Any,
) -> dict[str, Any]:
    """An FDL service serving a marketplace module, sized from its ai4-metadata `resources.inference`.

    `inputs`/`outputs` are 'bucket/folder' paths on the platform's S3 (uploads to an input path
    trigger jobs; results go to the output paths). The same FDL deploys on a real OSCAR cluster,
    where `image` (the module's docker image from its metadata) runs instead of the local module.
    """
    metadata = metadata or {}
    needs = (metadata.get("resources") or {}).get("inference") or {}
    links = metadata.get("links") or {}
    definition: dict[str, Any] = {
        "name": name or re.sub(r"[^a-z0-9-]+", "-", module.lower()).strip("-")[:39],
        "image": str(links.get("docker_image") or f"ai4oshub/{module}:latest"),
        "script": OSCAR_MODULE_SCRIPT,
        "cpu": str(needs.get("cpu") or 1),
        "memory": f"{int(needs.get('memory_MB') or 2000)}M",  # memory_MB is decimal megabytes, as in the forms
        "environment": {"variables": {MODULE_VAR: module}},
        "input": [{"storage_provider": "minio.default", "path": path} for path in inputs],
        "output": [{"storage_provider": "minio.default", "path": path} for path in outputs],
    }
    return {**definition, **fields}
