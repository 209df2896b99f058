"""`cdc connector apply|status`: render the Debezium source config and drive it through Connect."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from sqlalchemy.engine import make_url

from cdc import capture
from cdc.connect_api import ConnectClient, ConnectorState
from cdc.errors import CdcError, ConfigError, ConnectorError, NotFoundError
from cdc.events import DDL_TABLE, TableId
from cdc.resources import repo_file
from cdc.settings import Settings

DEFAULT_CONFIG = ("connectors", "postgres-source.json")
POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"


@dataclass(frozen=True)
class ApplyReport:
    name: str
    tables: list[capture.SourceTable]
    replica_identity_full: list[capture.SourceTable]
    snapshot_requested: list[capture.SourceTable]
    state: ConnectorState


class _Placeholders(Template):
    """Only `${name}` is a placeholder (and `$$` a literal `$`): a bare `$`, as in a RegexRouter's
    `$1` or a regex ending in `$`, stays as it is."""

    pattern = r"\$(?:(?P<escaped>\$)|\{(?P<braced>[_a-z][_a-z0-9]*)\}|(?P<named>(?!))|(?P<invalid>(?!)))"  # type: ignore[assignment]


def template_vars(settings: Settings, tables: list[capture.SourceTable]) -> dict[str, str]:
    secret = settings.connect_source_url or settings.source_url
    url = make_url(secret.get_secret_value() if secret else settings.require_source_url())
    return {
        "connector_name": settings.connector_name,
        "source_host": url.host or "localhost",
        "source_port": str(url.port or 5432),
        "source_user": url.username or "",
        "source_password": settings.connect_password_ref or _password(url.password),
        "source_database": url.database or "",
        "topic_prefix": settings.topic_prefix,
        "slot_name": settings.slot_name,
        "publication_name": settings.publication_name,
        "table_include_list": capture.include_list(tables),
        "topic_partitions": str(settings.topic_partitions),
        # The source's DDL log keeps one partition whatever CDC_TOPIC_PARTITIONS says: its order is
        # the order of the DDL, and one member of the group reads all of it.
        "ddl_log_topic": capture.java_regex_literal(f"{settings.topic_prefix}.{DDL_TABLE}"),
    }


def _password(value: object) -> str:
    return value if isinstance(value, str) else ""


def render(path: Path, variables: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(name, config) from a file in Connect's {"name", "config"} form or a bare config map.
    `${var}` placeholders are filled value by value, so no value can break the JSON."""
    try:
        raw: Any = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"cannot read connector config {path}: {exc}.",
            "name a readable JSON file holding the connector's config (connectors/postgres-source.json is the one "
            "cdc ships), or omit FILE to use it",
        ) from exc
    config = raw.get("config", raw) if isinstance(raw, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path} holds no connector config object.",
            'write it as {"name": ..., "config": {...}} or as the config object alone '
            "(like connectors/postgres-source.json)",
        )

    def fill(value: object, where: str) -> str:
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{path}: {where} must be a string, number or boolean, not {value!r}.")
        try:
            return _Placeholders(value).substitute(variables)
        except KeyError as exc:
            raise ConfigError(
                f"{path}: {where} uses the unknown placeholder ${{{exc.args[0]}}}.",
                f"use one of: {', '.join(sorted(variables))}",
            ) from None

    name = fill(raw.get("name", config.get("name", variables["connector_name"])), "name")
    rendered = {str(k): fill(v, str(k)) for k, v in config.items()}
    rendered["name"] = name  # Connect's validation requires it inside the config too
    return name, rendered


