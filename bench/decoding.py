"""Record decoding side by side: the consumer's bounded orjson parser vs the standard library.

Both parse the stream's messages exactly as stage 4's producer writes them
(``{"id": ..., "text": ...}`` UTF-8 JSON) and validate them against
:class:`schemas.InputMessage`. ``stdlib`` is the consumer's previous path (UTF-8 decode,
``json.loads``, validation, text-size check); ``orjson`` is :func:`consumer.parsing.parse_input`
with the default caps (value size, nesting depth, text size). Rounds alternate A/B so both
see the same machine load; the best round of each is reported (µs per message).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from consumer.parsing import parse_input
from schemas import DEFAULT_MAX_TEXT_BYTES, InputMessage


def stdlib_parse(value: bytes) -> InputMessage:
    """The consumer's decoding before orjson: decode, ``json.loads``, validate, size check.

    Raises:
        ValueError: invalid input (any kind; the benchmark feeds only valid messages).
    """
    obj = json.loads(value.decode("utf-8"))
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    message = InputMessage.model_validate(obj)
    if len(message.document.encode("utf-8")) > DEFAULT_MAX_TEXT_BYTES:
        raise ValueError("text too large")
    return message


def _per_message_us(parse: Callable[[bytes], Any], values: Sequence[bytes]) -> float:
    began = time.perf_counter()
    for value in values:
        parse(value)
    return (time.perf_counter() - began) / len(values) * 1e6


def measure(texts: Sequence[str], rounds: int = 5) -> dict[str, Any]:
    """µs per message for both parsers on ``texts`` encoded as stage 4 encodes them.

    Returns:
        ``{"messages", "stdlib_us", "orjson_us", "speedup", "rounds"}``; ``speedup`` is
        stdlib / orjson (above 1: orjson is faster).

    Raises:
        AssertionError: the two parsers disagree on a message.
    """
    values = [json.dumps({"id": f"m{i}", "text": t}).encode() for i, t in enumerate(texts)]
    for value in values[:1000]:
        assert stdlib_parse(value) == parse_input(value), "the parsers disagree"
    best = {"stdlib": float("inf"), "orjson": float("inf")}
    for _ in range(rounds):
        best["stdlib"] = min(best["stdlib"], _per_message_us(stdlib_parse, values))
        best["orjson"] = min(best["orjson"], _per_message_us(parse_input, values))
    return {
        "messages": len(values),
        "stdlib_us": round(best["stdlib"], 2),
        "orjson_us": round(best["orjson"], 2),
        "speedup": round(best["stdlib"] / best["orjson"], 2),
        "rounds": rounds,
    }
