"""The OpenAPI page (``/docs``, ``/redoc``) documents every endpoint: a summary and a
description, an example of the JSON request body, an example of the success response, and
the error responses the endpoint can give, each with an example in the one error shape.

The schema is built from the app object (``app.openapi()``): no model is loaded. Examples are
checked against their own schemas, so an example cannot drift from the model it shows.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from app.config import Settings
from app.errors import ErrorResponse
from app.main import create_app
from tests.conftest import ARTIFACTS

SPEC = create_app(Settings(artifacts_dir=ARTIFACTS, access_log=False)).openapi()
KEYED_SPEC = create_app(Settings(artifacts_dir=ARTIFACTS, access_log=False,
                                 api_keys="docs-test-key")).openapi()

HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}

BODY = {400, 413, 415, 422}  # unparsable, too large, not JSON / not an image, invalid
MODEL = {503}  # the model is not loaded (yet)
BATCHED = MODEL | {504}  # + the dynamic batcher's timeout (its full queue is also a 503)

# Every operation and the error statuses it documents: exactly these, no fewer, no more.
# A new route fails test_every_operation_is_listed until it is added here.
EXPECTED_ERRORS: dict[tuple[str, str], set[int]] = {
    ("get", "/healthz"): set(),
    ("get", "/readyz"): {503},
    ("get", "/metrics"): set(),
    ("get", "/v1/models"): set(),
    ("post", "/v1/word2vec/neighbors"): BODY | MODEL | {404},
    ("post", "/v1/word2vec/neighbors/batch"): BODY | MODEL | {404},
    ("post", "/v1/word2vec/similarity"): BODY | MODEL | {404},
    ("post", "/v1/word2vec/analogy"): BODY | MODEL | {404},
    ("post", "/v1/word2vec/plot"): BODY | MODEL | {404},
    ("post", "/v1/lm/generate"): BODY | MODEL,
    ("post", "/v1/lm/generate/stream"): BODY | MODEL,
    ("post", "/v1/lm/score"): BODY | BATCHED,
    ("post", "/v1/translate"): BODY | BATCHED,
    ("post", "/v1/match"): BODY | BATCHED | {404},
    ("post", "/v1/match/rank"): BODY | MODEL | {404},
    ("get", "/v1/match/models"): MODEL,
    ("post", "/v1/handwriting/recognize"): BODY | BATCHED,
    ("post", "/v1/handwriting/annotate"): BODY | BATCHED,
}


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """``(method, path)`` of every documented operation under ``/v1/`` and the health routes."""
    return [(method, path) for path, ops in spec["paths"].items()
            if path.startswith("/v1/") or path in HEALTH_PATHS
            for method in ops if method in HTTP_METHODS]


OPERATIONS = operations(SPEC)
JSON_BODY = [(method, path) for method, path in OPERATIONS if "application/json"
             in SPEC["paths"][path][method].get("requestBody", {}).get("content", {})]


def resolve(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The schema behind a ``$ref`` (one level), or the schema itself."""
    schema = schema or {}
    ref = schema.get("$ref")
    if ref:
        name = ref.removeprefix("#/components/schemas/")
        resolved: dict[str, Any] = SPEC["components"]["schemas"][name]
        return resolved
    return schema


def examples_of(media: dict[str, Any]) -> list[Any]:
    """Every example of a media type object: its ``example``/``examples`` and its schema's."""
    found = []
    if "example" in media:
        found.append(media["example"])
    found += [e.get("value") for e in media.get("examples", {}).values()]
    schema = resolve(media.get("schema"))
    found += schema.get("examples", [])
    if "example" in schema:
        found.append(schema["example"])
    return found


def check_examples(media: dict[str, Any], where: str) -> list[Any]:
    """Assert the media type has at least one example and each one fits its schema."""
    found = examples_of(media)
    assert found, f"{where}: no example (set one on the model or in the route's responses)"
    schema = {**(media.get("schema") or {}), "components": SPEC["components"]}
    for example in found:
        jsonschema.validate(example, schema)
    return found


def op_id(op: tuple[str, str]) -> str:
    return f"{op[0].upper()} {op[1]}"


def test_every_operation_is_listed() -> None:
    assert not set(OPERATIONS) - set(EXPECTED_ERRORS), "add the new route to EXPECTED_ERRORS"
    assert not set(EXPECTED_ERRORS) - set(OPERATIONS), "a listed route is not documented"
    assert len(JSON_BODY) >= 10  # the JSON routes of word2vec, lm, translation, matching


@pytest.mark.parametrize("op", OPERATIONS, ids=op_id)
def test_summary_and_description(op: tuple[str, str]) -> None:
    operation = SPEC["paths"][op[1]][op[0]]
    assert operation.get("summary", "").strip(), f"{op_id(op)}: no summary"
    assert len(operation.get("description", "").strip()) > 20, f"{op_id(op)}: no description"
    assert operation.get("tags"), f"{op_id(op)}: no tag (the page groups operations by tag)"


@pytest.mark.parametrize("op", JSON_BODY, ids=op_id)
def test_json_request_body_has_an_example(op: tuple[str, str]) -> None:
    content = SPEC["paths"][op[1]][op[0]]["requestBody"]["content"]
    check_examples(content["application/json"], f"{op_id(op)} request body")


@pytest.mark.parametrize("op", OPERATIONS, ids=op_id)
def test_success_response_has_an_example(op: tuple[str, str]) -> None:
    response = SPEC["paths"][op[1]][op[0]]["responses"]["200"]
    content = response.get("content", {})
    assert content, f"{op_id(op)}: the 200 response declares no content"
    for media_type, media in content.items():
        where = f"{op_id(op)} 200 {media_type}"
        if media_type.startswith("image/"):  # binary: the description says what it holds
            assert resolve(media.get("schema")).get("format") == "binary", where
            assert response.get("description", "") != "Successful Response", where
        else:
            check_examples(media, where)


@pytest.mark.parametrize("op", OPERATIONS, ids=op_id)
def test_error_responses_are_documented_with_examples(op: tuple[str, str]) -> None:
    responses = SPEC["paths"][op[1]][op[0]]["responses"]
    errors = {int(status) for status in responses if int(status) >= 400}
    assert errors == EXPECTED_ERRORS[op], f"{op_id(op)}: documented errors {sorted(errors)}"
    for status in sorted(errors):
        response = responses[str(status)]
        where = f"{op_id(op)} {status}"
        assert response.get("description", "").strip(), f"{where}: no description"
        media = response.get("content", {}).get("application/json", {})
        assert resolve(media.get("schema")) is SPEC["components"]["schemas"]["ErrorResponse"], (
            f"{where}: not the ErrorResponse shape")
        for example in check_examples(media, where):
            ErrorResponse.model_validate(example)


@pytest.mark.parametrize("op", operations(KEYED_SPEC), ids=op_id)
def test_api_keys_add_401_to_every_v1_operation(op: tuple[str, str]) -> None:
    operation = KEYED_SPEC["paths"][op[1]][op[0]]
    if op[1] in HEALTH_PATHS:  # open: probes and scrapers carry no key
        assert "401" not in operation["responses"] and "security" not in operation
        return
    assert operation["security"] == [{"APIKeyHeader": []}]
    unauthorized = operation["responses"]["401"]
    assert unauthorized["description"]
    for example in check_examples(unauthorized["content"]["application/json"], op_id(op)):
        assert ErrorResponse.model_validate(example).error.code == "unauthorized"
