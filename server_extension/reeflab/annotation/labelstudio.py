"""Each user's own Label Studio: one process per user, started on demand by their server, reached only through it.

Label Studio's community edition puts every account of an instance in one organization where all see all
projects, so ReefLab never shares an instance: the user's server starts one for its user alone, in their own
OS account, with its SQLite database and media in their data folder, on a free 127.0.0.1 port, with sign-up
closed (DISABLE_SIGNUP_WITHOUT_LINK) and one account whose random password and API token only that folder
(0600) holds. The platform talks to it with the token; the user types no second password.

At scale its database is the user's own PostgreSQL database instead (`database`: a postgresql:// URL, e.g. from
$REEFLAB_LABEL_STUDIO_DATABASE): given to Label Studio as its own settings (DJANGO_DB=default, POSTGRE_*), and
made on first start where it does not exist yet (the role may create databases) with Label Studio's own driver.

Its pages reach the browser only through the user's server (handlers/annotation.py, under `prefix`): it starts
with LABEL_STUDIO_HOST = PROXY_ORIGIN + prefix, so every link it makes (pages, static files, images, API) goes
through that route, and the route puts the browser's own origin in place of PROXY_ORIGIN. The route logs in
with the stored password (`page_session`): the browser never gets Label Studio's password, token or cookies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import psutil
import requests

from ..errors import NotFound, ReefLabError
from ..files import free_port, write_private
from ..processes import stop_group, tail_lines

VERSION = "1.23.2"  # the Makefile's .venv-labelstudio pin
START_TIMEOUT = 180  # seconds: migrations of a fresh database take ~30 s on two cores
# the origin Label Studio puts in its links; the user's server replaces it with the browser's (never resolved)
PROXY_ORIGIN = "http://label-studio.reeflab.invalid"


class LabelStudioError(ReefLabError):
    """Label Studio could not be started or answered with an error the user cannot fix (502)."""

    status = 502


def default_command() -> str | None:
    """`label-studio` from $REEFLAB_LABEL_STUDIO, else the `.venv-labelstudio` next to ReefLab's venv
    (`make` installs it there), else on PATH."""
    if os.environ.get("REEFLAB_LABEL_STUDIO"):
        return os.environ["REEFLAB_LABEL_STUDIO"]
    beside = Path(sys.prefix).parent / ".venv-labelstudio" / "bin" / "label-studio"
    if beside.exists():
        return str(beside)
    return shutil.which("label-studio")


class LabelStudio:
    """The user's Label Studio: `await ensure()` starts it (once) and answers its API client."""

    def __init__(
        self, data_dir: Path, document_root: Path, command: str | None = None, prefix: str = "", database: str = ""
    ):
        self.data_dir = Path(data_dir)
        self.document_root = Path(document_root)
        self.command = command
        self.database = database  # a postgresql:// URL; empty: SQLite in data_dir
        self.prefix = prefix  # where the user's server serves its pages, e.g. /user/ann/reeflab/annotation/ui
        self._cookies: dict[str, str] | None = None  # the page session the user's server holds (page_session)
        self.log_path = self.data_dir / "label-studio.log"
        self._process: asyncio.subprocess.Process | None = None
        self._api: LabelStudioAPI | None = None
        self._lock = asyncio.Lock()

    @property
    def exists(self) -> bool:
        """Whether this user ever started theirs (no credentials yet: no projects either)."""
        return (self.data_dir / "credentials.json").exists()

    def credentials(self) -> dict[str, str]:
        path = self.data_dir / "credentials.json"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            user = os.environ.get("JUPYTERHUB_USER") or "user"
            created = {
                "username": f"{user}@reeflab.local",
                "password": secrets.token_urlsafe(24),
                "token": secrets.token_hex(20),
            }
            write_private(path, json.dumps(created))
        return json.loads(path.read_text())

    async def ensure(self) -> LabelStudioAPI:
        async with self._lock:
            if self._api is not None and self._process is not None and self._process.returncode is None:
                return self._api
            return await self._start()

    async def _start(self) -> LabelStudioAPI:
        command = self.command or default_command()
        if not command or not Path(command).exists():
            raise LabelStudioError(
                "Label Studio is not installed on this server: run `make up` (it makes .venv-labelstudio) "
                "or set $REEFLAB_LABEL_STUDIO to a label-studio program"
            )
        database = database_environment(self.database) if self.database else {}
        login = self.credentials()
        port = free_port()
        env = {
            **private_environment(),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",  # images are read in place from the workspace
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
            "DISABLE_SIGNUP_WITHOUT_LINK": "true",  # no second account can join this instance
            # its one account, in the environment (only this account reads /proc/<pid>/environ), never in the
            # arguments: every account on the machine sees those (`ps`)
            "LABEL_STUDIO_USERNAME": login["username"],
            "LABEL_STUDIO_PASSWORD": login["password"],
            "LABEL_STUDIO_USER_TOKEN": login["token"],
            **({"LABEL_STUDIO_HOST": PROXY_ORIGIN + unquote(self.prefix).rstrip("/")} if self.prefix else {}),
            # projects over the user's own S3 connections, whose endpoints may be private (the platform bucket's
            # in-cluster address, 127.0.0.1): only this user's instance reaches them, with this user's keys
            "SSRF_PROTECTION_ENABLED": "false",
            # nothing leaves the machine: no analytics, error reports or version checks
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            **database,
        }
        if database:
            await self._ensure_database(command, env)
        argv = [
            command,
            "start",
            "--no-browser",
            "--data-dir",
            str(self.data_dir / "data"),
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--enable-legacy-api-token",
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child keeps it)
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.data_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # started from the event loop's thread, which lives as long as the server
            )
        finally:
            log.close()
        api = LabelStudioAPI(f"http://127.0.0.1:{port}", login["token"])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                last = "\n".join(tail_lines(self.log_path, 15))
                status = self._process.returncode
                raise LabelStudioError(f"Label Studio exited while starting (status {status}):\n{last}")
            if await asyncio.get_running_loop().run_in_executor(None, api.healthy):
                self._api = api
                # where it listens, for the user's own tools (0600, beside the credentials)
                write_private(self.data_dir / "server.json", json.dumps({"url": api.url, "pid": self._process.pid}))
                return api
            await asyncio.sleep(0.5)
        await self.stop()
        raise LabelStudioError(f"Label Studio did not answer within {START_TIMEOUT} s: see {self.log_path}")

    async def _ensure_database(self, command: str, env: dict[str, str]) -> None:
        """The user's PostgreSQL database, made if it is not there yet (with the Python and psycopg of Label
        Studio's own environment: the platform's has no PostgreSQL driver)."""
        python = Path(command).parent / "python"
        with open(self.log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                str(python), "-c", ENSURE_DATABASE, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
            try:
                status = await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                status = await process.wait()
        if status != 0:
            last = "\n".join(tail_lines(self.log_path, 5))
            host = f"{env['POSTGRE_HOST']}:{env['POSTGRE_PORT']}"
            raise LabelStudioError(
                f"Label Studio's PostgreSQL database '{env['POSTGRE_NAME']}' on {host} could not be reached or "
                f"made (status {status}): check $REEFLAB_LABEL_STUDIO_DATABASE's user, password and database, and "
                f"that the server answers:\n{last}"
            )

    async def page_session(self) -> tuple[LabelStudioAPI, dict[str, str]]:
        """The running Label Studio and the cookies of a session logged in as the user (made once, with the stored
        password, until `forget_session`): what the user's server adds to the pages' requests it forwards."""
        api = await self.ensure()
        async with self._lock:
            if self._cookies is None:
                login = self.credentials()
                loop = asyncio.get_running_loop()
                self._cookies = await loop.run_in_executor(None, api.login, login["username"], login["password"])
            return api, self._cookies

    @property
    def logged_in(self) -> bool:
        return self._cookies is not None

    def forget_session(self) -> None:
        """Label Studio ended the page session (logged out, expired): the next request logs in again."""
        self._cookies = None

    async def stop(self) -> None:
        self._cookies = None
        process, self._process, self._api = self._process, None, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(psutil.Error):
                await stop_group(psutil.Process(process.pid), grace=10)


# run by Label Studio's Python: connect to the database, or make it from the server's maintenance database
ENSURE_DATABASE = """
import os, psycopg
from psycopg import sql
args = dict(host=os.environ["POSTGRE_HOST"], port=os.environ["POSTGRE_PORT"], user=os.environ["POSTGRE_USER"],
            password=os.environ["POSTGRE_PASSWORD"], connect_timeout=10)
try:
    psycopg.connect(dbname=os.environ["POSTGRE_NAME"], **args).close()
except psycopg.OperationalError as error:
    if "does not exist" not in str(error):
        raise
    with psycopg.connect(dbname="postgres", autocommit=True, **args) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(os.environ["POSTGRE_NAME"])))
    print("made the PostgreSQL database", os.environ["POSTGRE_NAME"])
"""


def database_environment(url: str) -> dict[str, str]:
    """Label Studio's own settings for a PostgreSQL database (DJANGO_DB=default, POSTGRE_*) from its URL."""
    parsed = urlparse(url)
    name = unquote(parsed.path.lstrip("/"))
    if parsed.scheme not in ("postgresql", "postgres") or not parsed.hostname or not name or "/" in name:
        raise LabelStudioError(
            "Label Studio's database must be written postgresql://<user>:<password>@<host>:<port>/<database> "
            "($REEFLAB_LABEL_STUDIO_DATABASE): fix it, or leave it empty for SQLite in your data folder"
        )
    try:
        port = parsed.port or 5432
    except ValueError:
        raise LabelStudioError("Label Studio's database URL has a port that is not a number: fix it") from None
    return {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": name,
        "POSTGRE_USER": unquote(parsed.username or ""),
        "POSTGRE_PASSWORD": unquote(parsed.password or ""),
        "POSTGRE_HOST": parsed.hostname,
        "POSTGRE_PORT": str(port),
    }


def private_environment() -> dict[str, str]:
    """The server's environment without its credentials (hub API token, keys, passwords): Label Studio needs none."""
    secret = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL", "DATABASE")  # (a database URL has a password)
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JUPYTERHUB_") and not any(w in k.upper() for w in secret)
    }


