"""`cdc stack up | down | status | env`: start, stop and inspect the native local stack."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import psycopg2

from cdc import connector
from cdc.connect_api import ConnectClient
from cdc.errors import StackError
from cdc.settings import Settings
from cdc.stack import jars, kafka, postgres, state, tools
from cdc.stack.state import Layout, StackState
from cdc.warehouse import bootstrap

Say = Callable[[str], None]


@dataclass(frozen=True)
class Parts:
    source: postgres.Cluster
    warehouse: postgres.Cluster
    broker: kafka.JavaService
    worker: kafka.JavaService


def _parts(settings: Settings, lay: Layout, st: StackState, pg_bin: Path | None = None) -> Parts:
    """The stack's parts; pg_bin is needed only to init or start the clusters."""
    pg_bin = pg_bin or Path()
    root = Path(st.postgres_root)
    return Parts(
        source=postgres.Cluster("source", root, settings.stack_source_port, pg_bin, logical=True),
        warehouse=postgres.Cluster("warehouse", root, settings.stack_warehouse_port, pg_bin, logical=False),
        broker=kafka.broker(lay),
        worker=kafka.worker(lay),
    )


def _state(lay: Layout) -> StackState:
    existing = state.load_state(lay)
    if existing is not None:
        return existing
    fresh = StackState.new(postgres.clusters_root(lay.root))
    state.save_state(lay, fresh)
    return fresh


def up(settings: Settings, say: Say) -> None:
    # Name every missing tool before starting anything.
    tools.java()
    tools.maven()
    pg_bin = tools.postgres_bin(settings.stack_pg_bin)
    postgres.run_user()

    lay = state.layout(settings)
    st = _state(lay)
    parts = _parts(settings, lay, st, pg_bin)
    jars.ensure(lay, say=lambda line: say(f"  {line}"))

    for cluster in (parts.source, parts.warehouse):
        created = postgres.init(cluster)
        was_running = cluster.running()
        postgres.wait_ready(cluster, started=postgres.start(cluster))
        _say_part(say, f"postgres ({cluster.name})", was_running, f"127.0.0.1:{cluster.port}", created)
    postgres.ensure_database(
        parts.source,
        db=state.SOURCE_DB,
        user=state.DB_USER,
        password=st.source_password,
        replication=True,
    )
    postgres.ensure_database(
        parts.warehouse,
        db=state.WAREHOUSE_DB,
        user=state.DB_USER,
        password=st.warehouse_password,
        replication=False,
    )
    _bootstrap_warehouse(state.warehouse_url(settings, st))

    bootstrap = state.kafka_bootstrap(settings)
    kafka.write_broker_config(
        parts.broker, port=settings.stack_kafka_port, controller_port=settings.stack_controller_port
    )
    kafka.format_storage(parts.broker, lay, st.kafka_cluster_id)
    was_running = parts.broker.running()
    kafka.start(parts.broker, lay)
    kafka.wait_broker(parts.broker, bootstrap)
    _say_part(say, "kafka", was_running, bootstrap)

    url = state.connect_url(settings)
    state.write_connect_secrets(lay, st)
    kafka.write_worker_config(parts.worker, bootstrap=bootstrap, port=settings.stack_connect_port, plugins=lay.plugins)
    was_running = parts.worker.running()
    kafka.start(parts.worker, lay)
    kafka.wait_worker(parts.worker, url)
    _say_part(say, "kafka connect", was_running, url)

    resolved = load_settings_for_stack(settings)
    client = ConnectClient(url)
    try:
        current = client.status(resolved.connector_name)
    finally:
        client.close()
    if current.running:
        say(f"  connector {resolved.connector_name}: already RUNNING")
    else:
        report = connector.apply(resolved, None, lambda line: say(f"  {line}"))
        say(f"  connector {report.name}: {report.state.state} ({len(report.tables)} tables captured)")


def _say_part(say: Say, name: str, was_running: bool, where: str, created: bool = False) -> None:
    verb = "already running" if was_running else ("created and started" if created else "started")
    say(f"  {name}: {verb} on {where}")


def load_settings_for_stack(settings: Settings) -> Settings:
    """The settings with endpoints pointing at this stack, whatever the environment said."""
    defaults = state.stack_defaults(settings)
    return settings.model_copy(update=defaults)


