"""Where the native stack keeps its files, and the small state it must remember between runs."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from cdc.settings import Settings, load_settings

SOURCE_DB = "cdc_source"
WAREHOUSE_DB = "cdc_warehouse"
DB_USER = "cdc"


@dataclass(frozen=True)
class StackState:
    """Generated once on the first `cdc stack up`; kept in <stack dir>/stack.json (mode 0600)."""

    source_password: str
    warehouse_password: str
    kafka_cluster_id: str
    postgres_root: str

    @classmethod
    def new(cls, postgres_root: Path) -> StackState:
        return cls(
            source_password=secrets.token_urlsafe(18),
            warehouse_password=secrets.token_urlsafe(18),
            kafka_cluster_id=_kafka_cluster_id(),
            postgres_root=str(postgres_root),
        )


def _kafka_cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. A leading '-'
    # would read as a flag on the StorageTool command line.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def kafka_libs(self) -> Path:
        return self.root / "lib" / "kafka"

    @property
    def plugins(self) -> Path:
        return self.root / "lib" / "plugins"

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def connect_dir(self) -> Path:
        return self.root / "connect"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def connect_secrets(self) -> Path:
        return self.connect_dir / "secrets.properties"


def layout(settings: Settings) -> Layout:
    return Layout(settings.stack_dir.resolve())


def load_state(lay: Layout) -> StackState | None:
    try:
        raw: dict[str, Any] = json.loads(lay.state_file.read_text())
    except FileNotFoundError:
        return None
    return StackState(**raw)


def save_state(lay: Layout, state: StackState) -> None:
    lay.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(lay.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(state), handle, indent=2)


def source_url(settings: Settings, state: StackState) -> str:
    return _pg_url(state.source_password, settings.stack_source_port, SOURCE_DB)


def warehouse_url(settings: Settings, state: StackState) -> str:
    return _pg_url(state.warehouse_password, settings.stack_warehouse_port, WAREHOUSE_DB)


def _pg_url(password: str, port: int, db: str) -> str:
    return f"postgresql://{DB_USER}:{password}@127.0.0.1:{port}/{db}"


def kafka_bootstrap(settings: Settings) -> str:
    return f"127.0.0.1:{settings.stack_kafka_port}"


def connect_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.stack_connect_port}"


def stack_defaults(settings: Settings) -> dict[str, Any]:
    """Endpoints of the local stack, if one was ever set up under settings.stack_dir."""
    lay = layout(settings)
    state = load_state(lay)
    if state is None:
        return {}
    return {
        "source_url": SecretStr(source_url(settings, state)),
        "warehouse_url": SecretStr(warehouse_url(settings, state)),
        "kafka_bootstrap_servers": kafka_bootstrap(settings),
        "connect_url": connect_url(settings),
        "connect_password_ref": f"${{file:{lay.connect_secrets}:source_password}}",
    }


def with_stack_defaults(settings: Settings) -> Settings:
    """The settings with unset endpoints filled from a local stack set up under settings.stack_dir
    (what was set explicitly is kept)."""
    defaults = stack_defaults(settings)
    own = defaults.get("source_url")
    if settings.source_url is not None and (own is None or settings.source_url != own):
        # The stack's password reference names the stack's password: useless for another source.
        # For the stack's own source (`eval "$(cdc stack env)"` sets CDC_SOURCE_URL to it), it is
        # kept, so the password never travels through Connect's REST API.
        defaults.pop("connect_password_ref", None)
    missing = {key: value for key, value in defaults.items() if getattr(settings, key) is None}
    return settings.model_copy(update=missing) if missing else settings


def load_local_settings() -> Settings:
    """Settings from the environment and cdc.toml, endpoints defaulting to the local stack's: what
    every command of the CLI (and the tests and benchmarks, run beside a stack) work with."""
    return with_stack_defaults(load_settings())


def write_connect_secrets(lay: Layout, state: StackState) -> None:
    """The file the Connect worker's FileConfigProvider reads the source password from."""
    lay.connect_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lay.connect_secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"source_password={state.source_password}\n")
