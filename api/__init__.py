"""The HTTP front end: ``python -m api`` classifies texts over HTTP with the consumer's bundles."""
