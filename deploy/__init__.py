"""Deployment helpers: the local Kafka broker launcher and the Quickstart demo."""
