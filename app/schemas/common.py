"""Field types shared by several tasks."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def _non_blank(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must be a non-empty word (it was empty or only whitespace)")
    if any(ch.isspace() for ch in value):
        raise ValueError("must be a single word without spaces; send several words as a list")
    return value


Word = Annotated[
    str,
    Field(max_length=100, examples=["chip"], description="One word (a PTB token)."),
    AfterValidator(_non_blank),
]
