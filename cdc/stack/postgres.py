"""Private PostgreSQL clusters for the native stack: one source (wal_level=logical), one warehouse.

The server refuses to run as root, so when cdc runs as root the clusters belong to the unprivileged
`postgres` OS user that Debian's package creates.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import sql

from cdc.errors import MissingToolError, StackError
from cdc.stack import process

RUN_AS_ROOT_USER = "postgres"
SUPERUSER = "postgres"  # the role initdb makes; trusted on the private unix socket only
_SUPERUSER = SUPERUSER

_SOURCE_CONF = """
# cdc stack: logical decoding for Debezium
listen_addresses = '127.0.0.1'
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
# a stalled or forgotten slot may hold at most this much WAL before Postgres invalidates it
max_slot_wal_keep_size = '4GB'
shared_buffers = '128MB'
"""

_WAREHOUSE_CONF = """
# cdc stack: warehouse tuned for bulk COPY + MERGE
listen_addresses = '127.0.0.1'
shared_buffers = '512MB'
max_wal_size = '4GB'
work_mem = '64MB'
maintenance_work_mem = '256MB'
"""


@dataclass(frozen=True)
class Cluster:
    name: str  # "source" or "warehouse"
    root: Path
    port: int
    bindir: Path
    logical: bool

    @property
    def data(self) -> Path:
        return self.root / self.name / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / self.name / "run"

    @property
    def log(self) -> Path:
        return self.root / self.name / "postgres.log"

    @property
    def pidfile(self) -> Path:
        return self.data / "postmaster.pid"

    def pid(self) -> int | None:
        return process.read_pid(self.pidfile)

    def running(self) -> bool:
        return process.is_running(self.pid(), "postgres")


def run_user() -> str | None:
    """The OS user to run postgres as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS_ROOT_USER)
    except KeyError:
        raise MissingToolError(
            "cdc runs as root, PostgreSQL refuses to, and there is no 'postgres' OS user to run it as.",
            "install the server package (apt-get install -y postgresql-15 creates the user), "
            "or run cdc as an unprivileged user",
        ) from None
    return RUN_AS_ROOT_USER


def clusters_root(stack_dir: Path) -> Path:
    """Where the clusters live: in the stack dir, unless the postgres user could not reach it there."""
    if run_user() is None or _world_traversable(stack_dir):
        return stack_dir / "postgres"
    tag = hashlib.sha256(str(stack_dir).encode()).hexdigest()[:10]
    return Path("/var/tmp") / f"cdc-stack-{tag}" / "postgres"


def _world_traversable(path: Path) -> bool:
    return all(not part.exists() or part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


def init(cluster: Cluster) -> bool:
    """initdb the cluster if it has no data directory yet. True if it was created now."""
    if (cluster.data / "PG_VERSION").exists():
        return False
    user = run_user()
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    cluster.data.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _chown_tree(cluster.root, user)
    proc = subprocess.run(
        [
            str(cluster.bindir / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            _SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        capture_output=True,
        text=True,
        user=user,
        check=False,
    )
    if proc.returncode != 0:
        shutil.rmtree(cluster.data, ignore_errors=True)
        raise StackError(f"initdb of the {cluster.name} cluster failed:\n{proc.stderr.strip()}")
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(_SOURCE_CONF if cluster.logical else _WAREHOUSE_CONF)
    return True


def _chown_tree(root: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for directory in [root, *[p for p in root.rglob("*")]]:
        os.chown(directory, entry.pw_uid, entry.pw_gid)


def start(cluster: Cluster) -> int | None:
    """Start the cluster unless it runs; the pid of the postmaster started, None if it ran already."""
    if cluster.running():
        return None
    cluster.pidfile.unlink(missing_ok=True)  # stale after a crash; postgres would refuse to start
    return process.spawn(
        [
            str(cluster.bindir / "postgres"),
            "-D",
            str(cluster.data),
            "-p",
            str(cluster.port),
            "-k",
            str(cluster.socket_dir),
        ],
        log=cluster.log,
        pidfile=cluster.root / cluster.name / "spawned.pid",
        user=run_user(),
    )


def wait_ready(cluster: Cluster, timeout: float = 60, started: int | None = None) -> None:
    """Wait until the cluster accepts connections; a postmaster `started` now that exits meanwhile
    (its port taken, a bad setting) ends the wait at once, with the reason from its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin_connect(cluster).close()
        except psycopg2.OperationalError as exc:
            if started is not None and not process.is_running(started, "postgres"):
                raise _exited(cluster) from exc
            if time.monotonic() > deadline:
                raise StackError(
                    f"the {cluster.name} PostgreSQL did not accept connections within {timeout:.0f}s "
                    f"({str(exc).strip()})",
                    f"read its log: {cluster.log}",
                ) from exc
            time.sleep(0.3)
        else:
            return


def _exited(cluster: Cluster) -> StackError:
    try:
        lines = cluster.log.read_text(errors="replace").splitlines()[-50:]
    except FileNotFoundError:
        lines = []
    fatal = [line for line in lines if "FATAL:" in line or "ERROR:" in line]
    reason = fatal[-1].split("FATAL:", 1)[-1].split("ERROR:", 1)[-1].strip() if fatal else "no reason in its log"
    fix = f"read its log: {cluster.log}"
    if "Address already in use" in " ".join(lines[-10:]) or "could not create any TCP/IP sockets" in reason:
        setting = f"CDC_STACK_{cluster.name.upper()}_PORT"
        fix = f"another program holds port {cluster.port}: stop it, or set {setting} to a free port"
    return StackError(f"the {cluster.name} PostgreSQL exited as it started: {reason}", fix)


def admin_connect(cluster: Cluster, dbname: str = "postgres") -> psycopg2.extensions.connection:
    """The superuser over the private unix socket (trusted locally, never over TCP)."""
    conn = psycopg2.connect(
        host=str(cluster.socket_dir),
        port=cluster.port,
        user=_SUPERUSER,
        dbname=dbname,
        connect_timeout=3,
    )
    conn.autocommit = True
    return conn


def ensure_database(cluster: Cluster, *, db: str, user: str, password: str, replication: bool) -> None:
    """Create the login role and its database if missing; (re)set the role's password and its
    search path (so also on a stack created before the search path was set)."""
    conn = admin_connect(cluster)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                # CREATEDB: tests and demos make scratch databases beside the main one.
                sql.SQL("{} ROLE {} LOGIN CREATEDB {} PASSWORD %s").format(
                    sql.SQL(verb),
                    sql.Identifier(user),
                    sql.SQL("REPLICATION" if replication else "NOREPLICATION"),
                ),
                (password,),
            )
            # The role shares its name with cdc's internal schema (`cdc`, in both clusters), so the
            # default "$user", public would put a table created without a schema name (pgbench -i,
            # say) there: not captured, and nothing would say so. Set on the role rather than on a
            # database, so the scratch databases the role creates get it too; cdc itself names the
            # schema of every table it uses and depends on no search path.
            cur.execute(sql.SQL("ALTER ROLE {} SET search_path = public").format(sql.Identifier(user)))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(user)))
    finally:
        conn.close()


def stop(cluster: Cluster) -> bool:
    # SIGINT is Postgres's "fast" shutdown: it does not wait for Debezium's replication connection.
    return process.stop(cluster.pid(), "postgres", sig=signal.SIGINT, timeout=60)


def restart(cluster: Cluster) -> None:
    stop(cluster)
    wait_ready(cluster, started=start(cluster))