def apply(settings: Settings, path: Path | None, say: Callable[[str], None]) -> ApplyReport:
    path = path or repo_file(*DEFAULT_CONFIG)
    client = ConnectClient(settings.require_connect_url())
    conn = capture.connect(settings.require_source_url())
    try:
        capture.lock_apply(conn, say)
        capture.setup_source(conn)
        tables = capture.discover(conn, settings)
        check_names(settings, tables, say)
        # A table left out by a setting, or created where nothing captures it, must not go unnoticed.
        # Listed apart from discover, which alone decides (and lists again if a table goes meanwhile).
        for line in capture.describe(capture.survey(conn, settings)):
            say(line)
        variables = template_vars(settings, tables)
        name, config = render(path, variables)
        secret = _password(make_url(settings.require_source_url()).password)

        errors = client.validate(config)
        if errors:
            shown = "\n".join(f"  - {_redact(e, secret)}" for e in errors)
            raise ConnectorError(
                f"Kafka Connect found {len(errors)} problem(s) in connector {name} ({path}):\n{shown}",
                "correct the config (or the settings it is rendered from) and apply again",
            )
        is_source = config.get("connector.class") == POSTGRES_CONNECTOR
        previous = client.config(name)
        existed = previous is not None
        changed = previous != config
        walsender = capture.slot_walsender(conn, settings.slot_name)
        full: list[capture.SourceTable] = []
        added: list[capture.SourceTable] = []
        ddl_log_added = False
        if is_source:
            full = capture.ensure_replica_identity(conn, tables)
            for table in full:
                say(f"set REPLICA IDENTITY FULL on {table.qualified} (it has no primary key)")
            change, tables = capture.sync_publication_retrying(conn, settings, tables)
            added = [t for t in change.added if not t.internal]
            ddl_log_added = any(
                (t.schema, t.name) == (capture.INTERNAL_SCHEMA, capture.DDL_TABLE) for t in change.added
            )
            for gone in change.removed:
                say(f"no longer captured: {gone}")

        client.put_config(name, config)  # a changed config restarts the connector and its tasks
        if not changed and client.status(name).failed:
            client.restart(name)
        state = client.wait_running(name)
        if is_source and existed and changed:
            # Until the old task has let go of the slot it may still read new WAL with the old
            # table list; a snapshot signal it read would be lost.
            capture.wait_new_walsender(conn, settings.slot_name, walsender)

        # Rows already in a table captured from now on: Debezium's initial snapshot ran long ago.
        snapshot = [t for t in added if existed and t.has_primary_key and capture.has_rows(conn, t)]
        if snapshot:
            capture.request_snapshot(conn, snapshot)
            say("incremental snapshot requested for " + ", ".join(t.qualified for t in snapshot))
        for table in (t for t in added if existed and not t.has_primary_key and capture.has_rows(conn, t)):
            say(
                f"{table.qualified} has no primary key: Debezium cannot snapshot it incrementally; its new "
                f"changes are captured, and its existing rows are copied by: cdc backfill {table.qualified}"
            )
        if ddl_log_added:
            capture.open_ddl_log(conn)
        return ApplyReport(name, tables, full, snapshot, state)
    finally:
        conn.close()
        client.close()


def check_names(settings: Settings, tables: list[capture.SourceTable], say: Callable[[str], None]) -> None:
    """Two captured tables that sync would replicate into one warehouse table: an error now, before
    the connector captures them. Names given before (cdc.table_map) count when it can be read."""
    from cdc.warehouse import naming
    from cdc.warehouse.ledger import read_table_map
    from cdc.warehouse.statements import Target

    existing: dict[TableId, Target] = {}
    if settings.warehouse_url is not None:
        try:
            existing = read_table_map(settings.require_warehouse_url(), settings.warehouse_schema)
        except CdcError as exc:
            say(
                f"could not read cdc.table_map in the warehouse ({exc.problem}); warehouse table names are "
                "checked by CDC_TABLE_NAME_FORMAT alone"
            )
    captured = [TableId(t.schema, t.name) for t in tables if not t.internal]
    naming.plan(captured, settings.warehouse_schema, settings.table_name_format, existing)


def resnapshot(settings: Settings, say: Callable[[str], None]) -> ConnectorState:
    """Stop the connector, forget its committed offsets and resume it: Debezium takes a new initial
    snapshot of every captured table and streams from the slot as it is now. The repair once its
    slot was lost or recreated (Debezium then refuses its old offsets: "... no longer available on
    the server"); rows deleted meanwhile are not in any snapshot, which `cdc verify --fix` repairs."""
    name = settings.connector_name
    client = ConnectClient(settings.require_connect_url())
    try:
        if client.status(name).state == "MISSING":
            raise NotFoundError(f"Kafka Connect has no connector named {name!r}.", "cdc connector apply")
        client.stop(name)
        deadline = time.monotonic() + 60
        while client.status(name).state != "STOPPED":
            if time.monotonic() > deadline:
                raise ConnectorError(f"connector {name} did not stop within 60 s.", "see the Connect worker's log")
            time.sleep(0.3)
        client.reset_offsets(name)
        say(f"connector {name}: stopped, its offsets forgotten; resuming with a new snapshot")
        client.resume(name)
        return client.wait_running(name)
    finally:
        client.close()


def status(settings: Settings) -> tuple[ConnectorState, dict[str, str] | None]:
    client = ConnectClient(settings.require_connect_url())
    try:
        return client.status(settings.connector_name), client.config(settings.connector_name)
    finally:
        client.close()


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
