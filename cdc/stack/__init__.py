"""The native local stack: PostgreSQL (source and warehouse), a KRaft Kafka broker, Kafka Connect
with Debezium, all as plain processes under a state directory. Same versions as docker-compose.yml."""
