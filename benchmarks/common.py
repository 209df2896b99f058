"""What the benchmarks share: the stack's endpoints, machine facts, process memory, Kafka and
warehouse helpers. Everything here talks to the local stack only."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
from sqlalchemy.engine import make_url

from cdc.settings import Settings
from cdc.stack.state import load_local_settings

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "results"
WORK = BENCH / ".work"  # logs, profiles, the JDBC sink's secret file (git-ignored)


@dataclass(frozen=True)
class Stack:
    settings: Settings
    source_url: str
    warehouse_url: str
    bootstrap: str
    connect_url: str
    topic_prefix: str

    @classmethod
    def load(cls) -> Stack:
        s = load_local_settings()
        return cls(
            s,
            s.require_source_url(),
            s.require_warehouse_url(),
            s.require_kafka(),
            s.require_connect_url(),
            s.topic_prefix,
        )

    def sync_env(self, **extra: str) -> dict[str, str]:
        """The environment of a `cdc sync` subprocess: this stack's endpoints, and `extra`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
        env |= {
            "CDC_STACK_DIR": str(self.settings.stack_dir.resolve()),
            "CDC_SOURCE_URL": self.source_url,
            "CDC_WAREHOUSE_URL": self.warehouse_url,
            "CDC_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CDC_CONNECT_URL": self.connect_url,
            "CDC_TOPIC_PREFIX": self.topic_prefix,
        }
        return env | extra


# -- processes -------------------------------------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def cluster_cpu_seconds(url: str) -> float:
    """CPU seconds a PostgreSQL cluster on this machine has used: its postmaster's own and reaped
    children's (backends that have exited), and its live children's (the others)."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            (backend,) = cur.fetchone() or (0,)
        fields = _stat(backend)
    finally:
        conn.close()
    if fields is None:
        raise RuntimeError(f"PostgreSQL at {url.rsplit('@', maxsplit=1)[-1]} does not run on this machine")
    postmaster = int(fields[1])
    own = _stat(postmaster) or []
    ticks = sum(int(own[i]) for i in (11, 12, 13, 14)) if own else 0  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = _stat(int(entry.name))
            if child is not None and int(child[1]) == postmaster:
                ticks += int(child[11]) + int(child[12])
    return ticks / _TICKS


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children (the cdc commands it ran)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU of a process (all its threads), and with reaped of its children that
    ended, in seconds; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_part(stack: Stack, sync_pid: int | None = None) -> dict[str, float]:
    """CPU seconds used so far by each part of the machine: cdc sync, each PostgreSQL cluster
    (postmaster and every child), the Kafka broker, Kafka Connect, and the whole machine. Read
    twice around a measurement, the difference says where each core-second of it went."""
    parts: dict[str, float] = {}
    if sync_pid is not None:
        parts["cdc sync"] = _cpu_seconds(sync_pid)
    data = stack.settings.stack_dir / "postgres"
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    for cluster in ("source", "warehouse"):
        try:
            postmaster = int((data / cluster / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        live = sum(_cpu_seconds(p) for p in children.get(postmaster, []))
        parts[f"PostgreSQL ({cluster})"] = _cpu_seconds(postmaster, reaped=True) + live
    for name, main_class in (("Kafka broker", "kafka.Kafka"), ("Kafka Connect", "ConnectDistributed")):
        for pid in children.get(1, []):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(main_class.encode()) for a in args) and any(
                str(stack.settings.stack_dir.resolve()).encode() in a for a in args
            ):
                parts[name] = _cpu_seconds(pid)
    total = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(total[:8]) if i not in (3, 4))  # all but idle and iowait
    parts["machine (all cores)"] = busy / os.sysconf("SC_CLK_TCK")
    return parts


def cpu_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """CPU µs per event each part used between two cpu_by_part readings (a part missing from the
    first reading, like the cdc sync process, started from zero)."""
    return {part: round((used - before.get(part, 0.0)) / events * 1e6, 1) for part, used in after.items()}


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    value = proc_status(pid).get("VmHWM")
    return int(value.split()[0]) / 1024 if value else None


def rss_mb(pid: int) -> float | None:
    value = proc_status(pid).get("VmRSS")
    return int(value.split()[0]) / 1024 if value else None


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM (cdc sync finishes its flush and exits), then SIGKILL if it does not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def connect_worker_pid(stack: Stack) -> int | None:
    pid_file = stack.settings.stack_dir / "connect" / "connect.pid"
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


# -- machine facts ---------------------------------------------------------------------------------
def cpu_facts() -> dict[str, Any]:
    """The machine, for a benchmark that needs no stack."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return {
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
        "cdc": git_state(),
    }


def machine_facts(stack: Stack) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
    }
    for name, url in (("postgres_source", stack.source_url), ("postgres_warehouse", stack.warehouse_url)):
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                facts[name] = cur.fetchone()[0]
        finally:
            conn.close()
    try:
        root = httpx.get(stack.connect_url, timeout=10).json()
        facts["kafka_connect"] = root.get("version")
        plugins = httpx.get(f"{stack.connect_url}/connector-plugins", timeout=10).json()
        facts["debezium"] = {p["class"].rsplit(".", 1)[-1]: p["version"] for p in plugins}
    except (httpx.HTTPError, ValueError) as exc:
        facts["kafka_connect"] = f"unreachable: {exc}"
    facts["kafka_broker"] = kafka_broker_version(stack)
    from importlib.metadata import version

    facts["kafka_python"] = version("kafka-python")
    facts["psycopg2"] = version("psycopg2-binary")
    facts["orjson"] = version("orjson")
    facts["cdc"] = git_state()
    return facts


