"""The one place where Kafka client errors become cdc's errors, for both consumer backends.

Authentication and authorization failures are terminal: the broker's ACLs or cdc's identity must
change. A broker that does not answer is transient: retried, the cause in every retry line. A
bootstrap host name that does not resolve is a configuration error, as in Kafka's own clients
("No resolvable bootstrap urls"): a typo, not an outage.
"""

from __future__ import annotations

import socket

from cdc.errors import AccessError, CdcError, ConfigError, TerminalError, TransientError
from cdc.settings import split_list

SETTING = "CDC_KAFKA_BOOTSTRAP_SERVERS"
_ACL_FIX = (
    "grant cdc's principal on the broker READ and DESCRIBE on the change topics, READ on its consumer group "
    "(CDC_CONSUMER_GROUP) and DESCRIBE on the cluster (kafka-acls.sh)"
)
_AUTHN_FIX = "cdc connects to Kafka without credentials (PLAINTEXT): use a listener that accepts it"


def check_resolvable(bootstrap: str) -> None:
    """Raise ConfigError if no bootstrap host resolves; a temporary DNS failure is transient."""
    failures = []
    for server in split_list(bootstrap):
        host, _, port = server.rpartition(":")
        try:
            socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:
                raise TransientError(
                    f"cannot resolve the Kafka host {host} now ({exc.strerror}).", "it is retried; check DNS"
                ) from exc
            failures.append(f"{host}: {exc.strerror}")
        else:
            return
    raise ConfigError(
        f"no host in {SETTING}={bootstrap} resolves ({'; '.join(failures)}).",
        f"correct the broker host names in {SETTING}",
    )


def unreachable(bootstrap: str, detail: str) -> TransientError:
    return TransientError(
        f"cannot reach Kafka at {bootstrap} ({detail})",
        f"check {SETTING} and that the broker is up",
    )


def kafka_error(exc: BaseException, bootstrap: str) -> CdcError:
    """A kafka-python error as cdc's."""
    name = exc.__class__.__name__
    if "AuthorizationFailed" in name:
        return AccessError(f"Kafka refused cdc: {name} ({exc}).", _ACL_FIX)
    if "Authentication" in name:
        return AccessError(f"Kafka did not authenticate cdc: {name} ({exc}).", _AUTHN_FIX)
    if getattr(exc, "retriable", False) or name in ("NoBrokersAvailable", "KafkaConnectionError", "KafkaTimeoutError"):
        return unreachable(bootstrap, name)
    return TerminalError(f"Kafka failed: {name} ({exc}).", "see the error above; it is not retried")


# librdkafka's error names (confluent_kafka.KafkaError.name()).
_CONFLUENT_AUTHZ = ("TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED")
_CONFLUENT_AUTHN = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL")


def confluent_error(error: object, bootstrap: str) -> CdcError:
    """A confluent_kafka.KafkaError (the value a KafkaException carries) as cdc's."""
    name = str(getattr(error, "name", lambda: "")())
    text = str(getattr(error, "str", lambda: error)())
    if name in _CONFLUENT_AUTHZ:
        return AccessError(f"Kafka refused cdc: {name} ({text}).", _ACL_FIX)
    if name in _CONFLUENT_AUTHN:
        return AccessError(f"Kafka did not authenticate cdc: {name} ({text}).", _AUTHN_FIX)
    fatal = bool(getattr(error, "fatal", lambda: False)())
    if fatal:
        return TerminalError(f"Kafka failed: {name} ({text}).", "see the error above; it is not retried")
    return unreachable(bootstrap, f"{name}: {text}" if name else text)


def is_refusal(error: object) -> bool:
    """A librdkafka error that stops cdc sync (reported in a callback, raised by the next poll)."""
    name = str(getattr(error, "name", lambda: "")())
    return name in _CONFLUENT_AUTHZ or name in _CONFLUENT_AUTHN or bool(getattr(error, "fatal", lambda: False)())
