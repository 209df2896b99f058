"""Delivering schema-change alerts to a webhook, from the warehouse's outbox (cdc.alert_outbox).

`cdc sync` inserts an alert in the transaction that applies the schema change it announces, so an
alert exists exactly when its change does. A WebhookSender posts the pending alerts from a daemon
thread with a warehouse connection of its own: a webhook that is down, slow or hanging delays
nothing in sync, and loses nothing.

Choices, and why:

* Order over progress. Alerts are posted in id order, and the first failure ends the round: the
  failed alert and those behind it in the batch wait out the same backoff, and this sender posts
  nothing before it ends (wake() does not cut it short). Chat webhooks (Slack and alike) are
  all-or-nothing, down or up, so skipping past a failed alert would only scramble the order a
  reader sees. The price: an endpoint that refuses one payload for good (a 4xx about its content)
  holds every later alert. last_error says why; setting that row's delivered_at (or deleting it)
  lets the others through.
* Several sync processes may share one warehouse: each takes its batch FOR UPDATE SKIP LOCKED, so
  each alert is posted by one of them. Order then holds within a sender's batches, not across
  senders.
* At least once, not exactly once. An alert is marked delivered in the transaction that locked it,
  after its POST, and a round's marks commit together: a crash or a lost warehouse between the POST
  and the commit posts it again. Every request carries `Idempotency-Key: cdc-alert-<id>` so that a
  receiver can tell a repeat; the body is the payload exactly as stored, nothing added.
* The webhook URL is a secret (Slack's carry a token in the path). Logs and last_error name its
  host only, and every text that could echo it (an exception's message, the response's body) has
  the URL, its path and its longer path parts and query values blanked out.
* Backoff: 1 s, 2 s, 4 s ... up to max_backoff after a row's 1st, 2nd, 3rd failure, each shortened
  by a random part of up to half, so that senders which failed together do not retry together.
* stop() waits at most its timeout. A POST in flight is bounded by the request timeout; if it
  outlasts stop(), the daemon thread is left to finish it (or to die with the process, when its
  uncommitted round is rolled back and posted again later).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import threading
import time
import traceback
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import httpx
import psycopg2
import psycopg2.extensions

from cdc import pgerrors
from cdc.errors import CdcError, ConfigError

log = logging.getLogger("cdc.alerts")

BATCH = 50
_BODY_CHARS = 200  # of an error response's body, in last_error and the log
_READ_AT_MOST = 4096  # bytes of an error response read: its start is all last_error keeps
_RECONNECT_CAP = 30.0  # seconds between warehouse reconnects, however long the outage
_SECRET_PART = 8  # path parts and query values this long or longer may be the token: blanked
_REDACTED = "<redacted>"

# payload::text: PostgreSQL's own rendering of the jsonb, posted as is. Decoding it into Python and
# encoding it again could change it (a numeric wider than a float, key order).
_TAKE = """
    SELECT id, payload::text, attempts FROM cdc.alert_outbox
    WHERE delivered_at IS NULL AND next_attempt_at <= now() AND scope = %s
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
_DELIVERED = "UPDATE cdc.alert_outbox SET delivered_at = now(), attempts = attempts + 1 WHERE id = %s"
# clock_timestamp(), not now(): now() is when the round's transaction began, and posting a batch to
# a slow endpoint can take longer than the backoff.
_FAILED = """
    UPDATE cdc.alert_outbox
    SET attempts = attempts + 1, last_error = %s, next_attempt_at = clock_timestamp() + make_interval(secs => %s)
    WHERE id = %s
"""
_HELD = """
    UPDATE cdc.alert_outbox SET next_attempt_at = clock_timestamp() + make_interval(secs => %s)
    WHERE id = ANY(%s)
"""
_PENDING = "SELECT count(*) FROM cdc.alert_outbox WHERE delivered_at IS NULL"

_numbers = itertools.count(1)  # thread names: which sender logged a line, when a process runs several


def pending_count(conn: psycopg2.extensions.connection) -> int:
    """Alerts not delivered yet, due or waiting out a backoff. Runs in the caller's transaction."""
    with conn.cursor() as cur:
        cur.execute(_PENDING)
        row = cur.fetchone()
    return int(row[0]) if row else 0


