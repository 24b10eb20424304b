"""Schemas of the handwriting endpoint (the request is a multipart upload, not JSON)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Alternative(BaseModel):
    """A candidate letter and its probability."""

    char: str
    confidence: float = Field(ge=0.0, le=1.0)


class Character(BaseModel):
    """One recognised letter, where it is, and the next best guesses."""

    char: str = Field(description="The predicted character: upper case from the letter CNN "
                      "(`pipeline` `contours`, case-insensitive), as written from the line "
                      "recognizer (`lines`).")
    confidence: float = Field(ge=0.0, le=1.0, description="Softmax probability of `char`.")
    box: list[int] = Field(min_length=4, max_length=4,
                           description="[x, y, width, height] in pixels of the uploaded image "
                           "(after EXIF rotation). For `lines` the letter's horizontal extent "
                           "comes from the CTC column that emitted it (approximate) and its "
                           "height is the line's.")
    line: int = Field(ge=0, description="Line index, top to bottom.")
    word: int = Field(ge=0, description="Word index within the line, left to right.")
    alternatives: list[Alternative] = Field(description="The top-3 candidates, best first.")


class TextLineBox(BaseModel):
    """A line of text and where it and its words are."""

    text: str
    box: list[int] = Field(min_length=4, max_length=4,
                           description="[x, y, width, height] of the line, image pixels.")
    words: list[list[int]] = Field(description="[x, y, width, height] of each word.")
    pipeline: str = Field(default="", description="The pipeline that read this line: "
                          "`lines` or `contours`. `pipeline=auto` reads the page both ways; "
                          "a line both found is read jointly by the line recognizer with the "
                          "letter classifier's evidence (`lines`), and a line only one found "
                          "comes from that one.")


class RecognizeResponse(BaseModel):
    """The text read from the image, line by line, with every letter's box."""

    model_config = {"json_schema_extra": {"examples": [{
        "text": "HELLO WORLD", "lines": ["HELLO WORLD"],
        "characters": [{"char": "H", "confidence": 0.98, "box": [12, 20, 30, 41], "line": 0,
                        "word": 0, "alternatives": [{"char": "H", "confidence": 0.98},
                                                    {"char": "N", "confidence": 0.01},
                                                    {"char": "K", "confidence": 0.004}]}],
        "width": 640, "height": 480, "labels": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "pipeline": "contours",
        "line_boxes": [{"text": "HELLO WORLD", "box": [12, 20, 300, 41],
                        "words": [[12, 20, 140, 41], [172, 20, 140, 41]],
                        "pipeline": "contours"}],
        "annotated_png": None,
    }]}}

    text: str = Field(description="Lines joined by newlines; words by single spaces.")
    lines: list[str]
    characters: list[Character]
    width: int = Field(description="Image width in pixels (after EXIF rotation).")
    height: int
    labels: str = Field(description="The characters the pipeline that read the image can "
                        "output (letter CNN: A-Z; line recognizer: case-aware letters, digits, "
                        "space and punctuation).")
    pipeline: str = Field(description="Which pipeline read the image: `contours` (letters "
                          "segmented and classified one by one) or `lines` (each text line "
                          "read whole by the CRNN). With `pipeline=auto` the service reads "
                          "both ways and combines them; this is `lines` when any line came "
                          "from the line recognizer (see `line_boxes[].pipeline`).")
    line_boxes: list[TextLineBox] = Field(default_factory=list,
                                          description="Each line's text, box and word boxes.")
    annotated_png: str | None = Field(
        default=None, description="With `annotate=true`: the image with each box and its "
        "letter drawn on it, PNG, base64-encoded.")
