"""Benchmarks of `cdc sync` against the running native stack (see benchmarks/README.md)."""
