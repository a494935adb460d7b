"""Each user's own Label Studio database on the operator's PostgreSQL, made by the hub before each spawn.

The operator gives the hub one admin URL ($REEFLAB_LABEL_STUDIO_ADMIN_DATABASE: a role with CREATEROLE and CREATEDB,
not a superuser). Before a user's server starts, the hub makes (or finds) a role and a database for that user, both
named as their OS account is (`accounts.account_name`: a readable part and a hash of the exact hub name, so distinct
names never share one), the database owned by the role, CONNECT and TEMPORARY revoked from PUBLIC: no other
role (another user's) can connect to it. The role's password is derived as MLflow's are (an HMAC of the hub name and
its generation with a key only the hub holds), set again at each spawn (so a lost key heals at the next start), and
sent to PostgreSQL already hashed (SCRAM, never in its logs). The server gets the database as
$REEFLAB_LABEL_STUDIO_DATABASE: in kubernetes mode from a Secret in the user's namespace (secretKeyRef; the pod spec
holds no password), locally in the server's environment.

Role and database record whom they were made for (`ReefLab user <name> <generation>`, as OS accounts do): a
deleted user's (an older generation of the name) are dropped before the new user gets theirs, one a newer user holds
or one ReefLab did not make is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from urllib.parse import quote, urlparse

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import encrypt_password

from .. import accounts, generations

ENV = "REEFLAB_LABEL_STUDIO_DATABASE"  # what the user's server reads (AnnotationService.label_studio_database)
SHAPE = "postgresql://<user>:<password>@<host>:<port>/<database>"


class DatabaseRefused(Exception):
    """The user cannot have their Label Studio database (a name taken by something else, or by a newer user)."""


class LabelStudioDatabases:
    """Makes each hub user's PostgreSQL role and database with the admin role of `admin_url` (passwords derived
    with `key`; revoking needs none)."""

    def __init__(self, admin_url: str, key: str = "", timeout: float = 10):
        parsed = urlparse(admin_url)
        if parsed.scheme not in ("postgresql", "postgres") or not parsed.hostname or not parsed.username:
            raise ValueError(
                f"the Label Studio admin database must be written {SHAPE} (a role with CREATEROLE, CREATEDB)"
            )
        self.admin_url = admin_url
        self.host = parsed.hostname
        self.port = parsed.port or 5432
        self.key = key.encode()
        self.timeout = timeout

    @staticmethod
    def name(username: str) -> str:
        """The role's and the database's name: the user's OS account name (at most 24 characters)."""
        return accounts.account_name(username)

    def password(self, username: str, generation: str = "") -> str:
        if not self.key:
            raise ValueError("the Label Studio databases need a key to derive passwords from")
        message = username if not generation else f"{username}\0{generation}"
        return hmac.new(self.key, message.encode(), hashlib.sha256).hexdigest()

    def url(self, username: str, generation: str = "") -> str:
        name = quote(self.name(username), safe="")
        return f"postgresql://{name}:{self.password(username, generation)}@{self.host}:{self.port}/{name}"

    def _connect(self):
        connection = psycopg2.connect(self.admin_url, connect_timeout=int(self.timeout))
        connection.autocommit = True  # CREATE/DROP DATABASE run outside transactions
        return connection

    def ensure(self, username: str, generation: str = "") -> str:
        """The user's role and database exist, the role's password is the derived one; returns the database's URL.

        Idempotent. Blocking: run it in a thread. DatabaseRefused if the name is someone else's."""
        name = self.name(username)
        mine = accounts.comment(username, generation)
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                self._retire_older(cursor, username, generation)
                role = sql.Identifier(name)
                secret = encrypt_password(self.password(username, generation), name, connection)
                made = self._role_comment(cursor, name) is None
                if made:
                    cursor.execute(
                        sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD {}")
                        .format(role, sql.Literal(secret))
                    )  # fmt: skip
                else:
                    cursor.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(secret)))
                if made or generation:  # whose it is (a caller without the generation keeps the recorded one)
                    cursor.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(mine)))
                self._act_as(cursor, name)
                cursor.execute(
                    "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = %s", (name,)
                )
                found = cursor.fetchone()
                database = sql.Identifier(name)
                if found is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
                elif found[0] != name:
                    raise DatabaseRefused(f"a database {name} owned by {found[0]} is in the way of {username}'s")
                cursor.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
                if found is None or generation:
                    cursor.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(database, sql.Literal(mine)))
        finally:
            connection.close()
        return self.url(username, generation)

    def revoke(self, username: str, generation: str = "") -> str:
        """A deleted user's database (their Label Studio projects) and role go, unless they are a newer user's than
        `generation` (when given). Blocking."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                recorded = accounts.parse_comment(self._role_comment(cursor, self.name(username)) or "")
                if generation and recorded and recorded[1] and not generations.same(recorded[1], generation):
                    if not generations.older(recorded[1], generation):
                        return "nothing (a newer user holds the name)"
                return self._drop(cursor, username)
        finally:
            connection.close()

    def managed(self) -> dict[str, str]:
        """{hub name: generation} of the roles ReefLab made (their name agreeing with the comment's hub name)."""
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT rolname, coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '') "
                    "FROM pg_catalog.pg_roles WHERE rolname LIKE %s",
                    (accounts.PREFIX + "%",),
                )
                rows = cursor.fetchall()
        finally:
            connection.close()
        found = {}
        for role, text in rows:
            recorded = accounts.parse_comment(text)
            if recorded and self.name(recorded[0]) == role:
                found[recorded[0]] = recorded[1]
        return found

    def _role_comment(self, cursor, name: str) -> str | None:
        """The comment of role `name` ('' without one), None where there is no such role."""
        cursor.execute(
            "SELECT coalesce(pg_catalog.shobj_description(oid, 'pg_authid'), '') FROM pg_catalog.pg_roles "
            "WHERE rolname = %s",
            (name,),
        )
        row = cursor.fetchone()
        return None if row is None else row[0]

    def _retire_older(self, cursor, username: str, generation: str) -> None:
        """Drop what an earlier user of the name left; refuse a role that is not ReefLab's for this name, or newer."""
        name = self.name(username)
        found = self._role_comment(cursor, name)
        if found is None:
            return
        recorded = accounts.parse_comment(found)
        if recorded is None or recorded[0] != username[: accounts.MAX_COMMENT_NAME]:
            raise DatabaseRefused(f"a PostgreSQL role {name} that ReefLab did not make for {username} is in the way")
        if not generation or not recorded[1] or generations.same(recorded[1], generation):
            return
        if not generations.older(recorded[1], generation):
            raise DatabaseRefused(f"the Label Studio database {name} belongs to a newer user {username}")
        self._drop(cursor, username)

    def _drop(self, cursor, username: str) -> str:
        name = self.name(username)
        found = self._role_comment(cursor, name)
        recorded = accounts.parse_comment(found or "")
        if found is None:
            return "no database"
        if recorded is None or recorded[0] != username[: accounts.MAX_COMMENT_NAME]:
            return f"nothing (the role {name} is not ReefLab's for {username})"
        self._act_as(cursor, name)
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
        return f"database and role {name} dropped"

    @staticmethod
    def _act_as(cursor, name: str) -> None:
        """The admin role (CREATEROLE, not a superuser) must be a member of the user's role to make it a database's
        owner or drop that database (PostgreSQL 16 and later: with SET)."""
        cursor.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")
        if cursor.fetchone()[0]:
            return
        newer = cursor.connection.server_version >= 160000
        cursor.execute("SELECT pg_catalog.pg_has_role(current_user, %s, %s)", (name, "SET" if newer else "MEMBER"))
        if cursor.fetchone()[0]:
            return
        role = sql.Identifier(name)
        if newer:
            cursor.execute(sql.SQL("GRANT {} TO CURRENT_USER WITH INHERIT FALSE, SET TRUE").format(role))
        else:
            cursor.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))


