"""The schema-change alert sender (cdc/schema/alerts.py) against the real warehouse PostgreSQL and a
real HTTP endpoint on loopback that can answer 200, answer 500, hang, or be closed.

The outbox lives in a scratch database of this module's own: a sender posts every pending row of
its table, and must neither post nor mark the rows of other tests (or of a `cdc sync` some test
runs) that share the stack's warehouse. Each test's rows still carry a marker of their own and are
deleted afterwards, as the tests of this module share that database."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql
from sqlalchemy.engine import make_url

from cdc.errors import ConfigError
from cdc.resources import sql_file
from cdc.schema.alerts import WebhookSender, pending_count
from tests.db import drop_database, execute, query
from tests.webhook import HOOK_PATH, Endpoint

pytestmark = pytest.mark.stack

SECRET = "SECRETTOKEN"
BIG = "12345678901234567890.123456789"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held; fails the test if it does not within `timeout`."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - began


@pytest.fixture(scope="module")
def outbox_url(warehouse_url: str) -> Iterator[str]:
    name = f"alerts_{uuid.uuid4().hex[:8]}"
    execute(warehouse_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(warehouse_url).set(database=name).render_as_string(hide_password=False)
    try:
        execute(url, sql_file("warehouse_bootstrap.sql"))
        yield url
    finally:
        drop_database(warehouse_url, name)


@pytest.fixture
def marker(outbox_url: str) -> Iterator[str]:
    """This test's tag in its payloads; its rows are deleted afterwards."""
    tag = uuid.uuid4().hex
    yield tag
    execute(outbox_url, f"DELETE FROM cdc.alert_outbox WHERE payload->>'test' = '{tag}'")


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # loopback, never through a proxy
    server = Endpoint()
    yield server
    server.release()
    server.close()


@pytest.fixture
def senders() -> Iterator[list[WebhookSender]]:
    """Every sender a test makes; whichever still runs at the end is stopped."""
    made: list[WebhookSender] = []
    yield made
    for sender in made:
        sender.stop(1.0)


def insert(url: str, marker: str, count: int) -> list[int]:
    """`count` alerts, each committed on its own (as sync's are); their ids, in order. Each holds a
    number no float can (it must reach the endpoint as stored, not rounded)."""
    ids = []
    for n in range(count):
        payload = f'{{"test": "{marker}", "n": {n}, "text": "column added #{n}", "exact": {BIG}}}'
        ids.append(query(url, "INSERT INTO cdc.alert_outbox (payload) VALUES (%s) RETURNING id", (payload,))[0][0])
    return ids


def rows(url: str, marker: str) -> dict[int, tuple[Any, ...]]:
    """id -> (payload, attempts, last_error, delivered_at) of the test's rows."""
    found = query(
        url,
        "SELECT id, payload, attempts, last_error, delivered_at FROM cdc.alert_outbox"
        " WHERE payload->>'test' = %s ORDER BY id",
        (marker,),
    )
    return {row[0]: row[1:] for row in found}


def all_delivered(url: str, marker: str) -> Callable[[], bool]:
    return lambda: all(row[3] is not None for row in rows(url, marker).values())


def stored_text(url: str, ids: list[int]) -> list[str]:
    statement = "SELECT payload::text FROM cdc.alert_outbox WHERE id = ANY(%s) ORDER BY id"
    return [row[0] for row in query(url, statement, (ids,))]