def backoff(attempt: int, min_backoff: float, max_backoff: float) -> float:
    """Seconds before the next try after a row's `attempt`-th failure."""
    ceiling = min(max_backoff, min_backoff * 2.0 ** min(attempt - 1, 32))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 -- jitter, not a secret


@dataclass(frozen=True)
class _Round:
    taken: int
    backoff: float | None  # seconds: an alert failed, nothing is posted before they pass


class WebhookSender:
    """Posts cdc.alert_outbox's pending alerts to a webhook, in the background (module docstring)."""

    def __init__(
        self,
        warehouse_url: str,
        webhook_url: str,
        *,
        timeout: float = 5.0,
        max_backoff: float = 300.0,
        poll_every: float = 5.0,
        min_backoff: float = 1.0,
        scope: str = "",
    ) -> None:
        self._warehouse_url = warehouse_url
        # Only the alerts of this deployment (its warehouse schema): others may have webhooks of their own.
        self._scope = scope
        self._webhook_url = webhook_url
        self._host, self._secrets = _inspect(webhook_url)
        self._timeout = timeout
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._poll_every = poll_every
        self._stopping = threading.Event()
        self._wakeup = threading.Event()  # wake() or stop(): look at the outbox now
        self._thread: threading.Thread | None = None
        self._conn: psycopg2.extensions.connection | None = None
        self._outage: float | None = None  # monotonic time the warehouse was first found failing
        self._reconnects = 0

    @property
    def host(self) -> str:
        """The webhook's host (and port), the part of its URL that may be shown."""
        return self._host

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this WebhookSender was started already")
        self._thread = threading.Thread(target=self._run, name=f"cdc-alerts-{next(_numbers)}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A new alert was committed: look for it now rather than at the next poll."""
        self._wakeup.set()

    def drain(self, timeout: float = 10.0) -> None:
        """Before stopping on an error just alerted: give the thread up to `timeout` seconds to post
        this schema's pending alerts (those it cannot post stay in the outbox for the next start)."""
        self.wake()
        deadline = time.monotonic() + timeout
        try:
            conn = psycopg2.connect(self._warehouse_url, connect_timeout=5)
        except psycopg2.Error:
            return
        try:
            conn.autocommit = True
            while time.monotonic() < deadline:
                with conn.cursor() as cur:
                    cur.execute(_PENDING + " AND scope = %s", (self._scope,))
                    row = cur.fetchone()
                if not row or not row[0]:
                    return
                time.sleep(0.2)
        except psycopg2.Error:
            return
        finally:
            conn.close()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop, waiting at most `timeout` seconds; True if the thread has ended."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "alert webhook %s: still busy after %.1f s, not waiting longer; an alert whose delivery"
                " is not recorded when this process ends is posted again later",
                self._host,
                timeout,
            )
            return False
        return True

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        client = httpx.Client(timeout=self._timeout, headers={"User-Agent": "cdc-alerts"})
        try:
            while not self._stopping.is_set():
                self._wakeup.clear()  # before the round: a wake() during it means look again
                try:
                    self._step(client)
                except Exception as exc:  # the thread must outlive whatever goes wrong in a round
                    self._close()
                    text = self._scrub("".join(traceback.format_exception(exc)))
                    # Not log.exception: its traceback would carry the unscrubbed message.
                    log.error("alert webhook %s: unexpected error, retrying:\n%s", self._host, text)  # noqa: TRY400
                    self._sleep(min(self._max_backoff, _RECONNECT_CAP), wakeable=False)
        finally:
            client.close()
            self._close()

    def _step(self, client: httpx.Client) -> None:
        conn = self._connection()
        if conn is None:
            return
        try:
            result = self._round(conn, client)
        except psycopg2.Error as exc:
            self._warehouse_failed(pgerrors.translate(exc, "delivering alerts", "warehouse"))
            return
        if self._outage is not None:
            log.info("alert outbox: the warehouse answers again, after %.0f s", time.monotonic() - self._outage)
            self._outage = None
            self._reconnects = 0
        if result.backoff is not None:
            self._sleep(result.backoff, wakeable=False)
        elif result.taken < BATCH:  # a full batch: more may be due at once
            self._sleep(self._poll_every, wakeable=True)

    def _connection(self) -> psycopg2.extensions.connection | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = pgerrors.connect(self._warehouse_url, "warehouse", application_name="cdc-alerts")
        except CdcError as exc:
            self._warehouse_failed(exc)
            return None
        return self._conn

    def _warehouse_failed(self, exc: CdcError) -> None:
        self._close()
        self._reconnects += 1
        wait = backoff(self._reconnects, self._min_backoff, min(self._max_backoff, _RECONNECT_CAP))
        if self._outage is None:  # once per outage: a long one would fill the log otherwise
            self._outage = time.monotonic()
            log.warning("alert outbox: %s; alerts wait, reconnecting with backoff", self._scrub(exc.problem))
        else:
            log.debug("alert outbox: %s; next reconnect in %.1f s", self._scrub(exc.problem), wait)
        self._sleep(wait, wakeable=False)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None

    def _round(self, conn: psycopg2.extensions.connection, client: httpx.Client) -> _Round:
        wait: float | None = None
        with conn.cursor() as cur:
            cur.execute(_TAKE, (self._scope, BATCH))
            rows: list[tuple[int, str, int]] = cur.fetchall()
            for index, (alert_id, body, attempts) in enumerate(rows):
                if self._stopping.is_set():
                    break  # the rest stay due, for this process's next start or another sender
                attempt = attempts + 1
                reason = self._post(client, alert_id, body)
                if reason is None:
                    cur.execute(_DELIVERED, (alert_id,))
                    log.info(
                        "alert %d delivered to %s (attempt %d)",
                        alert_id,
                        self._host,
                        attempt,
                        extra={"alert_id": alert_id, "attempts": attempt},
                    )
                    continue
                wait = backoff(attempt, self._min_backoff, self._max_backoff)
                cur.execute(_FAILED, (reason, wait, alert_id))
                behind = [row[0] for row in rows[index + 1 :]]
                if behind:
                    cur.execute(_HELD, (wait, behind))
                log.warning(
                    "alert webhook %s: alert %d, attempt %d failed: %s; next try in %.1f s",
                    self._host,
                    alert_id,
                    attempt,
                    reason,
                    wait,
                    extra={"alert_id": alert_id, "attempts": attempt},
                )
                break
        conn.commit()
        return _Round(len(rows), wait)

    def _post(self, client: httpx.Client, alert_id: int, body: str) -> str | None:
        """None if the webhook took the alert, else why not, fit for last_error and the log."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"cdc-alert-{alert_id}"}
        try:
            with client.stream("POST", self._webhook_url, content=body.encode(), headers=headers) as response:
                if response.is_success:
                    return None
                start = b""
                for chunk in response.iter_bytes():
                    start += chunk
                    if len(start) >= _READ_AT_MOST:
                        break
        except Exception as exc:  # whatever stops a POST is one failed attempt, retried
            message = " ".join(str(exc).split())
            return self._scrub(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
        text = start.decode(response.encoding or "utf-8", errors="replace")
        if len(start) >= _READ_AT_MOST and self._secrets:
            # The read may have cut a secret in two, and a half no longer matches: drop the tail.
            text = text[: max(0, len(text) - len(self._secrets[0]))]
        # Blanked before it is cut, for the same reason.
        text = " ".join(self._scrub(text).split())[:_BODY_CHARS]
        return f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _sleep(self, seconds: float, *, wakeable: bool) -> None:
        """Wait `seconds`, less if stopped (or woken, if `wakeable`)."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._wakeup.wait(remaining):
                self._wakeup.clear()
                if wakeable:
                    return


def _inspect(webhook_url: str) -> tuple[str, list[str]]:
    """The URL's host (to show), and the parts of it that may be secret (to blank out), longest
    first so that a part inside another is not blanked before the whole."""
    fix = "set the alert webhook URL to its full http(s)://host/... address"
    try:
        parts = urlsplit(webhook_url)
        port = parts.port
    except ValueError:
        raise ConfigError("the alert webhook URL is not a valid URL", fix) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("the alert webhook URL is not an http(s) URL with a host", fix)
    host = parts.hostname if port is None else f"{parts.hostname}:{port}"
    # Not the short ones: blanking "/" or a one-letter user name would garble every message.
    whole = {webhook_url, parts.path, parts.path + "?" + parts.query, parts.query, parts.fragment, parts.password}
    pieces = {*parts.path.split("/"), *(value for _, value in parse_qsl(parts.query))}
    secrets = {s for s in whole if s and len(s) >= 4} | {s for s in pieces if len(s) >= _SECRET_PART}
    return host, sorted(secrets, key=len, reverse=True)
