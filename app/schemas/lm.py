"""Schemas of the language-model endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field


class GenerateRequest(BaseModel):
    """Sample text word by word from the LSTM LM."""

    model_config = {"json_schema_extra": {"examples": [
        {"prompt": "the company said", "max_tokens": 20, "temperature": 0.8, "top_k": 40,
         "seed": 7, "num_samples": 2, "stop_at_eos": True},
    ]}}

    prompt: str = Field(default="", max_length=5_000,
                        description="Words to continue (PTB style, lowercase); empty = start "
                        "a sentence.")
    max_tokens: int = Field(default=30, ge=1, description="Words to generate per sample.")
    # below ~1e-37 the scaled logits overflow float32 (NaN probabilities); 1e-3 is greedy already
    temperature: float = Field(default=1.0, ge=1e-3, le=100.0,
                               description="Softmax temperature, >= 0.001; small values are "
                               "~greedy.")
    top_k: int | None = Field(default=None, ge=1, description="Sample among the k best words.")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0,
                                description="Nucleus sampling: smallest set with this mass.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1,
                             description="Same seed and inputs give the same text.")
    num_samples: int = Field(default=1, ge=1, description="Independent samples.")
    stop_at_eos: bool = Field(default=False,
                              description="End a sample at <eos> instead of writing a newline.")


class Sample(BaseModel):
    """One generated continuation."""

    text: str = Field(description="Generated words; <eos> rendered as a newline.")
    tokens: list[str]


class GenerateResponse(BaseModel):
    """Samples, the seed used and the prompt words that became <unk>."""

    model_config = {"json_schema_extra": {"examples": [{"samples": [
        {"text": "it made its proposal to acquire a <unk> business plan that has the effect "
         "of it",
         "tokens": ["it", "made", "its", "proposal", "to", "acquire", "a", "<unk>", "business",
                    "plan", "that", "has", "the", "effect", "of", "it"]},
        {"text": "it plans to accept N jobs in the N years",
         "tokens": ["it", "plans", "to", "accept", "N", "jobs", "in", "the", "N", "years"]},
    ], "seed": 7, "unknown_words": []}]}}

    samples: list[Sample]
    seed: int
    unknown_words: list[str]


class ScoreRequest(BaseModel):
    """Text to score."""

    model_config = {"json_schema_extra": {"examples": [
        {"text": "the company said it expects higher earnings"}]}}

    text: str = Field(min_length=1, max_length=5_000)


class TokenScore(BaseModel):
    token: str
    logprob: float = Field(description="Natural-log probability given the words before it.")


class ScoreResponse(BaseModel):
    """Per-token log-probabilities (a final <eos> included) and the perplexity."""

    model_config = {"json_schema_extra": {"examples": [{"tokens": [
        {"token": "the", "logprob": -1.566916}, {"token": "company", "logprob": -3.5303},
        {"token": "said", "logprob": -1.798996}, {"token": "it", "logprob": -0.926947},
        {"token": "expects", "logprob": -3.362694}, {"token": "higher", "logprob": -7.58597},
        {"token": "earnings", "logprob": -2.594324}, {"token": "<eos>", "logprob": -2.934708},
    ], "perplexity": 20.8553, "unknown_words": []}]}}

    tokens: list[TokenScore]
    perplexity: float
    unknown_words: list[str]
