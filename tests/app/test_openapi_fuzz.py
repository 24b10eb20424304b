"""Property-based API tests: schemathesis generates requests from the app's OpenAPI schema and
sends them to the app (in process, over ASGI) serving the committed artifacts.

Every documented operation of every model that has an artifact is exercised: the schema's
examples, boundary values of each field (the coverage phase), then random valid and invalid
bodies. The service must never answer 5xx, and each answer must be one the schema declares
(status code, content type, headers, body). Bounded and derandomized, so CI sees the same
requests every run: a dozen random examples per operation, and smaller ``MODELZOO_*`` limits
so a generated request stays cheap on a CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from app.config import Settings
from app.main import create_app
from app.registry import PREDICTORS
from app.schemas.lm import GenerateRequest
from tests.conftest import ARTIFACTS

# Not checked: positive_data_acceptance (a schema-valid body may still get 422 for rules the
# schema cannot state: blank words, the MODELZOO_* limits, bytes that are not an image) and
# negative_data_rejection (pydantic's lax mode accepts e.g. ``false`` for a number, as
# FastAPI does by design).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]

CONFIG = SchemathesisConfig.from_dict({
    "seed": 8,
    "suppress-health-check": ["all"],  # slow model calls must not fail a CI run
    "generation": {"max-examples": 12, "deterministic": True, "database": "none",
                   "mode": "all"},
})

SETTINGS = Settings(
    artifacts_dir=ARTIFACTS, models="all", access_log=False,
    max_items_per_request=4, lm_max_tokens=40, lm_max_samples=2, lm_max_prompt_words=30,
    translation_max_chars=80, matching_max_chars=200, matching_max_candidates=8,
    handwriting_max_side=256,
)

# Models without an artifact in this checkout (e.g. matching before it is trained) are left
# out (each task's router is tagged with the task's name): their routes answer 503 "not
# configured", which is right but is a 5xx.
MISSING = [task for task in PREDICTORS if not (ARTIFACTS / task).is_dir()]

DEFAULT_MAX_TOKENS = GenerateRequest.model_fields["max_tokens"].default

APP = create_app(SETTINGS)
# Built at collection from the app object, without starting it: the models are loaded only
# when these tests run.
schema = schemathesis.openapi.from_dict(APP.openapi(), config=CONFIG)
schema.app = APP
if MISSING:
    schema = schema.exclude(tag=MISSING)


@pytest.fixture(scope="module")
def one_lifespan() -> Iterator[None]:
    """Keep one app lifespan (one model load) for the whole module.

    schemathesis starts an ASGI app's lifespan on its first request and its pytest plugin
    ends every lifespan after each test; that end is deferred to this module's teardown.
    Should the plugin change, each test just loads the models again (``models_ready``).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asgi, "shutdown_lifespans", lambda: None)
        yield
    asgi.shutdown_lifespans()


@pytest.fixture(autouse=True)
def models_ready(one_lifespan: None) -> None:
    """Start the app (if it is not running) and wait until every model is loaded."""
    with asgi.get_client(APP):
        deadline = time.monotonic() + 120
        while missing := APP.state.registry.not_ready():
            assert time.monotonic() < deadline, f"models not loaded: {missing}"
            time.sleep(0.02)


def shorten_samples(case: schemathesis.Case) -> None:
    """Sample length costs only time (each word is an LSTM step): a generate body whose
    ``max_tokens`` is absent or the default (30) asks for 3 words instead. Other values, the
    boundaries and the over-the-limit ones included, are sent as generated."""
    body = case.body
    if (case.path.startswith("/v1/lm/generate") and isinstance(body, dict)
            and body.get("max_tokens", DEFAULT_MAX_TOKENS) == DEFAULT_MAX_TOKENS):
        body["max_tokens"] = 3


# One test per operation; under pytest 9 they share one node id (a schemathesis 4.32
# quirk): the failure's header names the operation, with a curl command that reproduces it.
@schema.parametrize()
def test_no_server_error_and_answers_match_the_schema(case: schemathesis.Case) -> None:
    shorten_samples(case)
    case.call_and_validate(checks=CHECKS)
