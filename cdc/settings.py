"""The one settings object: `CDC_*` environment variables, then an optional `cdc.toml`, then defaults.

Loaded once by the CLI and passed down; nothing reads the environment anywhere else. Everything is
checked at load, before any command starts: an unknown key in the file, a file that is not TOML, a
value out of its bounds, a URL that names no host are errors that name the setting and the fix; a
`CDC_*` variable that is no setting gets a warning. Database URLs carry passwords, so they are
`SecretStr` and only ever shown through `redact_url`.

Settings know nothing of the local stack: `cdc.stack.state.with_stack_defaults` fills unset
endpoints from it, on top of these.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cdc.errors import ConfigError
from cdc.warehouse.naming import DEFAULT_FORMAT, check_format

CONFIG_FILE_ENV = "CDC_CONFIG"
DEFAULT_CONFIG_FILE = "cdc.toml"
ENV_PREFIX = "CDC_"
# CDC_* variables that are not settings: the file to read, --debug, and the passwords
# docker-compose.yml hands to its containers.
# Read from the environment elsewhere (cdc/fastpath.py reads CDC_FASTPATH before any settings).
NOT_SETTINGS = frozenset(
    {CONFIG_FILE_ENV, "CDC_DEBUG", "CDC_FASTPATH", "CDC_SOURCE_PASSWORD", "CDC_WAREHOUSE_PASSWORD"}
)
_URL_FIELDS = frozenset({"source_url", "warehouse_url", "connect_source_url"})
# A password reference may be mistaken for the password itself: never echo it.
_HIDDEN_FIELDS = frozenset({"connect_password_ref", "alert_webhook_url"})
_SEE = "the README's Configuration table lists every setting"

log = logging.getLogger(__name__)

Port = Annotated[int, Field(ge=1, le=65535)]
# PostgreSQL truncates longer names silently: a schema named by a setting must fit.
PgName = Annotated[str, Field(min_length=1)]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Endpoints. Unset ones fall back to the local stack's (cdc.stack.state.with_stack_defaults).
    source_url: SecretStr | None = None
    warehouse_url: SecretStr | None = None
    kafka_bootstrap_servers: str | None = None
    connect_url: str | None = None
    # How Kafka Connect reaches the source, when that differs from how cdc does (docker-compose).
    connect_source_url: SecretStr | None = None
    # A Kafka Connect config-provider reference the worker resolves to the source password, e.g.
    # ${env:CDC_SOURCE_PASSWORD} or ${file:/etc/cdc/secrets.properties:source_password}. When set,
    # the password never travels through Connect's REST API nor lands in its config topic.
    connect_password_ref: str | None = Field(default=None, pattern=r"^\$\{[^{}]+\}$")

    # Capture.
    topic_prefix: str = Field(default="cdc", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    connector_name: str = Field(default="cdc-source", pattern=r"^[^/\\\x00-\x1f]{1,200}$")
    # PostgreSQL: slot names are lower-case letters, digits and underscores.
    slot_name: str = Field(default="cdc_slot", pattern=r"^[a-z0-9_]{1,63}$")
    publication_name: PgName = "cdc_publication"
    include_schemas: str = Field(default="", description="comma-separated; empty = all user schemas")
    exclude_schemas: str = ""
    include_tables: str = Field(default="", description="comma-separated schema.table names")
    exclude_tables: str = ""
    topic_partitions: int = Field(default=1, ge=1, le=10_000)

    # Sync.
    warehouse_schema: PgName = "replica"
    # The warehouse table of a source table, inside warehouse_schema (cdc/warehouse/naming.py).
    table_name_format: str = Field(default=DEFAULT_FORMAT, min_length=1)
    consumer_group: str = Field(default="cdc-sync", min_length=1)
    flush_rows: int = Field(default=20_000, gt=0, description="flush after this many events")
    flush_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="flush after this many message bytes")
    flush_interval_ms: int = Field(default=500, gt=0, description="flush buffered events at least this often")
    delete_mode: Literal["hard", "soft"] = "hard"
    kafka_client: Literal["kafka-python", "confluent"] = Field(
        default="kafka-python", description="consumer library of cdc sync; confluent needs the cdc[confluent] extra"
    )
    retry_max_seconds: float = Field(
        default=0, ge=0, description="give up a failing operation after this long; 0 = never"
    )
    # The broker refuses sessions outside group.min/max.session.timeout.ms (6 s and 30 min by default).
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=6000,
        le=1_800_000,
        description="how long a member that stops heartbeating (a crash) keeps its partitions",
    )
    # Static membership (KIP-345): a member restarted under the same id takes its partitions back at
    # once, with no rebalance and no wait for its old session; one id per running process.
    kafka_group_instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="a stable id per cdc sync process (e.g. its host name): restarts skip the rebalance",
    )
    stall_seconds: float = Field(
        default=60, gt=0, description="stop with an error when lag stays above zero and nothing is read this long"
    )
    # The replication slot's guard (cdc/sync/slot_guard.py), on when CDC_SOURCE_URL is set.
    slot_retained_warn_bytes: int = Field(
        default=10 * 1024**3, ge=0, description="WARN in doctor/status and alert once above this; 0 = never"
    )
    slot_check_seconds: float = Field(default=2.0, gt=0, description="how often cdc sync looks at the slot")

    # Schema drift (cdc/schema/policy.py): the default policy, and per-table ones by name or glob
    # pattern: in cdc.toml a [schema_policies] table, in the environment "shop.orders=halt,audit.*=alert".
    schema_policy: Literal["evolve", "alert", "halt"] = "evolve"
    schema_policies: dict[str, Literal["evolve", "alert", "halt"]] = Field(default_factory=dict)
    # Where schema-change alerts are posted (Slack-compatible JSON). A secret: such URLs embed a token.
    alert_webhook_url: SecretStr | None = None

    # Native stack.
    stack_dir: Path = Path(".cdc-stack")
    stack_source_port: Port = 54321
    stack_warehouse_port: Port = 54322
    stack_kafka_port: Port = 19092
    stack_controller_port: Port = 19093
    stack_connect_port: Port = 18083
    stack_pg_bin: Path | None = None

    log_format: Literal["text", "json"] = "text"

    # Which settings the environment set (the others that are set came from cdc.toml): for
    # commands that say where a value comes from. Private: no variable can set it.
    _from_environment: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def from_environment(self) -> frozenset[str]:
        return self._from_environment

    @field_validator("source_url", "warehouse_url", "connect_source_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_postgres_url(value.get_secret_value())
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is not None:
            check_bootstrap_servers(value)
        return value

    @field_validator("connect_url")
    @classmethod
    def _connect_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_http_url(value)
        return value

    @field_validator("schema_policies", mode="before")
    @classmethod
    def _schema_policies(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: "pattern=policy,pattern=policy"
            pairs = [item.partition("=") for item in split_list(value)]
            bad = [name for name, sep, policy in pairs if not sep or not name.strip() or not policy.strip()]
            if bad:
                raise ValueError(f"{bad[0]!r} is not pattern=policy (e.g. shop.orders=halt,audit.*=alert)")
            return {name.strip(): policy.strip() for name, _, policy in pairs}
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_http_url(value.get_secret_value())
        return value

    @field_validator("table_name_format")
    @classmethod
    def _table_name_format(cls, value: str) -> str:
        return check_format(value)

    @field_validator("publication_name", "warehouse_schema")
    @classmethod
    def _pg_name(cls, value: str) -> str:
        if len(value.encode()) > 63:
            raise ValueError("is longer than PostgreSQL's 63 bytes for a name")
        return value

    def require_source_url(self) -> str:
        return _require(self.source_url, "CDC_SOURCE_URL")

    def require_warehouse_url(self) -> str:
        return _require(self.warehouse_url, "CDC_WAREHOUSE_URL")

    def require_kafka(self) -> str:
        return _require(self.kafka_bootstrap_servers, "CDC_KAFKA_BOOTSTRAP_SERVERS")

    def require_connect_url(self) -> str:
        return _require(self.connect_url, "CDC_CONNECT_URL")


_URL_SHAPE = "expected postgresql://user:password@host:port/database"


def check_postgres_url(text: str) -> None:
    """A libpq connection URL naming a host and a database. Raises ValueError (never showing the
    password) otherwise."""
    try:
        url = make_url(text)
        url.port  # noqa: B018 -- parsing it raises on a port that is not a number
    except (ArgumentError, ValueError):
        raise ValueError(f"is not a URL: {_URL_SHAPE}") from None
    if url.drivername not in ("postgresql", "postgres"):
        raise ValueError(f"has scheme {url.drivername!r}: {_URL_SHAPE}")
    if url.host and "@" in url.host:
        raise ValueError("has an '@' in its password or user name: write it as %40")
    if not url.host and "host" not in url.query:
        raise ValueError(f"names no host: {_URL_SHAPE}")
    if not url.database:
        raise ValueError(f"names no database: {_URL_SHAPE}")


_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$")


def check_bootstrap_servers(text: str) -> None:
    servers = split_list(text)
    if not servers:
        raise ValueError("names no broker: expected host:port[,host:port...]")
    for server in servers:
        match = _HOST_PORT.match(server)
        if match is None or not 1 <= int(match.group(1)) <= 65535:
            raise ValueError(f"has {server!r}, which is not host:port (port 1-65535)")


def check_http_url(text: str) -> None:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- parsing it raises on a port out of range or not a number
    except ValueError:
        raise ValueError("is not a URL: expected http://host:port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL: expected http://host:port")


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
        parsed = make_url(url)
        if parsed.host and "@" in parsed.host:  # an unescaped '@' in the password: the "host" holds part of it
            return "<unparsable URL>"
        return parsed.render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still hold a secret: show nothing of it
        return "<unparsable URL>"


# -- loading ---------------------------------------------------------------------------------


def load_settings(environ: Mapping[str, str] | None = None, warn: Callable[[str], None] | None = None) -> Settings:
    """Settings from the environment and the config file, checked whole. Raises ConfigError
    naming every invalid value; calls `warn` for each CDC_* variable that is no setting."""
    environ = os.environ if environ is None else environ
    path, named = config_path(environ)
    from_file = read_config_file(path, named=named)
    from_env: dict[str, str] = {}
    for variable, value in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or variable in NOT_SETTINGS:
            continue
        name = variable.removeprefix(ENV_PREFIX).lower()
        if name in Settings.model_fields:
            if value != "":  # an empty variable is an unset one (`CDC_X= cdc ...`)
                from_env[name] = value
        else:
            (warn or log.warning)(
                f"{variable} is set but is not a cdc setting; it is ignored{_did_you_mean(name, ENV_PREFIX)}"
            )
    try:
        settings = Settings.model_validate({**from_file, **from_env})
    except ValidationError as exc:
        raise _invalid(exc, from_env, path) from None
    settings._from_environment = frozenset(from_env)
    return settings


def config_path(environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file, and whether CDC_CONFIG named it (then it must exist)."""
    named = environ.get(CONFIG_FILE_ENV)
    return (Path(named), True) if named else (Path(DEFAULT_CONFIG_FILE), False)