def _die_with_parent() -> None:
    from ..oscar_engine.worker import die_with_parent

    die_with_parent()


class LabelStudioAPI:
    """Label Studio's REST API with the user's token (plain requests: label-studio-sdk's pins clash with the
    platform's stack)."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def healthy(self) -> bool:
        try:
            return self.session.get(self.url + "/api/projects", params={"page_size": 1}, timeout=5).ok
        except requests.RequestException:
            return False

    @property
    def address(self) -> tuple[str, int]:
        url = urlparse(self.url)
        return url.hostname or "127.0.0.1", url.port or 80

    def login(self, username: str, password: str) -> dict[str, str]:
        """Log in through Label Studio's own login form (pages take no API token): the session's cookies
        (sessionid, csrftoken)."""
        browser = requests.Session()
        try:
            form = browser.get(self.url + "/user/login/", timeout=60)
            csrf = browser.cookies.get("csrftoken", "")
            answer = browser.post(
                self.url + "/user/login/",
                data={"csrfmiddlewaretoken": csrf, "email": username, "password": password},
                allow_redirects=False,
                timeout=60,
            )
        except requests.RequestException as error:
            raise LabelStudioError(f"Label Studio's login did not answer: {type(error).__name__}") from None
        cookies = browser.cookies.get_dict()
        if not form.ok or answer.status_code != 302 or "sessionid" not in cookies:
            raise LabelStudioError(f"Label Studio refused the stored login ({answer.status_code}): see its log")
        return {"sessionid": cookies["sessionid"], "csrftoken": cookies.get("csrftoken", csrf)}

    def call(self, method: str, path: str, **kwargs) -> Any:
        try:
            answer = self.session.request(method, self.url + path, timeout=kwargs.pop("timeout", 120), **kwargs)
        except requests.RequestException as error:
            raise LabelStudioError(f"Label Studio did not answer {method} {path}: {type(error).__name__}") from None
        if answer.status_code == 404:
            raise NotFound(f"Label Studio has no {path}")
        if not answer.ok:
            problem = f"{answer.status_code}: {answer.text[:300]}"
            raise LabelStudioError(f"Label Studio answered {method} {path} with {problem}")
        if answer.headers.get("Content-Type", "").startswith("application/json"):
            return answer.json()
        return answer.content
