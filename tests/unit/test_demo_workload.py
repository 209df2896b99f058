"""The parts of the demo that need no database: the operation mix, the pacing, the seed generator."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from cdc.demo import TABLES, seed, workload
from cdc.demo.workload import (
    OPERATIONS,
    TARGET_MIX,
    Changes,
    Kind,
    Operation,
    OperationMix,
    Pacer,
    run_workload,
    weighted_shuffle,
)
from cdc.errors import ConfigError, TransientError

# Row counts like the real operations make: an order is several inserts, a price change one update.
_SIMULATED: dict[str, Callable[[random.Random], Changes]] = {
    "signup": lambda rng: Changes(inserts=rng.choice((2, 2, 3))),
    "new_order": lambda rng: Changes(inserts=2 + rng.randint(1, 5)),
    "page_views": lambda rng: Changes(inserts=rng.randint(1, 4)),
    "order_status": lambda rng: Changes(updates=rng.randint(1, 3), inserts=rng.choice((0, 0, 1))),
    "purge_cancelled": lambda rng: Changes(deletes=3 + rng.randint(1, 5)),
    "prune_page_views": lambda rng: Changes(deletes=rng.randint(1, 5)),
}


def _simulated(op: Operation, rng: random.Random) -> Changes:
    return _SIMULATED[op.name](rng) if op.name in _SIMULATED else Changes(updates=1)


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible test data


def _run(
    mix: OperationMix,
    rng: random.Random,
    transactions: int,
    outcome: Callable[[Operation, random.Random], Changes] = _simulated,
) -> Counter[str]:
    ran: Counter[str] = Counter()
    for _ in range(transactions):
        for op in mix.plan(rng):
            changes = outcome(op, rng)
            if changes.total:
                mix.record(changes)
                ran[op.name] += 1
                break
    return ran


def test_mix_holds_the_target_shares_of_row_changes() -> None:
    mix = OperationMix()
    ran = _run(mix, _rng(1), 2000)
    assert sum(ran.values()) == 2000
    for kind, target in TARGET_MIX.items():
        assert mix.shares()[kind] == pytest.approx(target, abs=0.01), (kind, mix.shares())
    # every operation gets its turn, not just the one that moves the most rows
    assert set(ran) == {op.name for op in OPERATIONS}


def test_mix_picks_operations_of_a_kind_by_weight() -> None:
    mix = OperationMix()
    ran = _run(mix, _rng(2), 4000)
    inserts = {op.name: op.weight for op in OPERATIONS if op.kind is Kind.INSERT}
    total_weight = sum(inserts.values())
    total_ran = sum(ran[name] for name in inserts)
    for name, weight in inserts.items():
        assert ran[name] / total_ran == pytest.approx(weight / total_weight, abs=0.04), name


def test_mix_goes_on_when_a_kind_has_nothing_to_change() -> None:
    """With nothing to delete, the plan falls through to the other kinds instead of stalling."""

    def nothing_to_delete(op: Operation, rng: random.Random) -> Changes:
        return Changes() if op.kind is Kind.DELETE else _simulated(op, rng)

    mix = OperationMix()
    ran = _run(mix, _rng(3), 500, nothing_to_delete)
    assert sum(ran.values()) == 500
    assert mix.done.deletes == 0
    # inserts and updates still keep their 60:30 proportion between themselves
    assert mix.done.inserts / mix.done.updates == pytest.approx(2.0, rel=0.05)


def test_plan_starts_with_the_kind_furthest_behind_and_lists_every_operation_once() -> None:
    mix = OperationMix()
    mix.record(Changes(inserts=10))
    plan = mix.plan(_rng(4))
    assert plan[0].kind is Kind.UPDATE
    assert sorted(op.name for op in plan) == sorted(op.name for op in OPERATIONS)
    kinds_in_order = [op.kind for op in plan]
    # operations of one kind come together: the plan is kind by kind
    assert kinds_in_order == sorted(kinds_in_order, key=kinds_in_order.index)


def test_every_operation_has_an_implementation() -> None:
    assert {op.name for op in OPERATIONS} == set(workload._RUNNERS)
    assert {op.kind for op in OPERATIONS} == set(Kind)


def test_weighted_shuffle_puts_heavier_keys_first_proportionally() -> None:
    rng = _rng(5)
    weights = {"a": 6.0, "b": 3.0, "c": 1.0}
    firsts = Counter(weighted_shuffle(rng, weights)[0] for _ in range(10_000))
    for key, weight in weights.items():
        assert firsts[key] / 10_000 == pytest.approx(weight / 10, abs=0.02)
    assert sorted(weighted_shuffle(rng, weights)) == ["a", "b", "c"]


def _paced_run(pacer: Pacer, cost: list[float], until: float) -> tuple[int, list[float]]:
    """Drive pacer with a fake clock: transaction i takes cost[i % len(cost)] seconds."""
    now, done, starts = pacer.start, 0, []
    while now < until:
        now += pacer.delay(now)
        if now >= until:
            break
        starts.append(now)
        pacer.sent += 1
        now += cost[done % len(cost)]
        done += 1
    return done, starts


def test_pacer_spaces_transactions_at_the_rate() -> None:
    done, starts = _paced_run(Pacer(rate=50, start=100.0), [0.001], until=110.0)
    assert done == 500
    assert all(b - a == pytest.approx(0.02) for a, b in itertools.pairwise(starts))


def test_pacer_makes_up_for_a_slow_transaction() -> None:
    """One transaction in a hundred takes half a second; the ones after it run sooner."""
    pacer = Pacer(rate=50, start=0.0)
    done, _ = _paced_run(pacer, [0.001] * 99 + [0.5], until=20.0)
    assert done == pytest.approx(1000, abs=1)
    assert not pacer.lagging


def test_pacer_drops_a_backlog_it_cannot_catch_up_on() -> None:
    pacer = Pacer(rate=50, start=0.0, max_lag=2.0)
    # a database that manages 10 tx/s for 10 seconds...
    slow, _ = _paced_run(pacer, [0.1], until=10.0)
    assert slow == pytest.approx(100, abs=1)
    assert pacer.lagging
    # ...then recovers: it is owed at most max_lag seconds of transactions, not the 400 it missed
    now = 10.0
    burst = 0
    while pacer.delay(now) == 0:
        pacer.sent += 1
        burst += 1
    assert burst <= 2.0 * 50 + 1


def test_pacer_without_a_rate_limit_never_waits() -> None:
    pacer = Pacer(rate=math.inf, start=0.0)
    done, _ = _paced_run(pacer, [0.01], until=1.0)
    assert done == 100
    assert not pacer.lagging


@pytest.mark.parametrize(
    ("rate", "duration"), [(0.0, 1.0), (-5.0, 1.0), (math.nan, 1.0), (10.0, -1.0), (10.0, math.nan)]
)
def test_run_workload_rejects_bad_arguments_before_connecting(rate: float, duration: float) -> None:
    with pytest.raises(ConfigError):
        run_workload("postgresql://nobody:secret@127.0.0.1:1/none", rate=rate, duration=duration)


def test_cannot_connect_names_the_problem_but_not_the_password() -> None:
    with pytest.raises(TransientError) as caught:
        run_workload("postgresql://cdc:s3cret-pw@127.0.0.1:1/cdc_source", duration=1, say=lambda _: None)
    assert caught.value.problem.startswith('the source failed while connecting (connection to server at "127.0.0.1"')
    assert "Connection refused" in caught.value.problem
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.fix == "check that the source PostgreSQL is up and reachable at CDC_SOURCE_URL"


def test_seed_rejects_empty_catalogues_before_connecting() -> None:
    with pytest.raises(ConfigError):
        seed.seed("postgresql://nobody:secret@127.0.0.1:1/none", customers=0)


def test_seed_data_is_deterministic_and_consistent() -> None:
    def generate() -> dict[str, list[dict[str, Any]]]:
        return dict(seed._generate(_rng(seed.SEED), 60, 15, 120))

    tables = generate()
    assert tables == generate()
    assert list(tables) == list(TABLES)  # loaded in foreign-key order
    assert len(tables["customers"]) == 60
    assert len(tables["products"]) == len(tables["inventory"]) == 15
    assert len(tables["orders"]) == len(tables["payments"]) == 120

    ids = {t: {row[f"{t[:-1]}_id"] for row in tables[t]} for t in ("customers", "products", "orders")}
    address_owner = {a["address_id"]: a["customer_id"] for a in tables["addresses"]}
    for order in tables["orders"]:
        assert order["customer_id"] in ids["customers"]
        assert address_owner[order["shipping_address_id"]] == order["customer_id"]
    lines = Counter(item["order_id"] for item in tables["order_items"])
    assert set(lines) == ids["orders"]
    assert all(1 <= n <= 5 for n in lines.values())
    assert {item["product_id"] for item in tables["order_items"]} <= ids["products"]
    # order totals add up from their lines
    subtotal: defaultdict[int, Decimal] = defaultdict(Decimal)
    for item in tables["order_items"]:
        subtotal[item["order_id"]] += item["quantity"] * item["unit_price"] * (100 - item["discount_pct"]) / 100
    for order in tables["orders"]:
        assert order["subtotal"] == pytest.approx(subtotal[order["order_id"]], abs=Decimal("0.01"))
        assert order["total"] == order["subtotal"] + order["tax"] + order["shipping_fee"]


def test_csv_encoding_round_trips_the_awkward_values() -> None:
    assert seed._csv_value(None) == r"\N"
    assert seed._csv_value(True) == "t"
    assert seed._csv_value(["a b", 'say "hi"', "back\\slash"]) == '{"a b","say \\"hi\\"","back\\\\slash"}'
    assert seed._csv_value({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'