def label_studio_pre_spawn_hook(databases: LabelStudioDatabases, previous=None):
    """A Spawner.pre_spawn_hook giving the user's server their own Label Studio database (after `previous`).

    A spawner with `set_secret_environment` (ReefLabKubeSpawner) keeps the URL in the user's Secret and gives the pod
    a reference to it; any other puts it in the server's environment. A database that cannot be made stops the
    spawn with why (a server on SQLite meanwhile would keep projects the next start no longer shows)."""
    from tornado import web

    async def hook(spawner) -> None:
        if previous is not None:
            result = previous(spawner)
            if asyncio.iscoroutine(result):
                await result
        name = spawner.user.name
        generation = generations.generation(getattr(spawner.user, "created", None))
        try:
            url = await asyncio.to_thread(databases.ensure, name, generation)
        except (DatabaseRefused, psycopg2.Error) as err:
            why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            spawner.log.error("Label Studio database of %s not made: %s", name, why)
            message = f"Your Label Studio database could not be made ({why}); an admin can tell more."
            error = web.HTTPError(503, message)
            error.jupyterhub_message = message
            raise error from None
        keep = getattr(spawner, "set_secret_environment", None)
        if keep is not None:
            keep(ENV, url)
        else:
            spawner.environment = {**spawner.environment, ENV: url}

    return hook
