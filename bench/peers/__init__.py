"""The Kafka inference frameworks a user would pick instead, measured like the project.

``harness`` runs every system (``python -m consumer`` and each peer) the same way; the
peers' entry points (``quix_app``, ``faust_app``, ``mlserver_app`` + ``mlserver_model``)
run in their own virtualenv, ``.venv-peers`` (``make peers-venv``), because quixstreams,
mlserver and faust-streaming pin older confluent-kafka, pydantic, fastapi and protobuf than
the service. ``common`` (the bundle behind one call) is shared by both sides.
"""
