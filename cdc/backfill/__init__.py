"""`cdc backfill` (issue 9): existing rows copied from the source under one snapshot whose position
orders them against the streamed changes."""
