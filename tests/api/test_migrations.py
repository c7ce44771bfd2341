"""The schema migrations on both databases: a database made by an older dtmfgraph (revision
0001, no ``calls.media_record`` nor the later columns) upgrades in place and keeps its calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from dtmfgraph.service.model import Call, CallState, Direction
from dtmfgraph.store.migrate import MIGRATIONS, head_revisions, upgrade
from dtmfgraph.store.sql import SqlRepository


async def test_upgrade_from_0001_keeps_calls_and_adds_media_record(db_url: str) -> None:
    repo = SqlRepository(db_url)
    try:
        await upgrade(repo.engine, "0001")
        async with repo.engine.begin() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("calls")}
            )
            assert "media_record" not in columns
            await conn.execute(
                sa.text(
                    "INSERT INTO calls (id, tenant_id, app_id, direction, state, callback_uri,"
                    " target_uri, properties, result_info, tone_subscribed, tone_seq, last_tone,"
                    " created_at, last_keepalive_at) VALUES ('old', 't', 'a', 'outgoing',"
                    " 'established', 'http://127.0.0.1:9/cb', NULL, '{}', NULL, false, 0, NULL,"
                    " 1.0, 1.0)"
                )
            )
        await upgrade(repo.engine)
        async with repo.unit() as uow:
            [old] = await uow.unfinished_calls()
            assert (old.id, old.state, old.media_record) == ("old", CallState.ESTABLISHED, None)
            assert not old.audio_held  # 0004: calls of before are not held
            record = {"role": "caller", "peer": ["127.0.0.1", 5070], "dialog": {"call_id": "x"}}
            new = Call(
                "new", "t", "a", Direction.OUTGOING, CallState.ESTABLISHED, "http://x", None,
                media_record=record,
            )  # fmt: skip
            await uow.insert_call(new)
        async with repo.unit() as uow:
            got = await uow.get_call("new")
            assert got is not None and got.media_record == record
    finally:
        await repo.close()


def test_head_read_from_the_files_is_alembics() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revisions() == set(ScriptDirectory.from_config(cfg).get_heads())


def test_head_revisions_of_a_branched_chain(tmp_path: Path) -> None:
    for name, body in {
        "a.py": 'revision = "a"\ndown_revision = None\n',
        "b.py": 'revision: str = "b"\ndown_revision: str | None = "a"\n',
        "c.py": "revision = 'c'\ndown_revision = 'a'\n",
        "d.py": 'revision = "d"\ndown_revision = ("b", "c")\n',
        "e.py": 'revision = "e"\ndown_revision = "a"\n',
        "__init__.py": "",
    }.items():
        (tmp_path / name).write_text(body)
    assert head_revisions(tmp_path) == {"d", "e"}


CHECK = """
import asyncio, sys
from dtmfgraph.store.migrate import upgrade
from dtmfgraph.store.sql import SqlRepository

async def main():
    repo = SqlRepository(sys.argv[1])
    await upgrade(repo.engine)
    await repo.close()

asyncio.run(main())
print("alembic" in sys.modules)
"""


def test_current_schema_is_checked_without_alembic(db_url: str) -> None:
    """The first start migrates (with Alembic); a restart on the current schema reads the
    stored revision and does not import Alembic at all."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", CHECK, db_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["True", "False"]
