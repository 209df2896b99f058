"""`cdc verify`: source and warehouse compared over the replicated columns, inside each database."""
