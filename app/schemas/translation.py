"""Schemas of the translation endpoint."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

MAX_BEAM = 10
MAX_OUTPUT_TOKENS = 250  # the Transformer embeds at most 256 target positions


class TranslateRequest(BaseModel):
    """German text to translate: one ``text`` or a list of ``texts``, not both."""

    model_config = {"json_schema_extra": {"examples": [
        {"text": "Ein Mann fährt Fahrrad."},
        {"texts": ["Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."],
         "beam_size": 5},
        {"text": "Ein kleines Mädchen klettert auf einen Baum.", "beam_size": 1,
         "max_length": 40, "length_penalty": 1.0},
    ]}}

    text: str | None = Field(default=None, description="One German sentence.")
    texts: list[str] | None = Field(
        default=None, min_length=1,
        description="Several sentences (at most MODELZOO_MAX_ITEMS_PER_REQUEST); the "
        "translations come back in the same order.")
    beam_size: int = Field(default=5, ge=1, le=MAX_BEAM,
                           description="Hypotheses kept per sentence; 1 = greedy decoding.")
    max_length: int | None = Field(
        default=None, ge=1, le=MAX_OUTPUT_TOKENS,
        description="Most output subword tokens per sentence; default 1.2 x source + 10.")
    length_penalty: float = Field(
        default=0.6, ge=0.0, le=2.0,
        description="GNMT alpha (Wu et al. 2016): higher favours longer translations.")

    @model_validator(mode="after")
    def _one_of_text_or_texts(self) -> Self:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send exactly one of 'text' (a string) or 'texts' (a list of "
                             "strings)")
        for i, t in enumerate(self.sentences()):
            if not t.strip():
                where = "text" if self.text is not None else f"texts[{i}]"
                raise ValueError(f"{where} is empty or only whitespace; send a German "
                                 "sentence")
        return self

    def sentences(self) -> list[str]:
        """The texts to translate, in request order."""
        return [self.text] if self.text is not None else list(self.texts or [])


class TranslationOut(BaseModel):
    """One translation."""

    text: str = Field(description="The English translation (detokenized).")
    score: float = Field(
        description="Natural-log probability of the output (end token included) divided by "
        "the length penalty ((5 + length) / 6) ** length_penalty; closer to 0 is more "
        "confident.")


class TranslateResponse(BaseModel):
    """One translation per input text, in input order."""

    model_config = {"json_schema_extra": {"examples": [
        {"translations": [{"text": "A man is riding a bicycle.", "score": -1.6137}],
         "beam_size": 5},
        {"translations": [{"text": "Two dogs play in the snow.", "score": -0.7431},
                          {"text": "A woman in a red hat is reading a book.", "score": -1.0625}],
         "beam_size": 5},
    ]}}

    translations: list[TranslationOut]
    beam_size: int
