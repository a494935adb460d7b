"""A real PostgreSQL server (Debian's `postgresql` package) for tests: its own cluster on a free 127.0.0.1 port.

`with PostgresProcess() as pg:` gives `pg.url(database)` (postgresql://reeflab:<password>@127.0.0.1:<port>/<db>)
for a role `reeflab` that may create databases, password-checked (scram-sha-256) as a real server is. PostgreSQL
refuses to run as root: run as root (as tests here are), the cluster belongs to `nobody`.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..files import free_port
from .process import ServerProcess


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server programs (/usr/lib/postgresql/<version>/bin), the newest; None if not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresProcess(ServerProcess):
    what = "PostgreSQL"

    def __init__(self, user: str = "reeflab"):
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: run make install-test (Debian's postgresql package)")
        # its own folder under /tmp (the account it runs as must reach it: pytest's folders are root's, 0700)
        self.state = Path(tempfile.mkdtemp(prefix="reeflab-postgres-"))
        super().__init__(self.state / "postgres.log")
        self.user = user
        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self.account = "nobody" if os.geteuid() == 0 else None

    def _as_owner(self, argv: list[str]) -> list[str]:
        if self.account is None:
            return argv
        return [
            "setpriv",
            f"--reuid={self.account}",
            f"--regid={pwd.getpwnam(self.account).pw_gid}",
            "--clear-groups",
        ] + argv

    def start(self, timeout: float = 90):
        if self.account is not None:
            entry = pwd.getpwnam(self.account)
            os.chown(self.state, entry.pw_uid, entry.pw_gid)
        secret = self.state / "password"
        secret.write_text(self.password)
        secret.chmod(0o600)
        if self.account is not None:
            os.chown(secret, pwd.getpwnam(self.account).pw_uid, -1)
        initdb = [str(self.bin / "initdb"), "-D", str(self.state / "data"), "-U", self.user, "-E", "UTF8"]
        initdb += ["--auth=scram-sha-256", f"--pwfile={secret}"]
        done = subprocess.run(self._as_owner(initdb), capture_output=True, text=True, cwd=self.state, check=False)
        secret.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return super().start(timeout)

    def command(self) -> list[str]:
        server = [str(self.bin / "postgres"), "-D", str(self.state / "data"), "-p", str(self.port)]
        server += ["-k", str(self.state), "-c", "listen_addresses=127.0.0.1"]
        return self._as_owner(server)

    def healthy(self) -> bool:
        ready = [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"]
        return subprocess.run(ready, capture_output=True, check=False).returncode == 0

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def query(self, database: str, sql: str) -> list[str]:
        """Rows of `sql` (one line each, columns |-separated), through psql as the role."""
        argv = ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database, "-tAc", sql]
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True)
        return done.stdout.splitlines()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        shutil.rmtree(self.state, ignore_errors=True)
