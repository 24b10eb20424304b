"""Schemas of the word2vec endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import Word
from models.word2vec.predictor import PLOT_MAX_WORDS

MAX_K = 1000

ModelField = Field(
    default=None, max_length=50, examples=["cbow"],
    description="Which word2vec model answers: `skipgram` or `cbow` (see `GET /v1/models`, "
    "word2vec card → `variants`); default: the served default.",
)


class Neighbor(BaseModel):
    """A word and its cosine similarity to the query."""

    word: str
    cosine: float = Field(description="Cosine similarity in [-1, 1].")


class NeighborsRequest(BaseModel):
    """Nearest words of one word."""

    model_config = {"json_schema_extra": {"examples": [{"word": "chip", "k": 10}]}}

    word: Word
    k: int = Field(default=10, ge=1, le=MAX_K, description="How many neighbours to return.")
    model: str | None = ModelField


class NeighborsResponse(BaseModel):
    """The ``k`` nearest words by cosine, best first; the query word itself is excluded."""

    model_config = {"json_schema_extra": {"examples": [{"word": "chip", "neighbors": [
        {"word": "intel", "cosine": 0.744583}, {"word": "microprocessor", "cosine": 0.714299},
        {"word": "microprocessors", "cosine": 0.711067}, {"word": "bugs", "cosine": 0.707347},
        {"word": "high-end", "cosine": 0.660521}, {"word": "desktop", "cosine": 0.638999},
        {"word": "compatible", "cosine": 0.632322}, {"word": "micro", "cosine": 0.603347},
        {"word": "chips", "cosine": 0.602124}, {"word": "flaws", "cosine": 0.601341}]}]}}

    word: str = Field(description="The query as found in the vocabulary.")
    neighbors: list[Neighbor]


class BatchNeighborsRequest(BaseModel):
    """Nearest words of several words in one call."""

    model_config = {
        "json_schema_extra": {"examples": [{"words": ["chip", "japan", "xyzzy"], "k": 5}]}
    }

    words: list[Word] = Field(min_length=1, description="Query words (at most the item limit).")
    k: int = Field(default=10, ge=1, le=MAX_K)
    model: str | None = ModelField


class BatchNeighborsItem(BaseModel):
    """One query's answer; unknown words get ``neighbors: null`` and an error message."""

    word: str
    neighbors: list[Neighbor] | None
    error: str | None = None


class BatchNeighborsResponse(BaseModel):
    """Answers in the order of the query words."""

    model_config = {"json_schema_extra": {"examples": [{"results": [
        {"word": "chip", "neighbors": [
            {"word": "intel", "cosine": 0.744583}, {"word": "microprocessor", "cosine": 0.714299},
            {"word": "microprocessors", "cosine": 0.711067}, {"word": "bugs", "cosine": 0.707347},
            {"word": "high-end", "cosine": 0.660521}], "error": None},
        {"word": "japan", "neighbors": [
            {"word": "japanese", "cosine": 0.605682}, {"word": "furukawa", "cosine": 0.590519},
            {"word": "toshiba", "cosine": 0.59023}, {"word": "importer", "cosine": 0.57948},
            {"word": "nomura", "cosine": 0.577019}], "error": None},
        {"word": "xyzzy", "neighbors": None,
         "error": "not in the vocabulary: 'xyzzy'. The model knows the 9858 words of the Penn "
         "Treebank training set seen at least 5 times (lowercase, '<unk>' for rare words and "
         "'N' for numbers)"},
    ]}]}}

    results: list[BatchNeighborsItem]


class SimilarityRequest(BaseModel):
    """Cosine similarity of word pairs."""

    model_config = {
        "json_schema_extra": {"examples": [
            {"pairs": [["chip", "intel"], ["stock", "baby"], ["chip", "xyzzy"]]}]}
    }

    pairs: list[tuple[Word, Word]] = Field(min_length=1, description="Pairs of words.")
    model: str | None = ModelField


class SimilarityItem(BaseModel):
    """One pair's cosine, or ``null`` with the pair's unknown words."""

    pair: tuple[str, str]
    cosine: float | None
    unknown: list[str] = Field(default_factory=list)


class SimilarityResponse(BaseModel):
    """Answers in the order of the pairs."""

    model_config = {"json_schema_extra": {"examples": [{"results": [
        {"pair": ["chip", "intel"], "cosine": 0.744583, "unknown": []},
        {"pair": ["stock", "baby"], "cosine": 0.161705, "unknown": []},
        {"pair": ["chip", "xyzzy"], "cosine": None, "unknown": ["xyzzy"]}]}]}}

    results: list[SimilarityItem]


class AnalogyRequest(BaseModel):
    """Words nearest ``a - b + c`` (3CosAdd): king - man + woman ~ queen."""

    model_config = {
        "json_schema_extra": {"examples": [{"a": "king", "b": "man", "c": "woman", "k": 5}]}
    }

    a: Word
    b: Word
    c: Word
    k: int = Field(default=5, ge=1, le=MAX_K)
    model: str | None = ModelField


class AnalogyResponse(BaseModel):
    """The ``k`` best answers, input words excluded."""

    model_config = {"json_schema_extra": {"examples": [{
        "query": "king - man + woman", "answers": [
            {"word": "michael", "cosine": 0.515706}, {"word": "burger", "cosine": 0.463174},
            {"word": "beauty", "cosine": 0.45428}, {"word": "beverage", "cosine": 0.435674},
            {"word": "universal", "cosine": 0.434784}]}]}}

    query: str = Field(description="The vector expression that was searched.")
    answers: list[Neighbor]


class PlotRequest(BaseModel):
    """Words to draw in 2-D."""

    model_config = {"json_schema_extra": {"examples": [{
        "words": ["japan", "germany", "france", "britain", "ibm", "intel", "toyota", "sony",
                  "january", "march", "june", "october", "two", "three", "four", "million"],
        "method": "pca",
    }]}}

    words: list[Word] = Field(
        min_length=2, max_length=PLOT_MAX_WORDS,
        description=f"2 to {PLOT_MAX_WORDS} words; unknown ones are listed in the "
        "`X-Unknown-Words` response header, repeats drawn once.")
    method: Literal["pca", "tsne"] = Field(
        default="pca", description="`pca` (first two principal components) or `tsne` "
        "(t-SNE on cosine distance, seeded: same words, same picture).")
    model: str | None = ModelField
