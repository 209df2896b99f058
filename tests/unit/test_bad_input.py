"""Bad input and operator mistakes, through the real command line (`cdc.cli.run`, what the `cdc`
script calls): each ends with its documented exit status, a message naming the problem and the fix,
no traceback and no secret. These need no server: settings are checked before anything connects.
The cases that need the real stack are in tests/integration/test_bad_input.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cdc import cli
from cdc.errors import EXIT_BUG, EXIT_CONFIG

SECRET = "s3cret-Pw-9xq"
LONG_NAME = "x" * 64


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    status: int
    problem: str  # the whole `error:` line holds this
    fix: str  # and the `fix:` line this
    env: dict[str, str] = field(default_factory=dict)
    toml: str | bytes | None = None  # written to ./cdc.toml


CASES = [
    # -- the config file --
    Case(
        "toml-not-toml",
        ["sync"],
        EXIT_CONFIG,
        "cdc.toml is not valid TOML: line 2, column 14: invalid value.",
        "one setting per line, as name = value",
        toml='topic_prefix = "cdc"\nflush_rows = = 5\n',
    ),
    Case(
        "toml-misspelt-key",
        ["sync"],
        EXIT_CONFIG,
        "cdc.toml has an unknown setting: 'warehouse_shcema' (did you mean 'warehouse_schema'?).",
        "correct or remove it",
        toml='warehouse_shcema = "x"\n',
    ),
    Case(
        "toml-env-style-key",
        ["sync"],
        EXIT_CONFIG,
        "cdc.toml has an unknown setting: 'CDC_FLUSH_ROWS' (did you mean 'flush_rows'?).",
        "names are lower-case without the CDC_ prefix",
        toml="CDC_FLUSH_ROWS = 5\n",
    ),
    Case(
        "toml-two-unknown-keys",
        ["sync"],
        EXIT_CONFIG,
        "cdc.toml has unknown settings: 'flush_row' (did you mean 'flush_rows'?); 'colour'.",
        "correct or remove them",
        toml='flush_row = 5\ncolour = "blue"\n',
    ),
    Case(
        "toml-section",
        ["sync"],
        EXIT_CONFIG,
        "cdc.toml has an unknown setting: 'kafka'.",
        "correct or remove it",
        toml='[kafka]\nbootstrap = "b:9092"\n',
    ),
    Case(
        "toml-wrong-type",
        ["sync"],
        EXIT_CONFIG,
        "setting flush_rows (in cdc.toml)='many' should be a valid integer",
        "set a valid value (the README's Configuration table lists every setting)",
        toml='flush_rows = "many"\n',
    ),
    Case(
        "toml-not-utf8",
        ["sync"],
        EXIT_CONFIG,
        "cannot read the config file cdc.toml: 'utf-8' codec can't decode",
        "make it a readable UTF-8 file",
        toml=b"topic_prefix = '\xff\xfe'\n",
    ),
    Case(
        "cdc-config-names-a-missing-file",
        ["sync"],
        EXIT_CONFIG,
        "CDC_CONFIG names /nonexistent/cdc.toml, which does not exist.",
        "create it, or unset CDC_CONFIG",
        env={"CDC_CONFIG": "/nonexistent/cdc.toml"},
    ),
    # -- enumerations list their choices --
    Case(
        "kafka-client",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_KAFKA_CLIENT='bogus' should be 'kafka-python' or 'confluent'.",
        "set a valid value",
        env={"CDC_KAFKA_CLIENT": "bogus"},
    ),
    Case(
        "delete-mode",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_DELETE_MODE='purge' should be 'hard' or 'soft'.",
        "set a valid value",
        env={"CDC_DELETE_MODE": "purge"},
    ),
    Case(
        "log-format",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_LOG_FORMAT='xml' should be 'text' or 'json'.",
        "set a valid value",
        env={"CDC_LOG_FORMAT": "xml"},
    ),
    # -- numbers have bounds --
    Case(
        "flush-rows-negative",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_FLUSH_ROWS='-5' should be greater than 0.",
        "set a valid value",
        env={"CDC_FLUSH_ROWS": "-5"},
    ),
    Case(
        "flush-bytes-zero",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_FLUSH_BYTES='0' should be greater than 0.",
        "set a valid value",
        env={"CDC_FLUSH_BYTES": "0"},
    ),
    Case(
        "flush-interval-not-a-number",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_FLUSH_INTERVAL_MS='fast' should be a valid integer",
        "set a valid value",
        env={"CDC_FLUSH_INTERVAL_MS": "fast"},
    ),
    Case(
        "port-out-of-range",
        ["stack", "env"],
        EXIT_CONFIG,
        "setting CDC_STACK_KAFKA_PORT='70000' should be less than or equal to 65535.",
        "set a valid value",
        env={"CDC_STACK_KAFKA_PORT": "70000"},
    ),
    Case(
        "partitions-zero",
        ["connector", "apply"],
        EXIT_CONFIG,
        "setting CDC_TOPIC_PARTITIONS='0' should be greater than or equal to 1.",
        "set a valid value",
        env={"CDC_TOPIC_PARTITIONS": "0"},
    ),
    Case(
        "session-timeout-below-the-broker-minimum",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_KAFKA_SESSION_TIMEOUT_MS='1000' should be greater than or equal to 6000.",
        "set a valid value",
        env={"CDC_KAFKA_SESSION_TIMEOUT_MS": "1000"},
    ),
    Case(
        "stall-seconds-zero",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_STALL_SECONDS='0' should be greater than 0.",
        "set a valid value",
        env={"CDC_STALL_SECONDS": "0"},
    ),
    Case(
        "retry-max-negative",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_RETRY_MAX_SECONDS='-1' should be greater than or equal to 0.",
        "set a valid value",
        env={"CDC_RETRY_MAX_SECONDS": "-1"},
    ),
    Case(
        "several-at-once",
        ["sync"],
        EXIT_CONFIG,
        "invalid settings:",
        "set valid values, in the environment or in the file",
        env={"CDC_FLUSH_ROWS": "-5", "CDC_KAFKA_CLIENT": "bogus"},
    ),
    # -- names --
    Case(
        "slot-name",
        ["connector", "apply"],
        EXIT_CONFIG,
        "setting CDC_SLOT_NAME='My-Slot' may hold only lower-case letters, digits and '_', at most 63",
        "set a valid value",
        env={"CDC_SLOT_NAME": "My-Slot"},
    ),
    Case(
        "group-instance-id",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_KAFKA_GROUP_INSTANCE_ID='host 1' may hold only letters, digits, '.', '_' and '-', at most 249",
        "set a valid value",
        env={"CDC_KAFKA_GROUP_INSTANCE_ID": "host 1"},
    ),
    Case(
        "topic-prefix",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_TOPIC_PREFIX='my prefix' may hold only letters, digits, '.', '_' and '-'",
        "set a valid value",
        env={"CDC_TOPIC_PREFIX": "my prefix"},
    ),
    Case(
        "warehouse-schema-too-long",
        ["sync"],
        EXIT_CONFIG,
        f"setting CDC_WAREHOUSE_SCHEMA='{LONG_NAME}' is longer than PostgreSQL's 63 bytes for a name.",
        "set a valid value",
        env={"CDC_WAREHOUSE_SCHEMA": LONG_NAME},
    ),
    # -- URLs are parsed and checked, and never shown with their password --
    Case(
        "source-url-not-a-url",
        ["connector", "status"],
        EXIT_CONFIG,
        "setting CDC_SOURCE_URL=<unparsable URL> is not a URL: expected postgresql://user:password@host:port/database.",
        "set a valid value",
        env={"CDC_SOURCE_URL": f"postgresql//cdc:{SECRET}@db/shop"},
    ),
    Case(
        "source-url-other-scheme",
        ["connector", "status"],
        EXIT_CONFIG,
        "setting CDC_SOURCE_URL=mysql://cdc:***@db/shop has scheme 'mysql'",
        "set a valid value",
        env={"CDC_SOURCE_URL": f"mysql://cdc:{SECRET}@db/shop"},
    ),
    Case(
        "warehouse-url-without-database",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_WAREHOUSE_URL=postgresql://cdc:***@wh:5432 names no database",
        "set a valid value",
        env={"CDC_WAREHOUSE_URL": f"postgresql://cdc:{SECRET}@wh:5432"},
    ),
    Case(
        "warehouse-url-unescaped-at-sign",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_WAREHOUSE_URL=<unparsable URL> has an '@' in its password or user name: write it as %40.",
        "set a valid value",
        env={"CDC_WAREHOUSE_URL": f"postgresql://cdc:{SECRET}@x@wh:5432/dw"},
    ),
    Case(
        "warehouse-url-port-not-a-number",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_WAREHOUSE_URL=<unparsable URL> is not a URL",
        "set a valid value",
        env={"CDC_WAREHOUSE_URL": f"postgresql://cdc:{SECRET}@wh:port/dw"},
    ),
    Case(
        "bootstrap-without-port",
        ["sync"],
        EXIT_CONFIG,
        "setting CDC_KAFKA_BOOTSTRAP_SERVERS='broker' has 'broker', which is not host:port (port 1-65535).",
        "set a valid value",
        env={"CDC_KAFKA_BOOTSTRAP_SERVERS": "broker"},
    ),
    Case(
        "connect-url-not-http",
        ["connector", "status"],
        EXIT_CONFIG,
        "setting CDC_CONNECT_URL='ftp://connect:8083' is not an http(s) URL: expected http://host:port.",
        "set a valid value",
        env={"CDC_CONNECT_URL": "ftp://connect:8083"},
    ),
    Case(
        "password-ref-that-is-a-password",
        ["connector", "apply"],
        EXIT_CONFIG,
        "setting CDC_CONNECT_PASSWORD_REF=<hidden> should be a Kafka Connect config-provider reference",
        "set a valid value",
        env={"CDC_CONNECT_PASSWORD_REF": SECRET},
    ),
    # -- what is missing is named --
    Case(
        "empty-variable-is-unset",
        ["sync"],
        EXIT_CONFIG,
        "CDC_WAREHOUSE_URL is not set.",
        "cdc stack up",
        env={"CDC_WAREHOUSE_URL": ""},
    ),
    Case(
        "no-endpoints-at-all",
        ["topics"],
        EXIT_CONFIG,
        "CDC_KAFKA_BOOTSTRAP_SERVERS is not set.",
        "set it (env or cdc.toml), or start the local stack",
    ),
]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.run(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_named_with_its_fix(
    case: Case, clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if case.toml is not None:
        data = case.toml.encode() if isinstance(case.toml, str) else case.toml
        (clean_env / "cdc.toml").write_bytes(data)

    status, out, err = _run(case.argv, capsys)

    assert status == case.status, err
    error_line = next((line for line in err.splitlines() if line.startswith("error: ")), "")
    assert case.problem in err, err
    assert error_line, err
    fix_line = next((line for line in err.splitlines() if line.startswith("fix: ")), "")
    assert case.fix in fix_line, err
    assert "Traceback" not in out + err
    assert SECRET not in out + err


def test_the_cases_cover_at_least_25_mistakes() -> None:
    assert len(CASES) >= 25


def test_a_variable_that_is_no_setting_is_named_with_the_closest_one(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDC_FLUSH_ROW", "5")
    monkeypatch.setenv("CDC_SOURCE_PASSWORD", SECRET)  # docker-compose's: not a setting, not warned about
    monkeypatch.setenv("CDC_FASTPATH", "off")  # read by cdc/fastpath.py: honoured, so not "ignored"

    status, _out, err = _run(["sync"], capsys)

    assert status == EXIT_CONFIG  # and it went on to the next problem: no warehouse URL
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: CDC_FLUSH_ROW is set but is not a cdc setting; it is ignored (did you mean CDC_FLUSH_ROWS?)"
    ]
    assert "error: CDC_WAREHOUSE_URL is not set." in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["sync", "--until-idle", "-1"],
            "Invalid value for '--until-idle': Input should be greater than or equal to 0",
        ),
        (
            ["sync", "--stall-seconds", "0"],
            "Invalid value for '--stall-seconds': Input should be greater than or equal",
        ),
        (["sync", "--log-format", "xml"], "'xml' is not one of 'text', 'json'"),
        (["sync", "--bogus"], "No such option: --bogus"),
        (["dlq", "replay", "--id", "one"], "Invalid value for '--id': Input should be a valid integer"),
        (["snyc"], "No such command 'snyc'"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_wrong(
    argv: list[str], message: str, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(argv, capsys)

    assert status == 2
    assert message in " ".join(err.replace("│", " ").split()), err
    assert "Traceback" not in out + err


def test_an_unexpected_error_is_reported_as_a_bug_with_its_traceback(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("cdc.stack.tools.versions", broken)

    status, out, err = _run(["version"], capsys)

    assert status == EXIT_BUG
    assert err.startswith("Traceback (most recent call last)"), err
    last = err.strip().splitlines()[-2:]
    assert last[0] == "error: cdc failed unexpectedly: ZeroDivisionError: division by zero"
    assert last[1].startswith("fix: this is a bug in cdc: please report it"), last
    assert "Traceback" not in out


def test_debug_adds_the_traceback(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDC_FLUSH_ROWS", "-5")

    status, _out, err = _run(["--debug", "sync"], capsys)

    assert status == EXIT_CONFIG
    assert "Traceback (most recent call last)" in err
    assert "error: setting CDC_FLUSH_ROWS='-5' should be greater than 0." in err
