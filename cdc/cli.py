"""The `cdc` command line. Each command loads settings once and calls one function of the core.

Errors end here, in one place (`run`): a CdcError prints `error: <problem>` and `fix: <how>` and
exits with its class's status (cdc/errors.py), its traceback only with --debug; anything else is a
bug, reported as one, with its traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cdc import __version__
from cdc.errors import EXIT_BUG, CdcError, ConfigError, NotFoundError
from cdc.settings import Settings, load_settings

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

app = typer.Typer(
    help="Change-data-capture replication: PostgreSQL -> Debezium -> Kafka -> warehouse.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="The native local stack (PostgreSQL, Kafka, Kafka Connect + Debezium).",
    no_args_is_help=True,
)
connector_app = typer.Typer(
    help="The Debezium source connector, through Kafka Connect's REST API.", no_args_is_help=True
)
demo_app = typer.Typer(help="A demo online-shop source database and a live workload.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(connector_app, name="connector")
dlq_app = typer.Typer(help="The dead-letter table: messages sync could not apply.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
app.add_typer(dlq_app, name="dlq")
schema_app = typer.Typer(help="Source schema changes: capture, history, policies.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class _Options:
    debug = False


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="CDC_DEBUG", help="Print the traceback of an error too.")
    ] = False,
) -> None:
    """Change-data-capture replication: PostgreSQL -> Debezium -> Kafka -> warehouse."""
    _Options.debug = debug


def say(line: str) -> None:
    out.print(line, markup=False, soft_wrap=True)


def _label(label: str, style: str, text: str) -> Text:
    # Text, not markup: a message may hold brackets (topic[0], a JSON snippet) that rich would eat.
    return Text.assemble((label, style), " ", text)


def note(line: str) -> None:
    """A line for people on stderr (stdout holds --json output)."""
    err.print(line, soft_wrap=True, highlight=False)


def warn(line: str) -> None:
    err.print(_label("warning:", "bold yellow", line), soft_wrap=True)


def _settings() -> Settings:
    from cdc.stack.state import with_stack_defaults

    return with_stack_defaults(load_settings(warn=warn))


@app.command()
def version() -> None:
    """Print cdc's version and the pinned Kafka / Debezium / PostgreSQL versions."""
    from cdc.stack.tools import versions

    v = versions()
    say(f"cdc {__version__} (Kafka {v.kafka}, Debezium {v.debezium}, PostgreSQL {v.postgres_major})")


@stack_app.command("up")
def stack_up() -> None:
    """Start the stack (idempotent) and wait until every part is ready and the connector RUNNING."""
    from cdc.stack import control

    say("cdc stack up")
    control.up(_settings(), say)
    say('ready. Point your shell at it with: eval "$(cdc stack env)"')


@stack_app.command("down")
def stack_down(
    wipe: Annotated[bool, typer.Option("--wipe", help="Also delete all data (jars are kept).")] = False,
) -> None:
    """Stop exactly the processes the stack started; keep the data unless --wipe."""
    from cdc.stack import control

    say("cdc stack down")
    control.down(_settings(), say, wipe=wipe)


@stack_app.command("status")
def stack_status() -> None:
    """Show each part of the stack and the source connector's state. Exit 1 if a part is down."""
    from cdc.stack import control

    rows, connector_state = control.status(_settings())
    table = Table("part", "state", "pid", "endpoint")
    for row in rows:
        table.add_row(
            row.name,
            "[green]running[/]" if row.running else "[red]stopped[/]",
            str(row.pid or "-") if row.running else "-",
            row.endpoint,
        )
    out.print(table)
    for row in rows:
        say(f"log of {row.name}: {row.log}")
    say(f"connector {connector_state}")
    if not all(row.running for row in rows):
        raise typer.Exit(1)


@stack_app.command("env")
def stack_env() -> None:
    """Print `export` lines for the stack's endpoints: eval "$(cdc stack env)"."""
    from cdc.stack import control

    for line in control.env_lines(_settings()):
        sys.stdout.write(line + "\n")


