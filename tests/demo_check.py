"""After `make demo`: every table of the demo shop equals its warehouse copy, row for row, every
column. Run by .ci/run right after the README's first command:

    python -m tests.demo_check
"""

from __future__ import annotations

import sys

from cdc.demo import SCHEMA, TABLES
from cdc.stack.state import load_local_settings
from tests.compare import assert_same_rows
from tests.db import query


def main() -> int:
    settings = load_local_settings()
    src, wh = settings.require_source_url(), settings.require_warehouse_url()
    targets = dict(
        query(
            wh,
            "SELECT source_table, ARRAY[target_schema, target_table] FROM cdc.table_map WHERE source_schema = %s",
            (SCHEMA,),
        )
    )
    failures = 0
    for table in TABLES:
        target = targets.get(table)
        if target is None:
            print(f"{SCHEMA}.{table}: never replicated (no entry in cdc.table_map)")
            failures += 1
            continue
        try:
            rows = assert_same_rows(src, (SCHEMA, table), wh, (target[0], target[1]))
        except AssertionError as exc:
            print(f"{SCHEMA}.{table}: DIFFERS: {exc}")
            failures += 1
        else:
            print(f"{SCHEMA}.{table} = {target[0]}.{target[1]}: {rows} rows, equal")
    print(f"demo check: {len(TABLES) - failures} of {len(TABLES)} shop tables equal to the source")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
