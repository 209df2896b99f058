"""Fixtures shared by all tests. Tests marked `stack` need the real stack and FAIL (never skip)
when it is not reachable: start it with `cdc stack up` (.ci/run does)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg2
import pytest

from cdc.connect_api import ConnectClient
from cdc.errors import CdcError
from cdc.fastpath import Extension, load, turned_off
from cdc.settings import Settings
from cdc.stack.kafka import broker_answers
from cdc.stack.state import load_local_settings
from tests.db import execute
from tests.second_stack import use_for_worker
from tests.syncing import Lane


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (make test), each worker has a stack of its own: tests/second_stack.py.
    use_for_worker(os.environ.get("PYTEST_XDIST_WORKER"))


def _probe(settings: Settings) -> list[str]:
    problems: list[str] = []
    for name, url in (("source", settings.source_url), ("warehouse", settings.warehouse_url)):
        if url is None:
            problems.append(f"CDC_{name.upper()}_URL is not set")
            continue
        try:
            psycopg2.connect(url.get_secret_value(), connect_timeout=5).close()
        except psycopg2.OperationalError as exc:
            problems.append(f"{name} PostgreSQL unreachable: {str(exc).strip()}")
    if not settings.kafka_bootstrap_servers or not broker_answers(settings.kafka_bootstrap_servers):
        problems.append(f"Kafka unreachable at {settings.kafka_bootstrap_servers}")
    if settings.connect_url:
        client = ConnectClient(settings.connect_url, timeout=5)
        try:
            state = client.status(settings.connector_name)
            if not state.running:
                problems.append(f"connector {settings.connector_name} is {state.state}")
        except CdcError as exc:
            problems.append(exc.problem)
        finally:
            client.close()
    else:
        problems.append("CDC_CONNECT_URL is not set")
    return problems


@pytest.fixture(scope="session")
def stack() -> Settings:
    settings = load_local_settings()
    problems = _probe(settings)
    if problems:
        pytest.fail(
            "these tests need the real stack, which is not reachable:\n  - "
            + "\n  - ".join(problems)
            + "\nstart it with: cdc stack up",
            pytrace=False,
        )
    return settings


@pytest.fixture(scope="session")
def source_url(stack: Settings) -> str:
    return stack.require_source_url()


@pytest.fixture(scope="session")
def warehouse_url(stack: Settings) -> str:
    return stack.require_warehouse_url()


@pytest.fixture
def lane(stack: Settings, request: pytest.FixtureRequest, kafka_client: str) -> Iterator[Lane]:
    """A test's private source schema, warehouse schema and consumer group; dropped afterwards."""
    tag = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:10]
    lane = Lane.new(tag, kafka_client)
    yield lane
    execute(stack.require_source_url(), f'DROP SCHEMA IF EXISTS "{lane.source_schema}" CASCADE')
    execute(stack.require_warehouse_url(), f'DROP SCHEMA IF EXISTS "{lane.warehouse_schema}" CASCADE')


KAFKA_CLIENTS = ("kafka-python", "confluent")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked both_clients run once per consumer backend (CDC_KAFKA_CLIENT); the others
    use the default, kafka-python."""
    chosen = any(
        "kafka_client" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")
    )  # the test names its backends itself
    if "kafka_client" in metafunc.fixturenames and not chosen:
        both = metafunc.definition.get_closest_marker("both_clients") is not None
        metafunc.parametrize("kafka_client", KAFKA_CLIENTS if both else KAFKA_CLIENTS[:1], ids=lambda c: c)


@pytest.fixture(scope="module")
def fast() -> Extension:
    """The compiled fast path. In CI it must be built (make install builds it where cargo is);
    elsewhere its tests are skipped without it, as they are under CDC_FASTPATH=off."""
    if turned_off():
        pytest.skip("CDC_FASTPATH=off: the Python path only")
    extension = load()
    if extension is None:
        if os.environ.get("CI"):
            pytest.fail("the fast path extension is not built: make install builds it (needs cargo)")
        pytest.skip("the fast path extension is not built (make install, with cargo)")
    return extension
