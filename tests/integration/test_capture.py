"""Rows changed in the source arrive in Kafka as the matching Debezium events (real stack)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdc import capture, connector
from cdc.settings import Settings
from tests.db import execute, query
from tests.kafka_reader import RawMessage, read_topic, settled

pytestmark = pytest.mark.stack


def payload(message: RawMessage) -> dict[str, Any] | None:
    return None if message.value is None else json.loads(message.value)["payload"]


@pytest.fixture
def schema(stack: Settings) -> Any:
    name = f"e2e_{uuid.uuid4().hex[:8]}"
    yield name
    execute(stack.require_source_url(), f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def stray(stack: Settings) -> Any:
    """A table in cdc's internal schema, as a search path with "$user" first once put pgbench's."""
    name = f"e2e_stray_{uuid.uuid4().hex[:8]}"
    execute(stack.require_source_url(), f"CREATE TABLE cdc.{name} (id integer PRIMARY KEY)")
    yield f"cdc.{name}"
    execute(stack.require_source_url(), f"DROP TABLE IF EXISTS cdc.{name}")


def not_captured(lines: list[str], reason: str) -> list[str]:
    """The names apply lists as not captured for reason (from its one `not captured (N tables): `
    line, groups `name, name (reason)` separated by `; `)."""
    (line,) = [line for line in lines if line.startswith("not captured (")]
    groups = line.split("): ", 1)[1].split("; ")
    found = [g.removesuffix(f" ({reason})") for g in groups if g.endswith(f" ({reason})")]
    return found[0].split(", ") if found else []


def test_insert_update_delete_truncate_arrive_as_debezium_events(stack: Settings, schema: str, stray: str) -> None:
    url = stack.require_source_url()
    execute(
        url,
        f"""CREATE SCHEMA {schema};
        CREATE TABLE {schema}.items (id integer PRIMARY KEY, name text NOT NULL, price numeric(10, 2));
        CREATE TABLE {schema}.preexisting (id integer PRIMARY KEY, note text);
        INSERT INTO {schema}.preexisting VALUES (1, 'before capture'), (2, 'also before');""",
    )
    said: list[str] = []
    report = connector.apply(stack, None, said.append)
    assert report.state.running
    assert {t.qualified for t in report.snapshot_requested} == {f"{schema}.preexisting"}
    # The table in cdc's own schema is named as not captured, with why; the lane's tables are not.
    assert stray in not_captured(said, "in cdc's internal schema")
    assert stray not in {t.qualified for t in report.tables}
    assert {f"{schema}.items", f"{schema}.preexisting"} <= {t.qualified for t in report.tables}

    execute(
        url,
        f"""INSERT INTO {schema}.items VALUES (1, 'apple', 1.25), (2, 'pear', 2.50), (3, 'fig', NULL);
        UPDATE {schema}.items SET price = 99999999.99, name = 'Äpfel 🍎' WHERE id = 1;
        DELETE FROM {schema}.items WHERE id = 2;
        TRUNCATE {schema}.items;""",
    )
    bootstrap = stack.require_kafka()
    items = read_topic(bootstrap, f"{stack.topic_prefix}.{schema}.items", done=settled(3, minimum=7))
    ops = [p["op"] if (p := payload(m)) else "tombstone" for m in items]
    assert ops == ["c", "c", "c", "u", "d", "tombstone", "t"]
    # extended.headers.enabled=false: none of Debezium's context headers, which nothing reads
    # and every consumer would parse (a primary-key change's __debezium.oldkey/newkey still come).
    assert [name for m in items for name, _ in m.headers] == []

    created = [payload(m) for m in items[:3]]
    assert [p["after"]["id"] for p in created if p] == [1, 2, 3]
    assert [p["after"]["name"] for p in created if p] == ["apple", "pear", "fig"]
    # decimal.handling.mode=string: the numeric's own text, trailing zeros and all.
    assert [p["after"]["price"] for p in created if p] == ["1.25", "2.50", None]

    updated = payload(items[3])
    assert updated is not None
    assert updated["after"]["name"] == "Äpfel 🍎"
    assert updated["after"]["price"] == "99999999.99"
    assert updated["source"]["schema"] == schema and updated["source"]["table"] == "items"
    assert updated["source"]["lsn"] > payload(items[0])["source"]["lsn"]  # type: ignore[index]

    deleted = payload(items[4])
    assert deleted is not None and deleted["before"]["id"] == 2 and deleted["after"] is None
    assert json.loads(items[4].key or b"null")["payload"] == {"id": 2}
    assert items[5].key == items[4].key  # the tombstone compacts away key 2

    truncated = payload(items[6])
    assert truncated is not None and truncated["before"] is None and truncated["after"] is None

    # Rows that existed before the table was captured arrive as incremental-snapshot reads.
    snap = read_topic(bootstrap, f"{stack.topic_prefix}.{schema}.preexisting", done=settled(2, minimum=2))
    reads = [p for m in snap if (p := payload(m))]
    assert [(p["op"], p["after"]["id"], p["after"]["note"]) for p in reads] == [
        ("r", 1, "before capture"),
        ("r", 2, "also before"),
    ]
    assert all(p["source"]["snapshot"] == "incremental" for p in reads)


def test_invalid_connector_config_prints_connects_errors(
    stack: Settings, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from cdc import cli
    from cdc.errors import EXIT_FAILURE

    bad = tmp_path / "bad.json"
    template = json.loads(connector.repo_file(*connector.DEFAULT_CONFIG).read_text())
    template["config"]["plugin.name"] = "no-such-decoder"
    template["config"]["name"] = "cdc-bad-config"
    template["name"] = "cdc-bad-config"
    bad.write_text(json.dumps(template))

    # Through cli.run, what the `cdc` script calls: errors are reported there.
    status = cli.run(["connector", "apply", str(bad)])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert status == EXIT_FAILURE
    assert "Kafka Connect found" in captured.err
    assert "plugin.name" in captured.err
    assert "fix:" in captured.err
    assert stack.source_url is not None
    password = connector.template_vars(stack, [])["source_password"]
    assert password not in output
    # Nothing was created for the rejected config.
    state, config = connector.status(stack.model_copy(update={"connector_name": "cdc-bad-config"}))
    assert state.state == "MISSING" and config is None


def test_include_and_exclude_settings_choose_the_captured_tables(stack: Settings, schema: str) -> None:
    url = stack.require_source_url()
    execute(
        url,
        f"""CREATE SCHEMA {schema};
        CREATE TABLE {schema}.keep_me (id integer PRIMARY KEY);
        CREATE TABLE {schema}.skip_me (id integer PRIMARY KEY);
        CREATE TABLE {schema}."Odd, name" (id integer PRIMARY KEY);""",
    )
    conn = capture.connect(url)
    try:
        only_schema = stack.model_copy(update={"include_schemas": schema, "exclude_tables": f"{schema}.skip_*"})
        chosen = [t.qualified for t in capture.discover(conn, only_schema)]
        # cdc's own tables are always captured; its DDL log too, once `cdc schema install` made it
        ddl_log = ["cdc.schema_ddl"] if query(url, "SELECT to_regclass('cdc.schema_ddl')")[0][0] else []
        assert chosen == [
            "cdc.debezium_heartbeat",
            "cdc.debezium_signal",
            *ddl_log,
            f"{schema}.Odd, name",
            f"{schema}.keep_me",
        ]
        everything = [t.qualified for t in capture.discover(conn, stack)]
        assert {f"{schema}.keep_me", f"{schema}.skip_me", f"{schema}.Odd, name"} <= set(everything)
        assert not any(name.startswith(("pg_catalog.", "information_schema.")) for name in everything)
    finally:
        conn.close()


def test_secrets_stay_out_of_logs_and_status_output(stack: Settings) -> None:
    from typer.testing import CliRunner

    from cdc.cli import app
    from cdc.stack import state

    lay = state.layout(stack)
    st = state.load_state(lay)
    assert st is not None, "these tests run against the native stack"
    runner = CliRunner()
    outputs = [runner.invoke(app, args).output for args in (["stack", "status"], ["connector", "status"])]
    assert "RUNNING" in outputs[1]
    # Every log, and Kafka's internal topics (Connect's configs among them), but not the change
    # topics' segments: they hold the tests' rows (gigabytes on a stack long in use), no setting.
    change_topics = f"{stack.topic_prefix}."
    logs = [
        p
        for p in [*lay.root.rglob("*.log"), *Path(st.postgres_root).rglob("*.log")]
        if not p.parent.name.startswith(change_topics)
    ]
    assert len(logs) >= 4
    assert any(p.parent.name.startswith("cdc-connect-configs") for p in logs), logs
    for secret in (st.source_password, st.warehouse_password):
        for text in outputs:
            assert secret not in text
        for log in logs:
            try:
                text = log.read_text(errors="replace")
            except FileNotFoundError:
                continue  # a segment Kafka deleted meanwhile (retention, a dropped topic)
            assert secret not in text, f"password found in {log}"
