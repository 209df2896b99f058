"""Operator mistakes and failures on the real stack: each ends `cdc` with its documented exit
status and a message naming the problem and the fix, within seconds, with no traceback and no
secret; transient failures are retried with their cause in every retry line; SIGTERM during a
retry stops sync at once. (The mistakes caught before connecting are in tests/unit/test_bad_input.py.)"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from psycopg2 import sql
from sqlalchemy.engine import make_url

from cdc.errors import EXIT_CONFIG, EXIT_FAILURE
from cdc.resources import cdc_command
from cdc.settings import Settings
from tests.db import drop_database, execute, query
from tests.processes import apply_connector, log_of, wait_for_log
from tests.syncing import REPO, Lane, stopped_counts, sync_env, target_of, wait_for_events
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.stack, pytest.mark.serial]

TRACEBACK = "Traceback"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with(url: str, **parts: str | int) -> str:
    return make_url(url).set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    env: Callable[[Settings], dict[str, str]]
    status: int
    problem: str  # a regex the `error:` line matches
    fix: str  # the `fix:` line holds this
    seconds: float = 15  # it must end this fast
    retried: str | None = None  # a regex some retry line before the end matches
    secrets: Callable[[Settings], list[str]] = field(default=lambda s: [])


def _passwords(stack: Settings) -> list[str]:
    return [make_url(u).password or "" for u in (stack.require_source_url(), stack.require_warehouse_url())]


CASES = [
    Case(
        "warehouse-wrong-password",
        ["sync", "--until-idle", "3"],
        lambda s: {"CDC_WAREHOUSE_URL": _with(s.require_warehouse_url(), password="not-the-password")},
        EXIT_CONFIG,
        r'^error: cannot connect to the warehouse \(28P01\): password authentication failed for user "cdc"$',
        "correct the password in CDC_WAREHOUSE_URL",
        secrets=lambda s: [*_passwords(s), "not-the-password"],
    ),
    Case(
        "warehouse-unknown-database",
        ["sync", "--until-idle", "3"],
        lambda s: {"CDC_WAREHOUSE_URL": _with(s.require_warehouse_url(), database="no_such_db")},
        EXIT_CONFIG,
        r'^error: cannot connect to the warehouse \(3D000\): database "no_such_db" does not exist$',
        "correct the database name in CDC_WAREHOUSE_URL, or create it",
        secrets=_passwords,
    ),
    Case(
        "warehouse-unknown-role",
        ["dlq", "list"],
        lambda s: {"CDC_WAREHOUSE_URL": _with(s.require_warehouse_url(), username="nobody_here")},
        EXIT_CONFIG,
        r"^error: cannot connect to the warehouse \(28[0-9P]{3}\): ",
        "CDC_WAREHOUSE_URL",
        secrets=_passwords,
    ),
    Case(
        "source-wrong-password",
        ["connector", "apply"],
        lambda s: {"CDC_SOURCE_URL": _with(s.require_source_url(), password="not-the-password")},
        EXIT_CONFIG,
        r'^error: cannot connect to the source \(28P01\): password authentication failed for user "cdc"$',
        "correct the password in CDC_SOURCE_URL",
        secrets=lambda s: [*_passwords(s), "not-the-password"],
    ),
    Case(
        "source-unknown-database",
        ["demo", "seed"],
        lambda s: {"CDC_SOURCE_URL": _with(s.require_source_url(), database="no_such_db")},
        EXIT_CONFIG,
        r'^error: cannot connect to the source \(3D000\): database "no_such_db" does not exist$',
        "correct the database name in CDC_SOURCE_URL",
        secrets=_passwords,
    ),
    Case(
        "warehouse-host-does-not-resolve",
        ["sync", "--until-idle", "3"],
        lambda s: {"CDC_WAREHOUSE_URL": _with(s.require_warehouse_url(), host="no-such-host.invalid")},
        EXIT_CONFIG,
        r'^error: cannot connect to the warehouse: could not translate host name "no-such-host.invalid"',
        "correct the host name in CDC_WAREHOUSE_URL",
        secrets=_passwords,
    ),
    Case(
        "warehouse-unreachable-retried-then-given-up",
        ["sync", "--until-idle", "3"],
        lambda s: {
            "CDC_WAREHOUSE_URL": _with(s.require_warehouse_url(), port=_closed_port()),
            "CDC_RETRY_MAX_SECONDS": "2",
        },
        EXIT_FAILURE,
        r"^error: the warehouse failed while connecting \(connection to server at \"127\.0\.0\.1\", port \d+ failed: "
        r"Connection refused",
        "check that the warehouse PostgreSQL is up and reachable at CDC_WAREHOUSE_URL",
        retried=r"connecting to the warehouse failed \(attempt 1\): the warehouse failed while connecting "
        r"\(.*Connection refused.*\); retrying in",
        secrets=_passwords,
    ),
    Case(
        "kafka-host-does-not-resolve",
        ["sync", "--until-idle", "3"],
        lambda s: {"CDC_KAFKA_BOOTSTRAP_SERVERS": "no-such-broker.invalid:9092"},
        EXIT_CONFIG,
        r"^error: no host in CDC_KAFKA_BOOTSTRAP_SERVERS=no-such-broker\.invalid:9092 resolves \(no-such-broker",
        "correct the broker host names in CDC_KAFKA_BOOTSTRAP_SERVERS",
    ),
    Case(
        "kafka-unreachable-retried-then-given-up",
        ["sync", "--until-idle", "3"],
        lambda s: {"CDC_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}", "CDC_RETRY_MAX_SECONDS": "3"},
        EXIT_FAILURE,
        r"^error: cannot reach Kafka at 127\.0\.0\.1:\d+ \(NoBrokersAvailable\)$",
        "check CDC_KAFKA_BOOTSTRAP_SERVERS and that the broker is up",
        retried=r"connecting to Kafka failed \(attempt 1\): cannot reach Kafka at 127\.0\.0\.1:\d+ "
        r"\(NoBrokersAvailable\); retrying in",
    ),
    Case(
        "kafka-unreachable-confluent",
        ["sync", "--until-idle", "3"],
        lambda s: {
            "CDC_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
            "CDC_RETRY_MAX_SECONDS": "6",
            "CDC_KAFKA_CLIENT": "confluent",
        },
        EXIT_FAILURE,
        r"^error: cannot reach Kafka at 127\.0\.0\.1:\d+ \(_TRANSPORT: ",
        "check CDC_KAFKA_BOOTSTRAP_SERVERS and that the broker is up",
        seconds=25,  # each attempt waits out librdkafka's metadata request (5 s)
        retried=r"connecting to Kafka failed \(attempt 1\): cannot reach Kafka at 127\.0\.0\.1:\d+ \(_TRANSPORT",
    ),
    Case(
        "connect-unreachable",
        ["connector", "status"],
        lambda s: {"CDC_CONNECT_URL": f"http://127.0.0.1:{_closed_port()}"},
        EXIT_FAILURE,
        r"^error: Kafka Connect at http://127\.0\.0\.1:\d+ did not answer \(ConnectError\)\.$",
        "CDC_CONNECT_URL",
    ),
    Case(
        "connector-that-does-not-exist",
        ["connector", "status"],
        lambda s: {"CDC_CONNECTOR_NAME": "no-such-connector"},
        EXIT_FAILURE,
        r"^error: Kafka Connect has no connector named 'no-such-connector'\.$",
        "create it with: cdc connector apply (or correct CDC_CONNECTOR_NAME)",
    ),
    Case(
        "connector-file-that-is-not-json",
        ["connector", "apply", "README.md"],
        lambda s: {},
        EXIT_CONFIG,
        r"^error: cannot read connector config README\.md: Expecting value: line 1 column 1",
        "name a readable JSON file holding the connector's config",
    ),
    Case(
        "dlq-replay-of-an-unknown-id",
        ["dlq", "replay", "--id", "2147483000"],
        lambda s: {"CDC_CONSUMER_GROUP": f"g_bad_{uuid.uuid4().hex[:8]}"},
        EXIT_FAILURE,
        r"^error: no dead letter of group g_bad_\w+ has id 2147483000\.$",
        "list them with: cdc dlq list --all",
    ),
]


def _env(stack: Settings, **extra: str) -> dict[str, str]:
    return sync_env(stack, Lane.new("bad"), **extra)


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [*cdc_command(), *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_refusal_or_an_outage_ends_with_its_status_and_fix(stack: Settings, case: Case) -> None:
    status, output, seconds = _run(case.argv, _env(stack, **case.env(stack)), case.seconds)

    assert status == case.status, output
    lines = output.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert re.search(case.problem, errors[0]), errors[0]
    fix = next(line for line in lines[lines.index(errors[0]) :] if line.startswith("fix: "))
    assert case.fix in fix, fix
    assert seconds < case.seconds, f"took {seconds:.1f}s"
    if case.retried is not None:
        assert any(re.search(case.retried, line) for line in lines), output
    assert TRACEBACK not in output
    for secret in case.secrets(stack):
        assert secret not in output


@pytest.fixture
def database_without_create(warehouse_url: str) -> Iterator[str]:
    """A warehouse database in which the role of the URL may connect but not create schemas (its
    owner revoked that from itself: the stack's role may not create roles)."""
    name = f"noperm_{uuid.uuid4().hex[:8]}"
    execute(warehouse_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    execute(warehouse_url, sql.SQL("REVOKE CREATE ON DATABASE {} FROM CURRENT_USER").format(sql.Identifier(name)))
    yield name
    drop_database(warehouse_url, name)


def test_a_role_without_the_privilege_is_told_what_to_grant(stack: Settings, database_without_create: str) -> None:
    url = _with(stack.require_warehouse_url(), database=database_without_create)
    status, output, seconds = _run(["sync", "--until-idle", "3"], _env(stack, CDC_WAREHOUSE_URL=url), 15)

    assert status == EXIT_CONFIG, output
    assert re.search(
        r"^error: the warehouse's role may not do this, while creating cdc's tables and schema 'wh_bad_\w+': "
        rf"42501: ERROR:  permission denied for database {database_without_create}$",
        output,
        re.MULTILINE,
    ), output
    assert "fix: grant the privilege named above to the role of CDC_WAREHOUSE_URL" in output
    assert seconds < 15
    assert TRACEBACK not in output


@pytest.mark.both_clients
def test_a_table_pattern_that_matches_nothing_is_named_with_what_is_captured(
    stack: Settings, kafka_client: str
) -> None:
    env = _env(stack, CDC_KAFKA_CLIENT=kafka_client)
    status, output, _ = _run(["sync", "--table", "nomatch_x.*", "--until-idle", "2"], env, 60)

    assert status == 0, output
    warnings = [line for line in output.splitlines() if "matches no captured table" in line]
    assert len(warnings) == 1, output
    assert re.search(
        r"WARNING cdc\.sync: --table 'nomatch_x\.\*' matches no captured table: no topic cdc\.<schema>\.<table> "
        r"that cdc may read matches it \(Kafka hides the topics an ACL denies\); captured: \S+",
        warnings[0],
    ), warnings[0]
    assert stopped_counts(output) == {"events": 0, "rows": 0, "skipped": 0, "dead": 0}
    (stopped,) = [line for line in output.splitlines() if line.startswith("sync stopped: ")]
    # The source's DDL log, once `cdc schema install` made it, is read whatever the patterns. Its
    # position is counted as stored with either client (confluent-kafka's close revokes the
    # assignment: counted after that, it read "no partition was assigned").
    ddl_log = "DDL capture is not installed" not in output
    read = (
        "all that was read is stored, with the offsets of its 1 partition(s)"
        if ddl_log
        else "no partition was assigned"
    )
    assert stopped.endswith(f"0 dead letters; {read}"), stopped


# -- a stop asked for during a retry ---------------------------------------------------------


@pytest.fixture
def filled_lane(stack: Settings, lane: Lane) -> Lane:
    """The lane's one captured table, holding 3000 rows already in Kafka."""
    url = stack.require_source_url()
    execute(url, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(lane.source_schema)))
    table = sql.Identifier(lane.source_schema, "items")
    execute(url, sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text NOT NULL)").format(table))
    apply_connector(stack)
    execute(url, sql.SQL("INSERT INTO {} SELECT i, 'item ' || i FROM generate_series(1, 3000) i").format(table))
    wait_for_events(stack, lane.source_schema, "items", 3000)
    return lane


def test_sigterm_during_a_flush_retry_stops_within_2_seconds(
    stack: Settings, filled_lane: Lane, tmp_path: Path
) -> None:
    lane = filled_lane
    warehouse = make_url(stack.require_warehouse_url())
    proxy = TcpProxy(warehouse.host or "127.0.0.1", warehouse.port or 5432)
    log = tmp_path / "sync.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cdc_command(), "sync", "--table", f"{lane.source_schema}.*"],
            env=sync_env(
                stack,
                lane,
                CDC_WAREHOUSE_URL=_with(stack.require_warehouse_url(), port=proxy.port),
                CDC_FLUSH_ROWS="500",
            ),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # its table's partition, and the source's DDL log's once `cdc schema install` made it
        wait_for_log(log, proc, lambda text: re.search(r"assigned \d+ partitions", text) is not None, timeout=60)
        proxy.cut()  # the warehouse is gone: the flushes of what is read now fail and are retried
        # after the fourth attempt the retry waits 4-5 s: a stop must not wait it out
        wait_for_log(log, proc, lambda text: "failed (attempt 4)" in text, timeout=60)
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
        seconds = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_of(log)
    assert status == 0, text[-3000:]
    assert seconds < 2, f"stopped {seconds:.2f}s after SIGTERM"
    retries = [line for line in text.splitlines() if "failed (attempt" in line]
    assert all("the warehouse failed while" in line for line in retries), retries
    last = text.strip().splitlines()[-1]
    assert re.fullmatch(
        r"sync stopped: \d+ events read, 0 rows written, 0 already applied, 0 dead letters; [12] partition\(s\) were "
        r"read past what the "
        r"warehouse holds: the next start reads them again from there",
        last,
    ), last
    assert TRACEBACK not in text

    # Nothing was lost: the next run, straight to the warehouse, stores all of it.
    done = subprocess.run(
        [*cdc_command(), "sync", "--table", f"{lane.source_schema}.*", "--until-idle", "3"],
        env=sync_env(stack, lane),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ((count, distinct),) = query(
        stack.require_warehouse_url(),
        sql.SQL("SELECT count(*), count(DISTINCT id) FROM {}").format(sql.Identifier(*target_of(stack, lane, "items"))),
    )
    assert (count, distinct) == (3000, 3000)


# -- Kafka's refusal -------------------------------------------------------------------------


@pytest.fixture
def denied_group(stack: Settings, lane: Lane) -> Iterator[str]:
    """A consumer group the broker denies (an ACL on the stack's broker, which enforces ACLs), and
    a change topic of the lane for it to subscribe to; both removed afterwards."""
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        NewTopic,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )

    group, topic = f"{lane.group}_denied", f"{stack.topic_prefix}.{lane.source_schema}.items"
    pattern = ResourcePattern(ResourceType.GROUP, group, ACLResourcePatternType.LITERAL)
    admin = KafkaAdminClient(bootstrap_servers=stack.require_kafka())
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        created = admin.create_acls([ACL("User:ANONYMOUS", "*", ACLOperation.ALL, ACLPermissionType.DENY, pattern)])
        assert not created["failed"], (
            f"{created}: a broker started before the stack enforced ACLs refuses them; restart it: "
            "cdc stack down && cdc stack up"
        )
        yield group
    finally:
        admin.delete_acls(
            [
                ACLFilter(
                    None,
                    "*",
                    ACLOperation.ANY,
                    ACLPermissionType.ANY,
                    ResourcePatternFilter(ResourceType.GROUP, group, ACLResourcePatternType.LITERAL),
                )
            ]
        )
        admin.delete_topics([topic])
        admin.close()


@pytest.mark.both_clients
def test_a_consumer_group_kafka_denies_ends_sync_with_the_grant_to_make(
    stack: Settings, lane: Lane, denied_group: str
) -> None:
    status, output, seconds = _run(
        ["sync", "--table", f"{lane.source_schema}.*", "--group", denied_group, "--until-idle", "3"],
        sync_env(stack, lane),
        30,
    )

    assert status == EXIT_CONFIG, output
    error = next(line for line in output.splitlines() if line.startswith("error: "))
    expected = {
        "kafka-python": f"error: Kafka refused cdc: GroupAuthorizationFailedError ([Error 30] "
        f"GroupAuthorizationFailedError: {denied_group}).",
        "confluent": "error: Kafka refused cdc: GROUP_AUTHORIZATION_FAILED (FindCoordinator response error: "
        "Group authorization failed.).",
    }[lane.kafka_client]
    assert error == expected
    assert "fix: grant cdc's principal on the broker READ and DESCRIBE on the change topics, READ on its consumer " in (
        output
    )
    assert seconds < 30
    assert TRACEBACK not in output