def git_state() -> dict[str, Any]:
    """The commit of the code under test, and the files changed since (others edit as we run)."""
    changed = [line[3:] for line in _git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": _git("rev-parse", "--short", "HEAD").strip(), "changed_files": changed}


def kafka_broker_version(stack: Stack) -> str:
    """The broker's jar version (the native stack keeps the jars in <stack>/lib/kafka)."""
    libs = stack.settings.stack_dir / "lib" / "kafka"
    for jar in sorted(libs.glob("kafka_*.jar")) if libs.exists() else []:
        found = re.match(r"kafka_[\d.]+-([\d.]+)\.jar$", jar.name)
        if found:
            return found.group(1)
    return "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


# -- Kafka -------------------------------------------------------------------------------------------
def end_offset(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def delete_topic(bootstrap: str, topic: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic], timeout_ms=60_000)
    except KafkaError as exc:
        print(f"  (could not delete topic {topic}: {exc})")
    finally:
        admin.close()


def delete_groups(bootstrap: str, groups: list[str]) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for group in groups:
            with contextlib.suppress(KafkaError):  # a group that never committed does not exist
                admin.delete_consumer_groups([group])
    finally:
        admin.close()


def other_topic_messages(bootstrap: str, prefix: str, exclude: str, tables: tuple[str, ...] = ()) -> int:
    """Messages in the other topics that a fresh `cdc sync --table ...` group subscribes to (and
    so reads from their beginning), by cdc's own topic pattern."""
    from kafka import KafkaConsumer, TopicPartition

    from cdc.sync.consume import change_topics

    try:
        pattern = re.compile(change_topics(prefix, tables))  # type: ignore[call-arg]
    except TypeError:  # a cdc whose subscription ignores --table
        pattern = re.compile(change_topics(prefix))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        topics = [t for t in consumer.topics() if pattern.match(t) and t != exclude]
        tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        if not tps:
            return 0
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        return sum(int(ends[tp]) - int(begins[tp]) for tp in tps)
    finally:
        consumer.close()


# -- warehouse -----------------------------------------------------------------------------------------
def confluent_batches(bootstrap: str, topic: str, end: int) -> Iterator[list[Any]]:
    """The messages of partition 0 of a topic, from offset 0 to `end`, in the batches librdkafka
    hands over, read as cdc's confluent backend reads (its fetch settings and take_available)."""
    from confluent_kafka import Consumer, TopicPartition

    from cdc.sync.consume_confluent import FETCH_SETTINGS, take_available

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **FETCH_SETTINGS,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    read = 0
    try:
        while read < end:
            messages = take_available(consumer, 1.0, 10_000)
            read += len(messages)
            yield messages
    finally:
        consumer.close()


def warehouse_conn(stack: Stack, wait: float = 60) -> Any:
    """An autocommit connection; waits up to `wait` s for a warehouse being restarted."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn = psycopg2.connect(stack.warehouse_url)
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
            continue
        conn.autocommit = True
        return conn


def warehouse_started(stack: Stack) -> Any:
    """When the warehouse PostgreSQL last started: a change means someone restarted it."""
    conn = warehouse_conn(stack, wait=120)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time()")
            return cur.fetchone()[0]
    finally:
        conn.close()


class OffsetWatch:
    """Reads the offset `cdc sync` stored for a group in the warehouse (cdc.kafka_offsets),
    reconnecting if the warehouse restarts under it (the shared stack is also used by tests)."""

    def __init__(self, stack: Stack, group: str, topic: str) -> None:
        self.stack, self.group, self.topic = stack, group, topic
        self.conn: Any = warehouse_conn(stack)
        self.lost = 0

    def _query(self, sql: str, params: tuple[Any, ...]) -> Any:
        for _attempt in range(3):
            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchone()
            except psycopg2.OperationalError:
                self.lost += 1
                self.conn = warehouse_conn(self.stack)
        raise RuntimeError("the warehouse keeps dropping the connection")

    def read(self) -> int:
        row = self._query(
            "SELECT next_offset FROM cdc.kafka_offsets WHERE consumer_group = %s AND topic = %s "
            "AND kafka_partition = 0",
            (self.group, self.topic),
        )
        return int(row[0]) if row else 0

    def target(self, source_schema: str) -> str | None:
        row = self._query(
            "SELECT target_schema, target_table FROM cdc.table_map "
            "WHERE source_schema = %s AND source_table = 'orders'",
            (source_schema,),
        )
        return f'"{row[0]}"."{row[1]}"' if row else None

    def close(self) -> None:
        self.conn.close()


def jdbc_url(stack: Stack) -> tuple[str, str, str]:
    """(jdbc url, user, password) of the warehouse."""
    url = make_url(stack.warehouse_url)
    return (
        f"jdbc:postgresql://{url.host or '127.0.0.1'}:{url.port or 5432}/{url.database}",
        url.username or "",
        url.password if isinstance(url.password, str) else "",
    )


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def save_result(benchmark: str, data: Any, stamp: str | None = None) -> str:
    """Write a run's results as benchmarks/results/<stamp>-<benchmark>.json; returns that path,
    relative to the repository, for the run's last line."""
    path = RESULTS / f"{stamp or now_stamp()}-{benchmark}.json"
    write_json(path, data)
    return str(path.relative_to(REPO))


def now_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table_text(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |", line]
    for row in rows:
        cells = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append("| " + " | ".join(cells) + " |")
    out.append(line)
    return "\n".join(out)
