"""Structured outputs for the fake OpenAI server (tests/fake_openai.py): the schema a request sends is
validated, and the answer is a JSON instance of it.

A request asks for a schema with ``response_format={"type": "json_schema", "json_schema": {"schema": S}}``
(OpenAI), ``{"type": "json_object", "schema": S}`` (llama-cpp-python) or ``guided_json: S`` (vLLM's
extra body). :func:`check` returns a 400 reply when the schema is not a valid JSON schema, or when the
server is made to refuse structured outputs (option ``structured=False``, like a server without them);
:func:`answer` gives a deterministic instance (from a hash of the prompt: an integer property
``min + h % range``, an enum ``enum[h % len]`` -- so ``score`` and ``choice`` match the text replies --
and an array of unique enum items a permutation), checked against the schema before it is sent.
"""
from __future__ import annotations

import hashlib
import json
import random

import jsonschema


def schema_of(payload: dict) -> dict | None:
    """The JSON schema a chat request asks for, or None."""
    fmt = payload.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            return (fmt.get("json_schema") or {}).get("schema") or {}
        if fmt.get("type") == "json_object":
            return fmt.get("schema") or {"type": "object"}
    if isinstance(payload.get("guided_json"), dict):
        return payload["guided_json"]
    return None


def check(payload: dict, options: dict) -> tuple[int, str] | None:
    """``(status, message)`` of the error to send for a request's structured-output field, or None."""
    if schema_of(payload) is None:
        return None
    if not options.get("structured", True):
        return 400, "response_format is not supported by this server"
    try:
        jsonschema.validators.validator_for(schema_of(payload)).check_schema(schema_of(payload))
    except jsonschema.SchemaError as e:
        return 400, f"invalid JSON schema in response_format: {e.message}"
    return None


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def _instance(schema: dict, prompt: str, key: str = ""):
    h = _h(prompt + key) if key else _h(prompt)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][h % len(schema["enum"])]
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _instance(sub, prompt, "" if i == 0 else name) for i, (name, sub) in enumerate(props.items())}
    if kind == "integer":
        low, high = int(schema.get("minimum", 1)), int(schema.get("maximum", 7))
        return low + h % (high - low + 1)
    if kind == "array":
        items = schema.get("items") or {}
        if "enum" in items and (schema.get("uniqueItems") or schema.get("maxItems") == len(items["enum"])):
            labels = list(items["enum"])
            random.Random(h).shuffle(labels)
            return labels[: int(schema.get("maxItems", len(labels)))]
        return [_instance(items, prompt, str(i)) for i in range(int(schema.get("minItems", 1)))]
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return bool(h % 2)
    return "fake"


def answer(payload: dict, prompt: str) -> str | None:
    """The JSON answer to a structured request (validated against its schema), or None for a text request."""
    schema = schema_of(payload)
    if schema is None:
        return None
    value = _instance(schema, prompt)
    jsonschema.validate(value, schema)
    return json.dumps(value)
