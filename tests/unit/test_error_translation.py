"""Driver errors become cdc's errors in one place per system: terminal (AccessError, ConfigError,
TerminalError) or transient, decided by the error itself. The real stack shows the same for the
errors it can produce (tests/integration/test_bad_input.py); these are the ones it cannot, built
with the drivers' own exception classes and libpq's own wording."""

from __future__ import annotations

import kafka.errors
import psycopg2
import pytest
from confluent_kafka import KafkaError

from cdc.errors import AccessError, CdcError, ConfigError, TerminalError, TransientError
from cdc.kafka_errors import check_resolvable, confluent_error, is_refusal, kafka_error
from cdc.pgerrors import translate

LEAD = 'connection to server at "10.0.0.5", port 5432 failed: '


@pytest.mark.parametrize(
    ("message", "kind", "problem", "fix"),
    [
        (
            LEAD + 'FATAL:  password authentication failed for user "etl"',
            AccessError,
            'cannot connect to the warehouse (28P01): password authentication failed for user "etl"',
            "correct the password in CDC_WAREHOUSE_URL",
        ),
        (
            LEAD + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "etl", database "dw", no encryption',
            AccessError,
            'cannot connect to the warehouse (28000): no pg_hba.conf entry for host "10.0.0.9"',
            "pg_hba.conf",
        ),
        (
            LEAD + 'FATAL:  role "etl" is not permitted to log in',
            AccessError,
            'cannot connect to the warehouse (28000): role "etl" is not permitted to log in',
            "ALTER ROLE ... LOGIN",
        ),
        (
            LEAD + 'FATAL:  permission denied for database "dw"\nDETAIL:  User does not have CONNECT privilege.',
            AccessError,
            'cannot connect to the warehouse (42501): permission denied for database "dw"',
            "GRANT CONNECT ON DATABASE",
        ),
        (
            "fe_sendauth: no password supplied",
            AccessError,
            "cannot connect to the warehouse (28P01): fe_sendauth: no password supplied",
            "put the password in CDC_WAREHOUSE_URL",
        ),
        (
            'could not translate host name "dw.internal" to address: Name or service not known',
            ConfigError,
            'cannot connect to the warehouse: could not translate host name "dw.internal"',
            "correct the host name in CDC_WAREHOUSE_URL",
        ),
        (
            'invalid integer value "abc" for connection option "port"',
            ConfigError,
            "CDC_WAREHOUSE_URL is not a valid connection URL",
            "correct CDC_WAREHOUSE_URL",
        ),
        # What no retry can fix is terminal; everything else about connecting is worth retrying.
        (
            'could not translate host name "dw.internal" to address: Temporary failure in name resolution',
            TransientError,
            "the warehouse failed while connecting",
            "up and reachable",
        ),
        (
            LEAD + "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
            TransientError,
            "the warehouse failed while connecting (connection to server",
            "up and reachable at CDC_WAREHOUSE_URL",
        ),
        (
            LEAD + "FATAL:  the database system is starting up",
            TransientError,
            "the warehouse failed while connecting",
            "up and reachable",
        ),
        (
            LEAD + "FATAL:  sorry, too many clients already",
            TransientError,
            "the warehouse failed while connecting",
            "up and reachable",
        ),
        (
            "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
            TransientError,
            "the warehouse failed while connecting (server closed the connection unexpectedly)",
            "up and reachable",
        ),
    ],
)
def test_a_failed_connection_is_classified_by_libpqs_message(
    message: str, kind: type[CdcError], problem: str, fix: str
) -> None:
    error = translate(psycopg2.OperationalError(message), "connecting", "warehouse")

    assert type(error) is kind
    assert problem in error.problem
    assert error.fix is not None
    assert fix in error.fix


def test_the_source_names_its_own_setting() -> None:
    error = translate(
        psycopg2.OperationalError(LEAD + 'FATAL:  database "shop" does not exist'), "connecting", "source"
    )

    assert isinstance(error, AccessError)
    assert error.problem == 'cannot connect to the source (3D000): database "shop" does not exist'
    assert error.fix == "correct the database name in CDC_SOURCE_URL, or create it (CREATE DATABASE ...)"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (kafka.errors.GroupAuthorizationFailedError("cdc-sync"), AccessError),
        (kafka.errors.TopicAuthorizationFailedError("cdc.shop.orders"), AccessError),
        (kafka.errors.ClusterAuthorizationFailedError(), AccessError),
        (kafka.errors.SaslAuthenticationFailedError("bad credentials"), AccessError),
        (kafka.errors.NoBrokersAvailable(), TransientError),
        (kafka.errors.KafkaConnectionError("reset"), TransientError),
        (kafka.errors.KafkaTimeoutError(), TransientError),
        (kafka.errors.RequestTimedOutError(), TransientError),
        (kafka.errors.UnsupportedVersionError(), TerminalError),
    ],
    ids=lambda e: e.__class__.__name__ if isinstance(e, Exception) else e.__name__,
)
def test_kafka_python_errors(error: Exception, kind: type[CdcError]) -> None:
    translated = kafka_error(error, "broker:9092")

    assert type(translated) is kind
    if kind is AccessError:
        assert translated.problem.startswith(("Kafka refused cdc: ", "Kafka did not authenticate cdc: "))
    if kind is TransientError:
        assert translated.problem.startswith(f"cannot reach Kafka at broker:9092 ({error.__class__.__name__}")


@pytest.mark.parametrize(
    ("code", "kind", "refusal"),
    [
        (KafkaError.GROUP_AUTHORIZATION_FAILED, AccessError, True),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, AccessError, True),
        (KafkaError.SASL_AUTHENTICATION_FAILED, AccessError, True),
        (KafkaError._AUTHENTICATION, AccessError, True),
        (KafkaError._TRANSPORT, TransientError, False),
        (KafkaError._ALL_BROKERS_DOWN, TransientError, False),
        (KafkaError._TIMED_OUT, TransientError, False),
    ],
)
def test_librdkafka_errors(code: int, kind: type[CdcError], refusal: bool) -> None:
    error = KafkaError(code)

    translated = confluent_error(error, "broker:9092")

    assert type(translated) is kind
    assert error.name() in translated.problem
    assert is_refusal(error) is refusal


def test_a_fatal_librdkafka_error_is_terminal() -> None:
    error = KafkaError(KafkaError._FATAL, "the producer was fenced", fatal=True)

    assert isinstance(confluent_error(error, "b:9092"), TerminalError)
    assert is_refusal(error)


def test_a_bootstrap_host_that_does_not_resolve_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as caught:
        check_resolvable("no-such-broker.invalid:9092,also-not.invalid:9093")

    assert caught.value.problem.startswith(
        "no host in CDC_KAFKA_BOOTSTRAP_SERVERS=no-such-broker.invalid:9092,also-not.invalid:9093 resolves "
        "(no-such-broker.invalid: "
    )
    assert caught.value.fix == "correct the broker host names in CDC_KAFKA_BOOTSTRAP_SERVERS"


def test_one_resolvable_bootstrap_host_is_enough() -> None:
    check_resolvable("no-such-broker.invalid:9092,127.0.0.1:9092")