def test_pending_alerts_are_posted_once_each_in_order_and_marked(
    outbox_url: str, marker: str, endpoint: Endpoint, senders: list[WebhookSender], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdc.alerts")
    ids = insert(outbox_url, marker, 3)
    sender = WebhookSender(outbox_url, endpoint.url, poll_every=0.1)
    senders.append(sender)
    sender.start()

    wait_for(all_delivered(outbox_url, marker), 5, "three alerts delivered")
    time.sleep(0.3)  # a few more polls: none may post an alert again
    assert sender.stop() is True

    posted = endpoint.requests
    assert [r.key for r in posted] == [f"cdc-alert-{i}" for i in ids]
    assert all(r.status == 200 and r.path == HOOK_PATH for r in posted)
    assert all(r.headers["Content-Type"] == "application/json" for r in posted)
    assert [r.body.decode() for r in posted] == stored_text(outbox_url, ids)
    stored = rows(outbox_url, marker)
    for request, alert_id in zip(posted, ids, strict=True):
        body = json.loads(request.body)
        assert body == stored[alert_id][0]
        assert BIG in request.body.decode()  # not rounded through a float
    assert [(attempts, error) for _, attempts, error, delivered in stored.values() if delivered] == [(1, None)] * 3
    delivered = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert delivered == [f"alert {i} delivered to 127.0.0.1:{endpoint.port} (attempt 1)" for i in ids]


def test_an_endpoint_down_for_a_while_gets_every_alert_once_and_never_sees_its_url_leak(
    outbox_url: str, marker: str, endpoint: Endpoint, senders: list[WebhookSender], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cdc.alerts")
    endpoint.mode = "fail"
    ids = insert(outbox_url, marker, 3)
    sender = WebhookSender(outbox_url, endpoint.url, poll_every=0.1, min_backoff=0.05, max_backoff=0.2)
    senders.append(sender)
    sender.start()

    # The first alert fails and holds the two behind it: the endpoint sees only the first.
    wait_for(lambda: len(endpoint.answered(500)) >= 3, 5, "three failed posts")
    assert {r.key for r in endpoint.answered(500)} == {f"cdc-alert-{ids[0]}"}
    first = rows(outbox_url, marker)[ids[0]]
    assert first[1] >= 2
    assert first[2].startswith("HTTP 500: internal error while posting to ")
    assert SECRET not in first[2]

    endpoint.close()  # connection refused
    wait_for(lambda: (rows(outbox_url, marker)[ids[0]][2] or "").startswith("ConnectError"), 5, "a refused post")
    endpoint.mode = "ok"
    endpoint.reopen()

    wait_for(all_delivered(outbox_url, marker), 5, "every alert delivered")
    assert sender.stop() is True
    ok = endpoint.answered(200)
    assert [r.key for r in ok] == [f"cdc-alert-{i}" for i in ids]
    stored = rows(outbox_url, marker)
    assert stored[ids[0]][1] > 2  # its failures (500s and refusals) and the delivery
    assert [stored[i][1] for i in ids[1:]] == [1, 1]  # held, never tried before the first got through
    assert stored[ids[0]][2].startswith("ConnectError")  # the last failure stays, for the record

    texts = [record.getMessage() for record in caplog.records] + [str(row[2]) for row in stored.values()]
    assert not [text for text in texts if SECRET in text or "/services/" in text]
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"alert webhook 127.0.0.1:{endpoint.port}: alert {ids[0]}, attempt 1 failed: HTTP 500: " in line
        and "next try in" in line
        for line in failures
    ), failures
    assert any("failed: ConnectError" in line for line in failures), failures


def test_stop_returns_within_its_timeout_while_the_endpoint_hangs(
    outbox_url: str, marker: str, endpoint: Endpoint, senders: list[WebhookSender]
) -> None:
    endpoint.mode = "hang"
    (alert_id,) = insert(outbox_url, marker, 1)
    sender = WebhookSender(outbox_url, endpoint.url, timeout=2.0, poll_every=0.1)
    senders.append(sender)
    sender.start()
    wait_for(lambda: len(endpoint.requests) == 1, 5, "the post that hangs")

    began = time.monotonic()
    ended = sender.stop(timeout=1.0)
    took = time.monotonic() - began
    assert took < 2.0, f"stop() took {took:.1f} s"
    assert ended is False  # the post is still in flight: left to its own timeout

    # The request timeout ends it: recorded as a failure, not delivered, due again later.
    wait_for(lambda: rows(outbox_url, marker)[alert_id][1] == 1, 4, "the timed-out post recorded")
    _, _, error, delivered = rows(outbox_url, marker)[alert_id]
    assert delivered is None
    assert error.startswith("ReadTimeout"), error
    assert len(endpoint.requests) == 1


def test_stop_returns_at_once_during_a_backoff(
    outbox_url: str, marker: str, endpoint: Endpoint, senders: list[WebhookSender]
) -> None:
    endpoint.mode = "fail"
    insert(outbox_url, marker, 1)
    sender = WebhookSender(outbox_url, endpoint.url, poll_every=0.1, min_backoff=60, max_backoff=60)
    senders.append(sender)
    sender.start()
    wait_for(lambda: len(endpoint.requests) == 1, 5, "the failed post")
    wait_for(lambda: next(iter(rows(outbox_url, marker).values()))[1] == 1, 5, "its failure recorded")

    began = time.monotonic()
    assert sender.stop(timeout=5.0) is True
    assert time.monotonic() - began < 0.5


def test_wake_delivers_a_new_alert_at_once_without_waiting_for_the_poll(
    outbox_url: str, marker: str, endpoint: Endpoint, senders: list[WebhookSender]
) -> None:
    (first,) = insert(outbox_url, marker, 1)
    sender = WebhookSender(outbox_url, endpoint.url, poll_every=60)
    senders.append(sender)
    sender.start()
    wait_for(lambda: len(endpoint.requests) == 1, 5, "the alert present at start")  # its first round is over

    (second,) = insert(outbox_url, marker, 1)
    time.sleep(0.5)
    assert len(endpoint.requests) == 1  # the poll is a minute away
    sender.wake()
    took = wait_for(lambda: len(endpoint.requests) == 2, 1.0, "the woken sender's post")
    assert [r.key for r in endpoint.requests] == [f"cdc-alert-{first}", f"cdc-alert-{second}"]
    wait_for(all_delivered(outbox_url, marker), 1.0, "both marked delivered")
    assert took < 1.0


def test_two_senders_on_one_outbox_post_each_alert_once(
    outbox_url: str, marker: str, endpoint: Endpoint, senders: list[WebhookSender], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cdc.alerts")
    endpoint.delay = 0.005  # a batch of 50 takes a while: the other sender's round overlaps it
    ids = insert(outbox_url, marker, 130)
    pair = [WebhookSender(outbox_url, endpoint.url, poll_every=0.1) for _ in range(2)]
    senders.extend(pair)
    for sender in pair:
        sender.start()

    wait_for(all_delivered(outbox_url, marker), 15, "130 alerts delivered")
    time.sleep(0.3)
    assert all(sender.stop() for sender in pair)
    keys = [r.key for r in endpoint.requests]
    assert sorted(keys) == sorted(f"cdc-alert-{i}" for i in ids)  # each once, none twice
    assert all(row[1] == 1 for row in rows(outbox_url, marker).values())
    threads = {r.threadName for r in caplog.records if "delivered" in r.getMessage()}
    assert len(threads) == 2, threads  # both took a share


def test_a_lost_warehouse_is_reported_once_and_the_sender_reconnects(  # noqa: PLR0917 - pytest fixtures
    outbox_url: str,
    warehouse_url: str,
    marker: str,
    endpoint: Endpoint,
    senders: list[WebhookSender],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cdc.alerts")
    name = make_url(outbox_url).database or ""
    database = sql.Identifier(name)
    sender = WebhookSender(outbox_url, endpoint.url, poll_every=0.1, min_backoff=0.05, max_backoff=0.1)
    senders.append(sender)
    sender.start()
    wait_for(lambda: bool(sender_sessions(warehouse_url, name)), 5, "the sender connected")

    # The outage: the sender's connection ended, new ones refused, for several reconnects.
    execute(warehouse_url, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
    try:
        for pid in sender_sessions(warehouse_url, name):
            execute(warehouse_url, f"SELECT pg_terminate_backend({pid})")
        time.sleep(1.0)
    finally:
        execute(warehouse_url, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))
    ids = insert(outbox_url, marker, 2)
    wait_for(all_delivered(outbox_url, marker), 5, "alerts delivered after the outage")
    assert sender.stop() is True

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("alert outbox: the warehouse failed while "), warnings
    assert any(r.getMessage().startswith("alert outbox: the warehouse answers again") for r in caplog.records)
    assert [r.key for r in endpoint.requests] == [f"cdc-alert-{i}" for i in ids]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def sender_sessions(admin_url: str, database: str) -> list[int]:
    """The pids of the senders' sessions in the scratch database (only there: a `cdc sync` of
    another test may run a sender of its own)."""
    statement = "SELECT pid FROM pg_stat_activity WHERE application_name = 'cdc-alerts' AND datname = %s"
    return [row[0] for row in query(admin_url, statement, (database,))]


def test_pending_count_counts_what_is_not_delivered(outbox_url: str, marker: str) -> None:
    ids = insert(outbox_url, marker, 3)
    execute(outbox_url, f"UPDATE cdc.alert_outbox SET delivered_at = now() WHERE id = {ids[0]}")
    conn = psycopg2.connect(outbox_url)
    try:
        assert pending_count(conn) == 2
    finally:
        conn.close()


def test_only_the_host_of_the_webhook_url_is_shown() -> None:
    url = "https://bot:pass1234@hooks.example.com/services/T0/B0/XOXBTOKEN123?token=abcdefgh12&v=1"
    sender = WebhookSender("postgresql://unused/", url)
    assert sender.host == "hooks.example.com"
    echoed = f"POST {url} failed; path /services/T0/B0/XOXBTOKEN123 token abcdefgh12 pass1234"
    blanked = sender._scrub(echoed)
    assert not [part for part in ("XOXBTOKEN123", "abcdefgh12", "pass1234", "/services/") if part in blanked]
    assert blanked.startswith("POST <redacted> failed")
    for bad in ("hooks.example.com/services/T0/B0/XOXBTOKEN123", "ftp://hooks.example.com/XOXBTOKEN123"):
        with pytest.raises(ConfigError) as raised:
            WebhookSender("postgresql://unused/", bad)
        assert "XOXBTOKEN123" not in str(raised.value)
