"""Deployment helpers: local Kafka broker and Schema Registry launchers, the Quickstart demo."""
