"""`cdc sync`: the loop (loop.py), the Kafka consumers behind its Source interface (consume.py,
consume_confluent.py)."""
