"""Debezium change events -> cdc change events and warehouse values."""
