"""The Kafka broker (KRaft, one node with both roles) and the Kafka Connect worker (distributed mode)."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from cdc.errors import StackError
from cdc.stack import process, tools
from cdc.stack.state import Layout

POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JDBC_SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"

_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


@dataclass(frozen=True)
class JavaService:
    name: str  # "kafka" or "connect"
    directory: Path
    main_class: str
    heap: str

    @property
    def config(self) -> Path:
        return self.directory / f"{self.name}.properties"

    @property
    def pidfile(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    @property
    def marker(self) -> str:
        # The config path is unique to this stack: another Kafka on the machine is never touched.
        return str(self.config)

    def pid(self) -> int | None:
        return process.read_pid(self.pidfile)

    def running(self) -> bool:
        return process.is_running(self.pid(), self.marker)


def broker(lay: Layout) -> JavaService:
    return JavaService("kafka", lay.kafka_dir, "kafka.Kafka", "768m")


def worker(lay: Layout) -> JavaService:
    return JavaService("connect", lay.connect_dir, "org.apache.kafka.connect.cli.ConnectDistributed", "1g")


# The KRaft authorizer; docker-compose.yml names the same (tests/unit/test_versions.py).
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def write_broker_config(svc: JavaService, *, port: int, controller_port: int) -> None:
    data = svc.directory / "data"
    _write(
        svc,
        f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
# ACLs are enforced (what a production cluster does) but allow all until one is set: tests deny a
# group or topic to see that cdc stops on Kafka's refusal.
authorizer.class.name={AUTHORIZER}
allow.everyone.if.no.acl.found=true
""",
    )


def write_worker_config(svc: JavaService, *, bootstrap: str, port: int, plugins: Path) -> None:
    _write(
        svc,
        f"""bootstrap.servers={bootstrap}
group.id=cdc-connect
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
config.storage.topic=cdc-connect-configs
offset.storage.topic=cdc-connect-offsets
status.storage.topic=cdc-connect-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
# Debezium confirms its WAL position to Postgres only when Connect flushes offsets.
offset.flush.interval.ms=1000
listeners=http://127.0.0.1:{port}
rest.advertised.host.name=127.0.0.1
rest.advertised.port={port}
plugin.path={plugins}
# Connector configs may reference secrets (${{file:...}} / ${{env:...}}) that only the worker resolves.
config.providers=file,env
config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider
config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider
""",
    )


def _write(svc: JavaService, properties: str) -> None:
    svc.directory.mkdir(parents=True, exist_ok=True)
    svc.config.write_text(properties)
    (svc.directory / "log4j2.properties").write_text(_LOG4J2)


def format_storage(svc: JavaService, lay: Layout, cluster_id: str) -> None:
    if (svc.directory / "data" / "meta.properties").exists():
        return
    proc = subprocess.run(
        [
            str(tools.java()),
            "-cp",
            f"{lay.kafka_libs}/*",
            f"-Dlog4j2.configurationFile={svc.directory / 'log4j2.properties'}",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(svc.config),
            "-g",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"formatting Kafka's log directory failed:\n{proc.stdout}{proc.stderr}")


def start(svc: JavaService, lay: Layout) -> None:
    if svc.running():
        return
    process.spawn(
        [
            str(tools.java()),
            f"-Xms{svc.heap}",
            f"-Xmx{svc.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={svc.directory / 'log4j2.properties'}",
            "-cp",
            f"{lay.kafka_libs}/*",
            svc.main_class,
            str(svc.config),
        ],
        log=svc.log,
        pidfile=svc.pidfile,
        cwd=svc.directory,
    )


def stop(svc: JavaService) -> bool:
    return process.stop(svc.pid(), svc.marker, sig=signal.SIGTERM, timeout=60)


@contextmanager
def _quiet_kafka_client() -> Iterator[None]:
    # kafka-python logs every refused connection at ERROR while the broker is still starting.
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def broker_answers(bootstrap: str, timeout_ms: int = 3000) -> bool:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with _quiet_kafka_client():
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                request_timeout_ms=timeout_ms,
                api_version_auto_timeout_ms=timeout_ms,
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
        except (KafkaError, OSError):
            return False
        else:
            return True
        finally:
            admin.close()


def wait_broker(svc: JavaService, bootstrap: str, timeout: float = 90) -> None:
    _wait(lambda: broker_answers(bootstrap), svc, "answer metadata requests", timeout)


def connect_answers(url: str, plugin: str = POSTGRES_CONNECTOR_CLASS) -> bool:
    try:
        plugins = httpx.get(f"{url}/connector-plugins", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(plugins, list) and any(p.get("class") == plugin for p in plugins)


def wait_worker(svc: JavaService, url: str, timeout: float = 180) -> None:
    _wait(lambda: connect_answers(url), svc, "serve its REST API with the Debezium plugin", timeout)


def _wait(check: Callable[[], bool], svc: JavaService, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if not svc.running():
            raise StackError(f"{svc.name} exited during start-up.", f"read its log: {svc.log}")
        if time.monotonic() > deadline:
            raise StackError(f"{svc.name} did not {what} within {timeout:.0f}s.", f"read its log: {svc.log}")
        time.sleep(0.5)
