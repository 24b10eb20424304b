"""Schemas of the handwriting endpoint (the request is a multipart upload, not JSON)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Alternative(BaseModel):
    """A candidate letter and its probability."""

    char: str
    confidence: float = Field(ge=0.0, le=1.0)


class Character(BaseModel):
    """One recognised letter, where it is, and the next best guesses."""

    char: str = Field(description="The predicted character (upper case: the model is "
                      "case-insensitive).")
    confidence: float = Field(ge=0.0, le=1.0, description="Softmax probability of `char`.")
    box: list[int] = Field(min_length=4, max_length=4,
                           description="[x, y, width, height] in pixels of the uploaded image "
                           "(after EXIF rotation).")
    line: int = Field(ge=0, description="Line index, top to bottom.")
    word: int = Field(ge=0, description="Word index within the line, left to right.")
    alternatives: list[Alternative] = Field(description="The top-3 candidates, best first.")


class RecognizeResponse(BaseModel):
    """The text read from the image, line by line, with every letter's box."""

    model_config = {"json_schema_extra": {"examples": [{
        "text": "HELLO WORLD", "lines": ["HELLO WORLD"],
        "characters": [{"char": "H", "confidence": 0.98, "box": [12, 20, 30, 41], "line": 0,
                        "word": 0, "alternatives": [{"char": "H", "confidence": 0.98},
                                                    {"char": "N", "confidence": 0.01},
                                                    {"char": "K", "confidence": 0.004}]}],
        "width": 640, "height": 480, "labels": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "annotated_png": None,
    }]}}

    text: str = Field(description="Lines joined by newlines; words by single spaces.")
    lines: list[str]
    characters: list[Character]
    width: int = Field(description="Image width in pixels (after EXIF rotation).")
    height: int
    labels: str = Field(description="The characters the model can predict.")
    annotated_png: str | None = Field(
        default=None, description="With `annotate=true`: the image with each box and its "
        "letter drawn on it, PNG, base64-encoded.")
