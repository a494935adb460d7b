"""Label Studio on PostgreSQL, as at scale: a user's Label Studio given a database URL keeps its projects in a real
PostgreSQL server (Debian's, started here with a password-checked role), makes its database on first start, and
writes no SQLite file; a wrong URL or password is refused with what to fix."""

from __future__ import annotations

import asyncio
import json

import pytest
from reeflab.annotation.labelstudio import LabelStudio, LabelStudioError
from reeflab.testing.postgres import PostgresProcess


@pytest.fixture(scope="module")
def postgres():
    with PostgresProcess() as server:
        yield server


def run(studio: LabelStudio, then):
    async def go():
        try:
            return then(await studio.ensure())
        finally:
            await studio.stop()

    return asyncio.run(go())


def test_label_studio_keeps_its_projects_in_postgresql(postgres, tmp_path):
    folder = tmp_path / "annotation"
    studio = LabelStudio(folder, tmp_path, database=postgres.url("labelstudio_ann"))
    assert postgres.query("postgres", "select datname from pg_database where datname = 'labelstudio_ann'") == []
    project = run(studio, lambda api: api.call("POST", "/api/projects", json={"title": "Reef on PostgreSQL"}))
    rows = postgres.query("labelstudio_ann", f"select title from project where id = {int(project['id'])}")
    assert rows == ["Reef on PostgreSQL"]  # in the database it made, not in a file
    assert not [p for p in folder.rglob("*") if p.suffix in (".sqlite3", ".sqlite", ".db")]
    assert postgres.password not in json.dumps(project)


def test_a_wrong_database_is_refused_with_what_to_fix(postgres, tmp_path):
    wrong = LabelStudio(tmp_path / "a", tmp_path, database="mysql://someone@127.0.0.1/labelstudio")
    with pytest.raises(LabelStudioError, match="postgresql://<user>:<password>@<host>:<port>/<database>"):
        run(wrong, lambda api: None)
    refused = postgres.url("labelstudio_bob").replace(postgres.password, "not-the-password")
    with pytest.raises(LabelStudioError, match="could not be reached or made") as error:
        run(LabelStudio(tmp_path / "b", tmp_path, database=refused), lambda api: None)
    assert "not-the-password" not in str(error.value)
    assert postgres.query("postgres", "select datname from pg_database where datname = 'labelstudio_bob'") == []