def read_config_file(path: Path, *, named: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if named:
            raise ConfigError(
                f"{CONFIG_FILE_ENV} names {path}, which does not exist.",
                f"create it, or unset {CONFIG_FILE_ENV} (./{DEFAULT_CONFIG_FILE} is read when present)",
            ) from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}.", "make it a readable UTF-8 file") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {_toml_position(str(exc), path)}.",
            'one setting per line, as name = value, strings in double quotes (flush_rows = 5000, topic_prefix = "cdc")',
        ) from None
    unknown = [key for key in values if key not in Settings.model_fields]
    if unknown:
        found = "; ".join(f"{key!r}{_did_you_mean(key, '')}" for key in unknown)
        raise ConfigError(
            f"{path} has {'an unknown setting' if len(unknown) == 1 else 'unknown settings'}: {found}.",
            f"correct or remove {'it' if len(unknown) == 1 else 'them'} ({_SEE}; in the file, names are lower-case"
            " without the CDC_ prefix)",
        )
    return values


def _toml_position(message: str, path: Path) -> str:
    """tomllib says 'Invalid value (at line 2, column 9)': lead with where, as compilers do."""
    match = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    if match is None:
        return message
    what = message[: match.start()].strip()
    return f"line {match.group(1)}, column {match.group(2)}: {what[:1].lower()}{what[1:]}"


