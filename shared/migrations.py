"""Alembic migrations per service: upgrade to head, check that models and migrations agree.

Each service keeps its history in services/<name>/migrations (revisions 0001, 0002, ... in
versions/); its version table is `alembic_version`, in the service's own schema on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import subprocess
import sys
import warnings
import zlib
from argparse import Namespace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from alembic import command, context
from alembic.autogenerate import comparators, compare_metadata, renderers
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import BatchOperations, ops
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, DateTime, LargeBinary, MetaData, Table, inspect, text
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import make_engine
from shared.settings import SERVICES

VERSION_TABLE = "alembic_version"
FIRST_REVISION = "0001"
# advisory locks are per database: one key per service, in a namespace of our own
_LOCK_NAMESPACE = 0x6D656E74


class MigrationError(Exception):
    """A migration step that cannot go on; the message says what to do."""


def service_metadata(service: str) -> MetaData:
    """The tables of one service (services.<name>.store.Base.metadata, outbox and inbox too)."""
    # imported by name at run time: shared imports no service module (import-linter contract)
    store = importlib.import_module(f"services.{_known(service)}.store")
    metadata: MetaData = store.Base.metadata
    return metadata


def migrations_folder(service: str) -> Path:
    """services/<name>/migrations, in the source tree or the installed package alike."""
    return Path(str(resources.files(f"services.{_known(service)}") / "migrations"))


def alembic_config(service: str, connection: Connection | None = None) -> Config:
    """Alembic's configuration for one service, built in code (no alembic.ini)."""
    # quiet: the callers print their own progress, one line per service
    config = Config(cmd_opts=Namespace(quiet=True))
    config.set_main_option("script_location", str(migrations_folder(service)))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["service"] = service
    config.attributes["connection"] = connection
    return config


def run_environment(metadata: MetaData) -> None:
    """The body of each service's env.py: runs Alembic on the connection it was handed."""
    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    if connection is None or context.is_offline_mode():
        raise MigrationError(
            "run migrations with `mentorship migrate` (it hands Alembic a connection); "
            "the alembic command line and offline SQL are not wired up"
        )
    service: str = config.attributes["service"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        **_context_options(service, connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


async def upgrade(engine: AsyncEngine, *, service: str, create_empty: bool = False) -> None:
    """Brings the service's database to head; a database made by create_all is stamped first.

    With create_empty, a database without any of the service's tables gets today's tables at
    once and is stamped at head (Alembic's recipe for new databases; CI proves that models and
    migrations agree), instead of replaying every revision: a new service starts faster.
    """
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # replicas starting at once queue here; the later ones then find the schema at head
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
                {"namespace": _LOCK_NAMESPACE, "key": _lock_key(service)},
            )
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{_known(service)}"'))
        await conn.run_sync(_upgrade, service, create_empty)


def head_revision(service: str) -> str | None:
    """The newest revision in the service's migrations folder."""
    return ScriptDirectory.from_config(alembic_config(service)).get_current_head()


async def current_revision(engine: AsyncEngine, *, service: str) -> str | None:
    """The revision the service's database is at; None before its first upgrade."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_revision, service)


async def downgrade(engine: AsyncEngine, *, service: str, revision: str) -> None:
    """Takes the service's database back to `revision` ("base": no tables at all)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(service, sync), revision))


async def pending_diff(engine: AsyncEngine, *, service: str) -> list[str]:
    """What separates the database from the models; empty when it is at head and matches."""
    async with engine.connect() as conn:
        return await conn.run_sync(_pending_diff, service)


def new_revision(*, service: str, message: str, url: str) -> Path:
    """Autogenerates the next revision of a service against `url`, upgraded to head first."""
    return asyncio.run(_new_revision(service=service, message=message, url=url))


async def _new_revision(*, service: str, message: str, url: str) -> Path:
    engine = make_engine(url, schema=service)
    try:
        await upgrade(engine, service=service)
        async with engine.connect() as conn:
            return await conn.run_sync(_autogenerate, service, message)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, service: str, create_empty: bool) -> None:
    config = alembic_config(service, connection)
    versions = MigrationContext.configure(connection, opts=_version_options(service, connection))
    if (
        create_empty
        and not versions.get_current_heads()
        and not _holds_tables_of(connection, service)
    ):
        service_metadata(service).create_all(connection)
        command.stamp(config, "head")
        return
    if not versions.get_current_heads() and _holds_tables_of(connection, service):
        # made by create_all before migrations existed: record the revision it already has
        command.stamp(config, _revision_of_unversioned(connection, service))
    command.upgrade(config, "head")