@connector_app.command("apply")
def connector_apply(
    file: Annotated[
        Path | None,
        typer.Argument(help="Connector config (JSON); default connectors/postgres-source.json."),
    ] = None,
) -> None:
    """Create or update the connector, capture every selected table, wait until RUNNING."""
    from cdc import connector

    report = connector.apply(_settings(), file, say)
    say(f"connector {report.name}: {report.state.state}; {len(report.tables)} tables captured")


@connector_app.command("resnapshot")
def connector_resnapshot() -> None:
    """Forget the connector's offsets and take a new initial snapshot from the slot as it is now:
    the repair after the slot was lost or recreated (then cdc verify --fix)."""
    from cdc import connector

    state = connector.resnapshot(_settings(), say)
    say(f"connector {state.name}: {state.state}; Debezium is taking a new snapshot of every captured table")


@connector_app.command("status")
def connector_status() -> None:
    """The connector's state, its tasks, and the tables it captures."""
    from cdc import connector

    state, config = connector.status(_settings())
    say(f"connector {state.name}: {state.state}")
    for task_id, task_state in state.tasks:
        say(f"  task {task_id}: {task_state}")
    if state.trace:
        say("  " + state.trace.splitlines()[0])
    if config:
        say(f"  captures: {config.get('table.include.list', '(all tables)')}")
        say(f"  topic prefix: {config.get('topic.prefix')}")
    if state.state == "MISSING":
        raise NotFoundError(
            f"Kafka Connect has no connector named {state.name!r}.",
            "create it with: cdc connector apply (or correct CDC_CONNECTOR_NAME)",
        )
    if not state.running:
        raise typer.Exit(1)


@demo_app.command("seed")
def demo_seed(
    customers: Annotated[int, typer.Option(help="Customers to create.")] = 1000,
    products: Annotated[int, typer.Option(help="Products to create.")] = 200,
    orders: Annotated[int, typer.Option(help="Orders to create.")] = 2000,
    schema_only: Annotated[
        bool, typer.Option("--schema-only", help="Create the tables, empty (capture them, then seed).")
    ] = False,
) -> None:
    """Create the demo shop schema in the source database and fill it (no-op if already filled)."""
    from cdc.demo.seed import seed

    counts = seed(
        _settings().require_source_url(),
        customers=customers,
        products=products,
        orders=orders,
        schema_only=schema_only,
        say=say,
    )
    say("demo shop: " + ", ".join(f"{table} {n:,}" for table, n in counts.items()))


@demo_app.command("run")
def demo_run(
    rate: Annotated[float, typer.Option(help="Source transactions per second.")] = 50.0,
    duration: Annotated[float | None, typer.Option(help="Seconds to run; omit to run until Ctrl-C.")] = 60.0,
    seed: Annotated[int | None, typer.Option(help="Random seed, for a repeatable run.")] = None,
) -> None:
    """Run a live insert/update/delete workload against the demo shop."""
    from cdc.demo.workload import run_workload

    run_workload(_settings().require_source_url(), rate=rate, duration=duration, seed=seed, say=say)


@app.command()
def sync(
    *,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only this source table (schema.table, globs ok); repeatable.")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (default CDC_CONSUMER_GROUP).")] = None,
    until_idle: Annotated[
        float | None,
        typer.Option(help="Exit 0 once caught up and nothing new arrived for this many seconds.", min=0),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(help="Log lines as text or json (default CDC_LOG_FORMAT)."),
    ] = None,
    progress_every: Annotated[float, typer.Option(help="Seconds between progress lines.", min=0.5)] = 10.0,
    stall_seconds: Annotated[
        float | None,
        typer.Option(
            help="Exit 1 when lag stays above zero while nothing is read this long (default CDC_STALL_SECONDS, 60).",
            min=1,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port (/metrics; 0 picks a free one).", min=0, max=65535),
    ] = None,
) -> None:
    """Apply the change events from Kafka to the warehouse, continuously, exactly once in effect."""
    from cdc import logs
    from cdc.sync.run import run_sync, stopped_line

    settings = _settings()
    logs.configure(log_format.value if log_format else settings.log_format)
    stats = run_sync(
        settings,
        tables=tuple(table or ()),
        group=group,
        until_idle=until_idle,
        progress_every=progress_every,
        stall_seconds=stall_seconds,
        metrics_port=metrics_port,
    )
    say(stopped_line(stats))


