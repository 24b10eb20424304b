"""Schemas of the text-pair matching endpoints (duplicate questions, answer ranking)."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, Field, model_validator

MODEL_NAME = Field(
    default=None, min_length=1, max_length=100,
    description="Served model to use (`<arch>-<dataset>`, e.g. `esim-quora`, or an ensemble "
    "such as `ensemble-quora`; see `GET /v1/match/models`); default: the best on Quora dev "
    "accuracy for `/v1/match`, the best on WikiQA dev MAP for `/v1/match/rank`.")


def _blank(text: str) -> bool:
    return not text.strip()


class TextPair(BaseModel):
    """Two texts to compare (side ``a`` and side ``b``)."""

    text_a: str = Field(description="First text, e.g. a question.")
    text_b: str = Field(description="Second text, e.g. a possible duplicate of it.")


class MatchRequest(BaseModel):
    """One pair (``text_a`` + ``text_b``) or a list of ``pairs``, not both."""

    model_config = {"json_schema_extra": {"examples": [
        {"text_a": "How can I learn to play the guitar quickly?",
         "text_b": "What is the fastest way to learn guitar?"},
        {"pairs": [
            {"text_a": "How do I lose weight fast?",
             "text_b": "What is the quickest way to lose weight?"},
            {"text_a": "How do I lose weight fast?",
             "text_b": "What is the capital of Australia?"},
            {"text_a": "Why is the sky blue?",
             "text_b": "What makes the sky look blue during the day?"},
        ]},
        {"text_a": "What are the best books on machine learning?",
         "text_b": "Which books should I read to learn machine learning?",
         "model": "esim-quora"},
    ]}}

    text_a: str | None = Field(
        default=None, description="First text of one pair (send with `text_b`).")
    text_b: str | None = Field(
        default=None, description="Second text of one pair (send with `text_a`).")
    pairs: list[TextPair] | None = Field(
        default=None, min_length=1,
        description="Several pairs (at most MODELZOO_MAX_ITEMS_PER_REQUEST), scored together; "
        "the results come back in the same order.")
    model: str | None = MODEL_NAME

    @model_validator(mode="after")
    def _one_pair_or_pairs(self) -> Self:
        single = self.text_a is not None or self.text_b is not None
        if single and self.pairs is not None:
            raise ValueError("send either 'text_a' + 'text_b' (one pair) or 'pairs' (a list "
                             "of {text_a, text_b}), not both")
        if not single and self.pairs is None:
            raise ValueError("send 'text_a' and 'text_b' (one pair) or 'pairs' (a list of "
                             "{text_a, text_b})")
        if single and (self.text_a is None or self.text_b is None):
            missing = "text_b" if self.text_b is None else "text_a"
            raise ValueError(f"'{missing}' is missing: a single pair needs both 'text_a' and "
                             "'text_b'")
        for i, (a, b) in enumerate(self.pair_list()):
            for side, text in (("text_a", a), ("text_b", b)):
                if _blank(text):
                    where = side if self.is_single else f"pairs[{i}].{side}"
                    raise ValueError(f"{where} is empty or only whitespace; send some text")
        return self

    @property
    def is_single(self) -> bool:
        """Whether the request used the one-pair form."""
        return self.pairs is None

    def pair_list(self) -> list[tuple[str, str]]:
        """The ``(text_a, text_b)`` pairs, in request order."""
        if self.pairs is None:
            return [(self.text_a or "", self.text_b or "")]
        return [(p.text_a, p.text_b) for p in self.pairs]


class MatchScore(BaseModel):
    """The verdict on one pair."""

    score: float = Field(description="Probability that the two texts match (are duplicates).")
    label: bool = Field(description="`score >= threshold`: the model's yes/no answer.")


class MatchResponse(BaseModel):
    """One result per pair, in request order; the one-pair form also has ``score`` and
    ``label`` at the top level."""

    model_config = {"json_schema_extra": {"examples": [
        {"model": "ensemble-quora", "threshold": 0.446711, "score": 0.741716, "label": True,
         "results": [{"score": 0.741716, "label": True}]},
        {"model": "ensemble-quora", "threshold": 0.446711,
         "results": [{"score": 0.949293, "label": True}, {"score": 0.013605, "label": False}]},
    ]}}

    model: str = Field(description="The model that scored the pairs.")
    threshold: float = Field(
        description="Decision threshold on `score`, tuned for accuracy on the model's dev "
        "split (stated in its model card).")
    score: float | None = Field(
        default=None, description="One-pair form only: probability that the texts match.")
    label: bool | None = Field(
        default=None, description="One-pair form only: `score >= threshold`.")
    results: list[MatchScore] = Field(description="One result per pair, in request order.")


class RankRequest(BaseModel):
    """A query and candidate texts to sort by how well each answers / matches it."""

    model_config = {"json_schema_extra": {"examples": [
        {"query": "how are glacier caves formed?",
         "candidates": [
             "The ice facade is approximately 60 m high.",
             "A glacier cave is a cave formed within the ice of a glacier.",
             "Glacier caves are often called ice caves, but this term is properly used to "
             "describe bedrock caves that contain year-round ice.",
         ]},
        {"query": "who wrote the origin of species?",
         "candidates": [
             "On the Origin of Species is a work of scientific literature by Charles Darwin.",
             "Paris is the capital and most populous city of France.",
             "The book was published on 24 November 1859.",
         ],
         "top_k": 2},
    ]}}

    query: str = Field(description="The question or query text.")
    candidates: list[str] = Field(
        min_length=1,
        description="Texts to rank (at most MODELZOO_MATCHING_MAX_CANDIDATES), e.g. candidate "
        "answer sentences.")
    model: str | None = MODEL_NAME
    top_k: int | None = Field(
        default=None, ge=1, description="Return only the best `top_k` candidates; default all.")

    @model_validator(mode="after")
    def _no_blank_text(self) -> Self:
        if _blank(self.query):
            raise ValueError("query is empty or only whitespace; send a question")
        for i, text in enumerate(self.candidates):
            if _blank(text):
                raise ValueError(f"candidates[{i}] is empty or only whitespace; send some "
                                 "text or leave the candidate out")
        return self


class RankedCandidateOut(BaseModel):
    """One candidate in the ranking."""

    index: int = Field(description="Its position in the request's `candidates`.")
    text: str = Field(description="The candidate text, as sent.")
    score: float = Field(description="Probability that it answers / matches the query.")


class RankResponse(BaseModel):
    """Candidates sorted by score, best first (ties keep request order)."""

    model_config = {"json_schema_extra": {"examples": [{"model": "esim-wikiqa", "results": [
        {"index": 1, "text": "A glacier cave is a cave formed within the ice of a glacier.",
         "score": 0.213647},
        {"index": 2, "text": "Glacier caves are often called ice caves, but this term is "
         "properly used to describe bedrock caves that contain year-round ice.",
         "score": 0.060155},
        {"index": 0, "text": "The ice facade is approximately 60 m high.", "score": 0.012786},
    ]}]}}

    model: str = Field(description="The model that scored the candidates.")
    results: list[RankedCandidateOut]


class MatchModelInfo(BaseModel):
    """One served matching model."""

    name: str = Field(description="Its name, to pass as `model`.")
    arch: str = Field(description="Architecture: dssm, mvlstm, matchpyramid, esim, or "
                      "ensemble (the mean of its `members`' probabilities).")
    dataset: str | None = Field(description="Training dataset (quora or wikiqa).")
    threshold: float = Field(description="Decision threshold of `label` on `/v1/match`.")
    metrics: dict[str, Any] = Field(description="Dev-split metrics from its model card.")
    params: int | None = Field(
        description="Number of parameters (an ensemble: its members' total).")
    default_for: list[str] = Field(
        description="The uses it is the default for: `match` (/v1/match), `rank` "
        "(/v1/match/rank).")
    members: list[str] | None = Field(
        default=None, description="An ensemble's member models (its score is the mean of "
        "their probabilities); null for a single model.")


class MatchModelsResponse(BaseModel):
    """The served matching models and the defaults."""

    model_config = {"json_schema_extra": {"examples": [{
        "default_match": "ensemble-quora", "default_rank": "esim-wikiqa", "models": [
            {"name": "ensemble-quora", "arch": "ensemble", "dataset": "quora",
             "threshold": 0.446711,
             "metrics": {"accuracy": 0.8256, "f1": 0.8295, "threshold": 0.4467,
                         "accuracy_at_0.5": 0.8161, "f1_at_0.5": 0.8143},
             "params": 10504893, "default_for": ["match"],
             "members": ["esim-quora", "dssm-quora"]},
            {"name": "esim-wikiqa", "arch": "esim", "dataset": "wikiqa", "threshold": 0.183564,
             "metrics": {"map": 0.6694, "mrr": 0.6741, "questions": 122, "threshold": 0.1836,
                         "f1": 0.3198},
             "params": 5496147, "default_for": ["rank"], "members": None},
        ]}]}}

    default_match: str = Field(description="Model used by `/v1/match` without `model`.")
    default_rank: str = Field(description="Model used by `/v1/match/rank` without `model`.")
    models: list[MatchModelInfo]