def _current_revision(connection: Connection, service: str) -> str | None:
    versions = MigrationContext.configure(connection, opts=_version_options(service, connection))
    return versions.get_current_revision()


def _revision_of_unversioned(connection: Connection, service: str) -> str:
    """head when create_all of today's models made it, else revision 0001 (the first tables)."""
    return "head" if not _model_differences(connection, service) else FIRST_REVISION


def _holds_tables_of(connection: Connection, service: str) -> bool:
    present = set(inspect(connection).get_table_names())
    return bool(present & set(service_metadata(service).tables))


def _pending_diff(connection: Connection, service: str) -> list[str]:
    if connection.dialect.name == "postgresql" and not _schema_exists(connection, service):
        return [f"schema {service!r} does not exist: run `mentorship migrate`"]
    versions = MigrationContext.configure(connection, opts=_version_options(service, connection))
    current = set(versions.get_current_heads())
    heads = set(ScriptDirectory.from_config(alembic_config(service)).get_heads())
    found = []
    if current != heads:
        found.append(
            f"database at revision {_revisions(current)}, migrations at {_revisions(heads)}: "
            "run `mentorship migrate`"
        )
    return found + [_describe(diff) for diff in _model_differences(connection, service)]


def _model_differences(connection: Connection, service: str) -> list[Any]:
    options = _context_options(service, connection.dialect.name)
    migration_context = MigrationContext.configure(connection, opts=options)
    diffs: list[Any] = compare_metadata(migration_context, service_metadata(service))
    return diffs


def _autogenerate(connection: Connection, service: str, message: str) -> Path:
    if not _model_differences(connection, service):
        raise MigrationError(
            f"{service}'s models and migrations agree already: there is nothing to generate"
        )
    config = alembic_config(service, connection)
    script = command.revision(
        config, message=message, autogenerate=True, rev_id=_next_revision_id(config)
    )
    if script is None or isinstance(script, list):
        raise MigrationError(f"alembic wrote no single revision for {service}")
    path = Path(script.path)
    _format_with_ruff(path)
    return path


def _next_revision_id(config: Config) -> str:
    numbers = [
        int(script.revision)
        for script in ScriptDirectory.from_config(config).walk_revisions()
        if script.revision.isdigit()
    ]
    return f"{max(numbers, default=0) + 1:04d}"


def _context_options(service: str, dialect: str) -> dict[str, Any]:
    return {
        **_version_options_for(service, dialect),
        # always batch: a revision must run on SQLite (ALTER by copying the table) and PostgreSQL
        "render_as_batch": True,
        "compare_type": True,
        "include_name": _include_name,
        "render_item": _render_type,
    }


def _version_options(service: str, connection: Connection) -> dict[str, Any]:
    return _version_options_for(service, connection.dialect.name)


def _version_options_for(service: str, dialect: str) -> dict[str, Any]:
    schema = _known(service) if dialect == "postgresql" else None
    return {"version_table": VERSION_TABLE, "version_table_schema": schema}


def _include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    # the version table is Alembic's own, not a table of the models
    return not (type_ == "table" and name == VERSION_TABLE)