def _warehouse(group: str) -> Any:
    from cdc.schema.policy import policies_of
    from cdc.warehouse.postgres import PostgresWarehouse

    settings = _settings()
    return PostgresWarehouse(
        settings.require_warehouse_url(),
        schema=settings.warehouse_schema,
        group=group,
        soft_delete=settings.delete_mode == "soft",
        table_name_format=settings.table_name_format,
        policies=policies_of(settings),
    )


@dlq_app.command("list")
def dlq_list(
    group: Annotated[str | None, typer.Option(help="Consumer group (default CDC_CONSUMER_GROUP).")] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Include letters already replayed.")] = False,
) -> None:
    """List the dead letters: where each message was in Kafka, and why it was not applied."""
    group_id = group or _settings().consumer_group
    warehouse = _warehouse(group_id)
    try:
        letters = warehouse.dead_letters(group_id, include_replayed=all_letters)
    finally:
        warehouse.close()
    table = Table("id", "topic", "partition", "offset", "failed at", "replayed", "reason")
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.origin.topic,
            str(letter.origin.partition),
            str(letter.origin.offset),
            f"{letter.failed_at:%Y-%m-%d %H:%M:%S}",
            "yes" if letter.replayed_at else "no",
            letter.reason,
        )
    out.print(table)
    say(f"{len(letters)} dead letter(s) for group {group_id}")


