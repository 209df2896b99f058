"""cdc: PostgreSQL -> Debezium -> Kafka -> warehouse replication, exactly once in effect."""

__version__ = "0.1.0"