def _did_you_mean(name: str, prefix: str) -> str:
    plain = name.lower().removeprefix("cdc_")
    close = [plain] if plain in Settings.model_fields else difflib.get_close_matches(plain, list(Settings.model_fields))
    if not close:
        return ""
    return f" (did you mean {prefix + close[0].upper() if prefix else repr(close[0])}?)"


def _invalid(exc: ValidationError, from_env: Mapping[str, str], path: Path) -> ConfigError:
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        if name in from_env:
            where, raw = f"{ENV_PREFIX}{name.upper()}", from_env[name]
        else:
            where, raw = f"{name} (in {path})", error.get("input")
        shown = redact_url(str(raw)) if name in _URL_FIELDS else "<hidden>" if name in _HIDDEN_FIELDS else repr(raw)
        reason = _PATTERN_MEANS.get(name) if error["type"] == "string_pattern_mismatch" else None
        lines.append(f"{where}={shown} {reason or _reason(error['msg'])}")
    if len(lines) == 1:
        return ConfigError(f"setting {lines[0]}.", f"set a valid value ({_SEE})")
    return ConfigError(
        "invalid settings:\n  " + "\n  ".join(lines), f"set valid values, in the environment or in the file ({_SEE})"
    )


_PATTERN_MEANS = {
    "topic_prefix": "may hold only letters, digits, '.', '_' and '-' (a Kafka topic name), at most 200",
    "connector_name": "may not be empty nor hold '/', '\\' or control characters (a Kafka Connect name)",
    "slot_name": "may hold only lower-case letters, digits and '_', at most 63 (a PostgreSQL slot name)",
    "kafka_group_instance_id": "may hold only letters, digits, '.', '_' and '-', at most 249 (a group instance id)",
    "connect_password_ref": "should be a Kafka Connect config-provider reference: ${file:/path:key} or ${env:NAME}",
}


def _reason(message: str) -> str:
    """pydantic's wording, as a clause about the value: 'Input should be > 0' -> 'should be > 0'."""
    message = message.removeprefix("Value error, ")
    for subject in ("Input ", "String ", "Value "):
        message = message.removeprefix(subject)
    return message