def _render_type(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Reflected SQLite types as the models spell them, so a revision runs on PostgreSQL too."""
    if type_ != "type" or autogen_context.dialect is None:
        return False
    if autogen_context.dialect.name != "sqlite":
        return False
    # SQLite reports every timestamp as a naive DATETIME; ours are all aware (instants in UTC)
    if isinstance(obj, DateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, LargeBinary):  # reflected as BLOB, which PostgreSQL calls bytea
        return "sa.LargeBinary()"
    return False


def _schema_exists(connection: Connection, service: str) -> bool:
    found = connection.execute(
        text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"),
        {"name": service},
    )
    return found.first() is not None


def _lock_key(service: str) -> int:
    return zlib.crc32(service.encode()) & 0x7FFFFFFF


def _known(service: str) -> str:
    if service not in SERVICES:
        raise MigrationError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    return service


def _revisions(revisions: set[str]) -> str:
    return ", ".join(sorted(revisions)) or "none"


def _describe(diff: Any) -> str:
    """One line per difference autogenerate found, e.g. 'add_column pairs.program_id'."""
    if isinstance(diff, list):
        return "; ".join(_describe(change) for change in diff)
    kind = diff[0]
    if kind == "modify_primary_key":
        _, table, found, wanted = diff
        return f"modify_primary_key {table}: ({', '.join(found)}) -> ({', '.join(wanted)})"
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, found, wanted = diff
        return f"{kind} {table}.{column}: {found!r} -> {wanted!r}"
    if kind in ("add_column", "remove_column"):
        _, _schema, table, column = diff
        return f"{kind} {table}.{column.name}"
    target = diff[1]
    if isinstance(target, Table):
        return f"{kind} {target.name}"
    columns = ", ".join(column.name for column in getattr(target, "columns", ()))
    table = getattr(getattr(target, "table", None), "name", "?")
    return f"{kind} {target.name or '(unnamed)'} on {table} ({columns})"


def _format_with_ruff(path: Path) -> None:
    """A new revision passes `ruff format` and `ruff check` like the rest of the tree."""
    beside_python = Path(sys.executable).with_name("ruff")
    ruff = str(beside_python) if beside_python.exists() else shutil.which("ruff")
    if ruff is None:
        return  # a deployment without the test tools: the revision is still valid Python
    subprocess.run([ruff, "format", "--quiet", str(path)], check=False)
    subprocess.run([ruff, "check", "--fix", "--quiet", str(path)], check=False)


# --- primary keys: autogenerate does not compare them, and program isolation changes them ----


class ReplacePrimaryKeyOp(ops.MigrateOperation):
    """A table whose primary key columns differ between the database and the models."""

    def __init__(self, table: str, columns: list[str], previous: list[str]) -> None:
        self.table = table
        self.columns = columns
        self.previous = previous

    def reverse(self) -> ReplacePrimaryKeyOp:
        """The operation that puts the previous key back (for downgrade)."""
        return ReplacePrimaryKeyOp(self.table, self.previous, self.columns)

    def to_diff_tuple(self) -> tuple[str, str, list[str], list[str]]:
        """The difference as compare_metadata reports it."""
        return ("modify_primary_key", self.table, self.previous, self.columns)


@comparators.dispatch_for("table")
def _compare_primary_key(
    autogen_context: AutogenContext,
    modify_table_ops: ops.ModifyTableOps,
    schema: str | None,
    table: str,
    found: Table | None,
    wanted: Table | None,
) -> None:
    """Adds a ReplacePrimaryKeyOp when an existing table's key columns are not the model's."""
    if found is None or wanted is None:
        return
    previous = [column.name for column in found.primary_key.columns]
    columns = [column.name for column in wanted.primary_key.columns]
    if previous != columns:
        modify_table_ops.ops.append(ReplacePrimaryKeyOp(table, columns, previous))


@renderers.dispatch_for(ReplacePrimaryKeyOp)
def _render_replace_primary_key(autogen_context: AutogenContext, op: ReplacePrimaryKeyOp) -> str:
    """The revision's line: replace_primary_key(batch_op, [...]) inside the table's batch."""
    autogen_context.imports.add("from shared.migrations import replace_primary_key")
    call = f"replace_primary_key(batch_op, {op.columns!r})"
    if getattr(autogen_context, "_has_batch", False):
        return call
    return f"with op.batch_alter_table({op.table!r}) as batch_op:\n    {call}"


def replace_primary_key(batch_op: BatchOperations, columns: list[str]) -> None:
    """Makes `columns` the primary key of the batch's table, on SQLite and PostgreSQL alike."""
    table: str = batch_op.impl.table_name  # type: ignore[union-attr]
    name = inspect(batch_op.get_bind()).get_pk_constraint(table).get("name")
    if name:
        batch_op.drop_constraint(name, type_="primary")
    elif batch_op.get_bind().dialect.name == "sqlite":
        # SQLite's key has no name to drop; the copied table takes the new key and SQLAlchemy
        # warns that the old columns were flagged primary_key
        warnings.filterwarnings(
            "ignore",
            message=rf"Table .(_alembic_tmp_)?{table}. specifies columns",
            category=SAWarning,
        )
    batch_op.create_primary_key(name or f"{table}_pkey", columns)