def _bootstrap_warehouse(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            bootstrap.ensure(cur)
        conn.commit()
    finally:
        conn.close()


def down(settings: Settings, say: Say, *, wipe: bool) -> None:
    lay = state.layout(settings)
    st = state.load_state(lay)
    if st is None:
        say("no stack was set up here; nothing to stop")
        return
    parts = _parts(settings, lay, st)
    # Connect first, so Debezium flushes its offsets; Postgres last, since Debezium reads from it.
    stops: list[tuple[str, Callable[[], bool]]] = [
        ("kafka connect", lambda: kafka.stop(parts.worker)),
        ("kafka", lambda: kafka.stop(parts.broker)),
        ("postgres (warehouse)", lambda: postgres.stop(parts.warehouse)),
        ("postgres (source)", lambda: postgres.stop(parts.source)),
    ]
    for name, stop in stops:
        say(f"  {name}: {'stopped' if stop() else 'was not running'}")
    if wipe:
        for path in (lay.kafka_dir, lay.connect_dir, lay.logs, parts.source.root):
            shutil.rmtree(path, ignore_errors=True)
        lay.state_file.unlink(missing_ok=True)
        say(f"  data wiped (downloaded jars kept in {lay.root / 'lib'})")


@dataclass(frozen=True)
class PartStatus:
    name: str
    running: bool
    pid: int | None
    endpoint: str
    log: str


def _existing_state(settings: Settings) -> tuple[Layout, StackState]:
    lay = state.layout(settings)
    st = state.load_state(lay)
    if st is None:
        raise StackError(f"no native stack was set up under {lay.root}.", "start one with: cdc stack up")
    return lay, st


def status(settings: Settings) -> tuple[list[PartStatus], str]:
    """Each part's state, and the source connector's (or why it is unknown)."""
    lay, st = _existing_state(settings)
    parts = _parts(settings, lay, st)
    services: list[tuple[str, postgres.Cluster | kafka.JavaService, str]] = [
        ("postgres (source)", parts.source, f"127.0.0.1:{parts.source.port}"),
        ("postgres (warehouse)", parts.warehouse, f"127.0.0.1:{parts.warehouse.port}"),
        ("kafka", parts.broker, state.kafka_bootstrap(settings)),
        ("kafka connect", parts.worker, state.connect_url(settings)),
    ]
    rows = [PartStatus(name, svc.running(), svc.pid(), where, str(svc.log)) for name, svc, where in services]
    if not parts.worker.running():
        return rows, "unknown (Kafka Connect is not running)"
    client = ConnectClient(state.connect_url(settings))
    try:
        cs = client.status(settings.connector_name)
    finally:
        client.close()
    tasks = ", ".join(f"task {i} {s}" for i, s in cs.tasks)
    return rows, f"{cs.name}: {cs.state}" + (f" ({tasks})" if tasks else "")


def restart_postgres(settings: Settings, name: str, down_seconds: float = 0) -> None:
    """Stop one of the stack's PostgreSQL clusters ("source" or "warehouse"), wait, start it again."""
    lay, st = _existing_state(settings)
    parts = _parts(settings, lay, st, tools.postgres_bin(settings.stack_pg_bin))
    cluster = {"source": parts.source, "warehouse": parts.warehouse}[name]
    postgres.stop(cluster)
    time.sleep(down_seconds)
    postgres.wait_ready(cluster, started=postgres.start(cluster))


def env_lines(settings: Settings) -> list[str]:
    _, st = _existing_state(settings)
    return [
        f"export CDC_SOURCE_URL='{state.source_url(settings, st)}'",
        f"export CDC_WAREHOUSE_URL='{state.warehouse_url(settings, st)}'",
        f"export CDC_KAFKA_BOOTSTRAP_SERVERS='{state.kafka_bootstrap(settings)}'",
        f"export CDC_CONNECT_URL='{state.connect_url(settings)}'",
        f"export CDC_TOPIC_PREFIX='{settings.topic_prefix}'",
    ]


def source_superuser_url(settings: Settings) -> str:
    """The local stack's source database as its superuser, over the cluster's private unix socket
    (trusted there, never over TCP): for what only a superuser may do, such as `cdc schema install`."""
    stack_state = state.load_state(state.layout(settings))
    if stack_state is None:
        raise StackError(f"no local stack was set up under {settings.stack_dir}.", "start it with: cdc stack up")
    cluster = postgres.Cluster("source", Path(stack_state.postgres_root), settings.stack_source_port, Path(), True)
    where = urlencode({"host": str(cluster.socket_dir), "port": settings.stack_source_port})
    return f"postgresql://{postgres.SUPERUSER}@/{state.SOURCE_DB}?{where}"
