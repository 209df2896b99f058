"""The one settings object: `CDC_*` environment variables, then an optional `cdc.toml`, then defaults.

Loaded once by the CLI and passed down; nothing reads the environment anywhere else. Database URLs
carry passwords, so they are `SecretStr` and only ever shown through `redact_url`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from cdc.errors import ConfigError

CONFIG_FILE_ENV = "CDC_CONFIG"
DEFAULT_CONFIG_FILE = "cdc.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDC_", extra="ignore")

    # Endpoints. Unset ones fall back to the local stack's (see `with_stack_defaults`).
    source_url: SecretStr | None = None
    warehouse_url: SecretStr | None = None
    kafka_bootstrap_servers: str | None = None
    connect_url: str | None = None
    # How Kafka Connect reaches the source, when that differs from how cdc does (docker-compose).
    connect_source_url: SecretStr | None = None
    # A Kafka Connect config-provider reference the worker resolves to the source password, e.g.
    # ${env:CDC_SOURCE_PASSWORD} or ${file:/etc/cdc/secrets.properties:source_password}. When set,
    # the password never travels through Connect's REST API nor lands in its config topic.
    connect_password_ref: str | None = None

    # Capture.
    topic_prefix: str = "cdc"
    connector_name: str = "cdc-source"
    slot_name: str = "cdc_slot"
    publication_name: str = "cdc_publication"
    include_schemas: str = Field(default="", description="comma-separated; empty = all user schemas")
    exclude_schemas: str = ""
    include_tables: str = Field(default="", description="comma-separated schema.table names")
    exclude_tables: str = ""
    topic_partitions: int = 1

    # Sync.
    warehouse_schema: str = "replica"
    consumer_group: str = "cdc-sync"
    flush_rows: int = Field(default=20_000, description="flush after this many events")
    flush_bytes: int = Field(default=64 * 1024 * 1024, description="flush after this many message bytes")
    flush_interval_ms: int = Field(default=500, description="flush buffered events at least this often")
    delete_mode: Literal["hard", "soft"] = "hard"
    kafka_client: Literal["kafka-python", "confluent"] = Field(
        default="kafka-python", description="consumer library of cdc sync; confluent needs the cdc[confluent] extra"
    )
    retry_max_seconds: float = Field(default=0, description="give up a failing flush after this long; 0 = never")
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=6000, description="how long a member that stops heartbeating (a crash) keeps its partitions"
    )
    stall_seconds: float = Field(
        default=60, gt=0, description="stop with an error when lag stays above zero and nothing is read this long"
    )

    # Native stack.
    stack_dir: Path = Path(".cdc-stack")
    stack_source_port: int = 54321
    stack_warehouse_port: int = 54322
    stack_kafka_port: int = 19092
    stack_controller_port: int = 19093
    stack_connect_port: int = 18083
    stack_pg_bin: Path | None = None

    log_format: Literal["text", "json"] = "text"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    def require_source_url(self) -> str:
        return _require(self.source_url, "CDC_SOURCE_URL")

    def require_warehouse_url(self) -> str:
        return _require(self.warehouse_url, "CDC_WAREHOUSE_URL")

    def require_kafka(self) -> str:
        return _require(self.kafka_bootstrap_servers, "CDC_KAFKA_BOOTSTRAP_SERVERS")

    def require_connect_url(self) -> str:
        return _require(self.connect_url, "CDC_CONNECT_URL")


def _require(value: SecretStr | str | None, name: str) -> str:
    if value is None:
        raise ConfigError(
            f"{name} is not set.",
            'set it (env or cdc.toml), or start the local stack: cdc stack up && eval "$(cdc stack env)"',
        )
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def redact_url(url: str) -> str:
    """The URL with its password replaced, fit for logs, errors and status output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still hold a secret: show nothing of it
        return "<unparsable URL>"


def load_settings() -> Settings:
    """Settings from env and cdc.toml, with unset endpoints filled from a running local stack."""
    from cdc.stack.state import stack_defaults  # the stack depends on settings, not the reverse

    settings = Settings()
    defaults = stack_defaults(settings)
    if settings.source_url is not None:
        # The stack's password reference names the stack's password: useless for another source.
        defaults.pop("connect_password_ref", None)
    missing = {key: value for key, value in defaults.items() if getattr(settings, key) is None}
    return settings.model_copy(update=missing) if missing else settings
