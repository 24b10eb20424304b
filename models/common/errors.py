"""Errors predictors raise; the service maps them to HTTP statuses (predictors know no HTTP)."""

from __future__ import annotations

from typing import Any


class PredictorError(Exception):
    """Base class: a request a predictor cannot answer, with a message that says what to fix."""

    code = "invalid_input"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class UnknownItemError(PredictorError):
    """A named item (a word, a model) does not exist; the service answers 404."""

    code = "not_found"


class InvalidInputError(PredictorError):
    """Input that passed schema validation but is still unusable; the service answers 422."""

    code = "invalid_input"