@dlq_app.command("replay")
def dlq_replay(
    group: Annotated[str | None, typer.Option(help="Consumer group (default CDC_CONSUMER_GROUP).")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only this letter; repeatable.")] = None,
) -> None:
    """Apply the dead letters again (after fixing their cause). Exit 1 if some still fail."""
    from cdc import dlq

    group_id = group or _settings().consumer_group
    warehouse = _warehouse(group_id)
    try:
        report = dlq.replay(warehouse, group_id, ids)
    finally:
        warehouse.close()
    if ids:
        missing = sorted(set(ids) - {letter.id for letter in report.replayed + report.still_failing})
        if missing:
            raise NotFoundError(
                f"no dead letter of group {group_id} has id {', '.join(map(str, missing))}"
                + (f" (the others, {len(report.replayed)}, were replayed)" if report.replayed else "")
                + ".",
                f"list them with: cdc dlq list --all{'' if group is None else ' --group ' + group_id}",
            )
    say(f"replayed {len(report.replayed)} dead letter(s); {len(report.still_failing)} still failing")
    for letter in report.still_failing:
        say(f"  {letter.id} {letter.origin.topic}[{letter.origin.partition}]@{letter.origin.offset}: {letter.reason}")
    if report.still_failing:
        raise typer.Exit(1)


@schema_app.command("install")
def schema_install(
    local_stack: Annotated[
        bool, typer.Option("--local-stack", help="As the local stack's superuser (cdc stack up), over its unix socket.")
    ] = False,
) -> None:
    """Install the DDL capture in the source (event triggers writing cdc.schema_ddl): exact renames, defaults."""
    from sqlalchemy.engine import make_url

    from cdc.schema.install import install
    from cdc.stack.control import source_superuser_url

    settings = _settings()
    if local_stack:
        install(source_superuser_url(settings), schema_owner=make_url(settings.require_source_url()).username)
    else:
        install(settings.require_source_url())
    say("schema capture installed in the source; run cdc connector apply so that Debezium captures cdc.schema_ddl")


@schema_app.command("history")
def schema_history(
    table: Annotated[str | None, typer.Argument(help="schema.table or a glob pattern; default: every table.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per change.")] = False,
) -> None:
    """Every schema change detected: what changed, before and after, and what the policy did."""
    from cdc.schema.history import history

    settings = _settings()
    changes = history(settings.require_warehouse_url(), settings.warehouse_schema, table)
    if as_json:
        import orjson

        for change in changes:
            say(orjson.dumps(change.as_json()).decode())
        return
    grid = Table("id", "detected at", "table", "change", "column", "before", "after", "policy", "action")
    for c in changes:
        before = "" if c.before is None else f"{c.before.get('name')} {c.before.get('type')}"
        after = "" if c.after is None else f"{c.after.get('name')} {c.after.get('type')}"
        grid.add_row(
            str(c.id),
            f"{c.detected_at:%Y-%m-%d %H:%M:%S}",
            c.table,
            c.change,
            c.column or "",
            before,
            after,
            c.policy,
            c.action,
        )
    out.print(grid)
    say(f"{len(changes)} schema change(s)")


@schema_app.command("diff")
def schema_diff(
    table: Annotated[str | None, typer.Argument(help="schema.table or a glob pattern; default: every table.")] = None,
) -> None:
    """Each replicated table's columns in the source catalog beside the warehouse table's, now."""
    from cdc.schema.compare import schema_diff as compare

    settings = _settings()
    pairs = compare(settings.require_source_url(), settings.require_warehouse_url(), settings.warehouse_schema, table)
    grid = Table("table", "column", "source type", "warehouse column", "warehouse type", "status")
    for p in pairs:
        grid.add_row(p.table, p.source or "", p.source_type or "", p.stored or "", p.stored_type or "", p.status)
    out.print(grid)
    differ = [p for p in pairs if p.status != "same"]
    say(f"{len({p.table for p in pairs})} table(s), {len(pairs)} column(s), {len(differ)} not the same")


@schema_app.command("accept")
def schema_accept(table: Annotated[str, typer.Argument(help="The held source table, schema.table.")]) -> None:
    """Let a table held by policy halt take its schema change: cdc sync applies it and resumes the table."""
    from cdc.schema.history import accept

    settings = _settings()
    say(accept(settings.require_warehouse_url(), settings.warehouse_schema, table))


@schema_app.command("policy")
def schema_policy(
    table: Annotated[str | None, typer.Argument(help="schema.table; default: the default policy.")] = None,
) -> None:
    """The schema policy in force for a table, and where it comes from."""
    from cdc.events import TableId
    from cdc.schema.policy import policies_of

    policies = policies_of(_settings())
    if table is None:
        say(f"default: {policies.default.value} (from {policies.default_from})")
        for pattern, policy in policies.overrides:
            say(f"{pattern}: {policy.value} (from {policies.overrides_from})")
        return
    schema, _, name = table.partition(".")
    policy, source = policies.for_table(TableId(schema, name))
    say(f"{table}: {policy.value} (from {source})")


class BackfillMode(StrEnum):
    direct = "direct"
    debezium = "debezium"


@app.command()
def backfill(
    table: Annotated[list[str], typer.Argument(help="Source tables, schema.table (globs ok).")],
    *,
    mode: Annotated[BackfillMode, typer.Option(help="direct: COPY from the source; debezium: its snapshot.")] = (
        BackfillMode.direct
    ),
    where: Annotated[
        str | None, typer.Option(help="Only rows matching this SQL condition on the source table (your own SQL).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted backfill from its ranges not written.")] = False,
    parallel: Annotated[int, typer.Option(help="Ranges written at once.", min=1, max=32)] = 1,
    range_rows: Annotated[
        int, typer.Option(help="Rows per range: one warehouse transaction, and what --resume redoes at most.", min=1)
    ] = 200_000,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary at the end.")] = False,
) -> None:
    """Copy the rows a table holds into the warehouse, consistently with what cdc sync streams."""
    import time

    from cdc.backfill.report import progress_shown, summary, summary_lines
    from cdc.backfill.run import Options
    from cdc.backfill.run import backfill as run_backfill

    started = time.monotonic()
    if mode is BackfillMode.debezium:
        _backfill_by_debezium(table, where, resume=resume, parallel=parallel, json_out=json_out)
        return
    runs = run_backfill(
        _settings(),
        table,
        Options(where=where, resume=resume, parallel=parallel, range_rows=range_rows),
        say=note if json_out else say,
        progress=lambda meter: progress_shown(meter, note if json_out else say),
    )
    result = summary(runs, time.monotonic() - started)
    if json_out:
        typer.echo(json.dumps(result))
        return
    for line in summary_lines(result):
        say(line)


def _backfill_by_debezium(
    patterns: list[str], where: str | None, *, resume: bool, parallel: int, json_out: bool
) -> None:
    import time

    from cdc.backfill.debezium import snapshot
    from cdc.backfill.report import debezium_progress, debezium_summary

    if resume or parallel != 1:
        raise ConfigError(
            f"{'--resume' if resume else '--parallel'} applies to --mode direct only: Debezium resumes its own "
            "snapshot after a restart, and reads one chunk at a time.",
            f"drop {'--resume' if resume else '--parallel'}, or use --mode direct",
        )
    tell = note if json_out else say
    started = time.monotonic()
    with debezium_progress(tell) as progress:
        followed = snapshot(_settings(), patterns, where, say=tell, progress=progress)
    result = debezium_summary(followed, time.monotonic() - started)
    if json_out:
        typer.echo(json.dumps(result))
        return
    say(
        f"debezium snapshot done: {result['rows']:,} rows in {result['seconds']:.1f} s"
        + (", applied by cdc sync" if result["applied"] else ", waiting in Kafka for cdc sync")
    )


@app.command()
def verify(
    table: Annotated[
        list[str] | None, typer.Argument(help="Source tables, schema.table (globs ok); default: every replicated one.")
    ] = None,
    *,
    fix: Annotated[bool, typer.Option(help="Backfill the ranges that differ, then compare again.")] = False,
    examples: Annotated[int, typer.Option(help="Example keys shown per differing range.", min=1)] = 5,
    range_rows: Annotated[int, typer.Option(help="Rows per compared range (about).", min=1)] = 100_000,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Compare source and warehouse (counts and checksums per key range, in each database); exit 0
    only when they are equal."""
    from cdc.verify.report import fix_ranges, report_json, report_lines
    from cdc.verify.run import verify as run_verify

    settings = _settings()
    tell = note if json_out else say
    reports = run_verify(settings, list(table or ()), say=tell, examples=examples, range_rows=range_rows)
    fixed = None
    if fix and any(not r.equal for r in reports):
        fixed = fix_ranges(settings, reports, say=tell)
        reports = run_verify(
            settings, [str(r.table.source) for r in reports], say=tell, examples=examples, range_rows=range_rows
        )
    if json_out:
        typer.echo(json.dumps(report_json(reports, fixed)))
    else:
        for line in report_lines(reports, fixed):
            say(line)
    if any(not r.equal for r in reports):
        raise typer.Exit(1)
    if not table and _gap_repaired(settings):
        tell("every replicated table is equal: the recorded gap in the changes is repaired, cdc sync may run again")


def _gap_repaired(settings: Settings) -> bool:
    """A slot gap recorded for this warehouse schema is repaired once verify proves every table equal."""
    from cdc import pgerrors
    from cdc.sync.slot_guard import clear_gap

    conn = pgerrors.connect(settings.require_warehouse_url(), "warehouse", "cdc verify")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('cdc.slot_watch') IS NOT NULL")
            cleared = clear_gap(cur, settings.warehouse_schema) if cur.fetchall()[0][0] else 0
        conn.commit()
    finally:
        conn.close()
    return cleared > 0


@app.command()
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check the source, the slot, the publication and the connector: PASS, WARN or FAIL, each
    with its fix; exit 1 on any FAIL."""
    from cdc.ops.doctor import Verdict
    from cdc.ops.doctor import run as run_doctor

    checks = run_doctor(_settings())
    if json_out:
        typer.echo(json.dumps({"checks": [c.as_json() for c in checks]}))
    else:
        colour = {Verdict.PASS: "green", Verdict.WARN: "yellow", Verdict.FAIL: "bold red"}
        table = Table("", "area", "check", "what was found", "fix")
        for c in checks:
            table.add_row(f"[{colour[c.verdict]}]{c.verdict}[/]", c.area, c.name, c.detail, c.fix)
        out.print(table)
    if any(c.verdict is Verdict.FAIL for c in checks):
        raise typer.Exit(1)


@app.command()
def status(
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only tables matching this schema.table glob (repeatable).")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    every: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.", min=0.5)] = 2.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one reading as JSON.")] = False,
) -> None:
    """The connector, the slot and, per table, lag (messages, seconds), what was applied, dead
    letters, drift holds and backfills. Reads only; works whether cdc sync runs or not. Exit 1
    when a part (Connect, the source, Kafka, the warehouse) could not be read."""
    from cdc.ops import status_view
    from cdc.ops.status import collect

    settings = _settings()
    patterns = tuple(table or ())
    if not watch:
        found = collect(settings, patterns)
        if json_out:
            typer.echo(json.dumps(found.as_json()))
        else:
            out.print(status_view.render(found))
        if found.problems:
            raise typer.Exit(1)  # a part could not be read: what is shown is not the whole truth
        return
    from rich.live import Live

    try:
        if not out.is_terminal:  # a pipe or a file: each reading after the other, not redrawn
            while True:
                out.print(status_view.render(collect(settings, patterns)))
                time.sleep(every)
        with Live(status_view.render(collect(settings, patterns)), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(every)
                live.update(status_view.render(collect(settings, patterns)), refresh=True)
    except KeyboardInterrupt:
        pass


@app.command()
def topics(
    prefix: Annotated[
        str | None, typer.Option(help="Only topics starting with this (default: the topic prefix + '.').")
    ] = None,
) -> None:
    """List the change topics in Kafka with their message counts."""
    from cdc import topics as topic_counts

    settings = _settings()
    rows = topic_counts.count(settings.require_kafka(), prefix or f"{settings.topic_prefix}.")
    table = Table("topic", "partitions", "messages")
    for row in rows:
        table.add_row(row.topic, str(row.partitions), f"{row.messages:,}")
    out.print(table)


def run(argv: list[str]) -> int:
    """Run the command line and return its exit status: the one place errors are reported."""
    _Options.debug = os.environ.get("CDC_DEBUG", "") not in ("", "0", "false")
    try:
        # Standalone: typer reports usage errors itself (status 2) and turns Ctrl-C into "Aborted!".
        app(args=argv, prog_name="cdc")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except CdcError as exc:
        if _Options.debug:
            traceback.print_exc()
        err.print(_label("error:", "bold red", exc.problem), soft_wrap=True)
        if exc.fix:
            err.print(_label("fix:", "bold", exc.fix), soft_wrap=True)
        return exc.exit_code
    except Exception as exc:
        # A bug: the traceback is what its report needs, and it may not happen twice.
        traceback.print_exc()
        err.print(_label("error:", "bold red", f"cdc failed unexpectedly: {exc.__class__.__name__}: {exc}"))
        err.print(
            _label(
                "fix:",
                "bold",
                "this is a bug in cdc: please report it to the cdc project's issue tracker, with the traceback "
                "above and the command that led to it",
            ),
            soft_wrap=True,
        )
        return EXIT_BUG
    return 0


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
