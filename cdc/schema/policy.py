"""What to do with a table's schema changes: one policy per table, a default for the rest.

- evolve: apply what is safe, never destroy data (cdc/warehouse/drift.py says how each change is applied);
- alert: change nothing in the warehouse table's shape, keep writing what still matches it;
- halt: apply nothing more of that table until `cdc schema accept`; the other tables flow on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cdc.events import TableId
from cdc.settings import Settings


class Policy(StrEnum):
    EVOLVE = "evolve"
    ALERT = "alert"
    HALT = "halt"


@dataclass(frozen=True, slots=True)
class Policies:
    default: Policy = Policy.EVOLVE
    default_from: str = "default"  # where the default was set, for `cdc schema policy`
    overrides: tuple[tuple[str, Policy], ...] = ()  # (schema.table or glob pattern, policy)
    overrides_from: str = "CDC_SCHEMA_POLICIES"

    @classmethod
    def of(
        cls,
        default: str,
        overrides: Mapping[str, str],
        default_from: str = "default",
        overrides_from: str = "CDC_SCHEMA_POLICIES",
    ) -> Policies:
        return cls(Policy(default), default_from, tuple((k, Policy(v)) for k, v in overrides.items()), overrides_from)

    def for_table(self, table: TableId) -> tuple[Policy, str]:
        """The policy in force for a table, and where it comes from. An exact name wins over a
        pattern; among patterns, the longest (most specific) that matches."""
        name = str(table)
        exact = [p for pattern, p in self.overrides if pattern == name]
        if exact:
            return exact[0], f"{self.overrides_from} {name!r}"
        matching = sorted(
            ((pattern, p) for pattern, p in self.overrides if fnmatch.fnmatchcase(name, pattern)),
            key=lambda item: -len(item[0]),
        )
        if matching:
            pattern, policy = matching[0]
            return policy, f"{self.overrides_from} {pattern!r}"
        return self.default, self.default_from


def policies_of(settings: Settings) -> Policies:
    """The policies of the settings, each knowing where it was set."""

    def origin(name: str, in_file: str, unset: str) -> str:
        if name in settings.from_environment:
            return f"CDC_{name.upper()}"
        return f"{in_file} in cdc.toml" if name in settings.model_fields_set else unset

    return Policies.of(
        settings.schema_policy,
        settings.schema_policies,
        origin("schema_policy", "schema_policy", "default"),
        origin("schema_policies", "[schema_policies]", "CDC_SCHEMA_POLICIES"),
    )
