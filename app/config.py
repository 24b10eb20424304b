"""Service settings: every knob has a ``MODELZOO_*`` environment variable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.common.paths import REPO_ROOT

TASKS: tuple[str, ...] = ("word2vec", "lm", "translation", "matching", "handwriting")


# int8 by default on CPU: the handwriting CNN (static int8 with calibrated activation ranges:
# 8x faster classification, accuracy within 0.05 points, batch-independent outputs). Dynamic
# int8 (lm, translation, matching) quantizes activations with ranges taken from each batch,
# so a batched result differs slightly from the same input alone: opt in per task.
INT8_BY_DEFAULT: tuple[str, ...] = ("handwriting",)


def _parse_task_list(value: str, name: str, allow_all: bool) -> str:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    if allow_all and items in (["all"], ["none"], ["auto"]):
        return items[0]
    unknown = [v for v in items if v not in TASKS]
    if unknown:
        raise ValueError(
            f"{name} has unknown task(s) {unknown}: use a comma-separated list of "
            f"{', '.join(TASKS)}" + (", or 'auto' / 'all' / 'none'" if allow_all else "")
        )
    return ",".join(dict.fromkeys(items))


class Settings(BaseSettings):
    """Service configuration, read from ``MODELZOO_*`` environment variables.

    Invalid values fail at startup with a message naming the variable and what to set.
    """

    model_config = SettingsConfigDict(env_prefix="MODELZOO_", extra="ignore")

    artifacts_dir: Path = Field(
        default=REPO_ROOT / "artifacts", description="Directory with one folder per task."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto = CUDA when available, else CPU."
    )
    models: str = Field(
        default="all",
        description="Tasks to load: 'all' (every task with an artifact folder) or a comma list.",
    )
    quantize: str = Field(
        default="auto",
        description="Tasks to serve int8-quantized: auto|list|all|none. auto = the tasks in "
        "INT8_BY_DEFAULT (handwriting: static int8) when they run on CPU; none on CUDA.")
    cuda_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        default="float16",
        description="Floating dtype of models served on CUDA (int8 and CPU models: float32).",
    )
    torch_threads: int | None = Field(
        default=None, ge=0, description="torch intra-op threads; unset or 0 = torch's default.")
    malloc_arena_max: int = Field(
        default=2, ge=0, le=1024,
        description="glibc malloc arenas (mallopt M_ARENA_MAX, set at startup); 0 = glibc's "
        "default (8 per core). Fewer arenas keep the server's memory flat under "
        "multithreaded load; a MALLOC_ARENA_MAX environment variable takes precedence.")
    warmup: bool = Field(
        default=True,
        description="Run one tiny inference per model after it loads, before it is ready.",
    )
    max_request_bytes: int = Field(default=1_000_000, ge=1_024, description="Body size limit.")
    max_items_per_request: int = Field(
        default=256, ge=1, le=100_000, description="Words or pairs in one call."
    )
    lm_max_tokens: int = Field(default=200, ge=1, description="Words per generated sample.")
    lm_max_samples: int = Field(default=8, ge=1, description="Samples per generate call.")
    lm_max_prompt_words: int = Field(default=200, ge=1, description="Prompt or scored words.")
    max_upload_bytes: int = Field(
        default=10_000_000, ge=1_024, description="Body size limit of image uploads."
    )
    handwriting_max_pixels: int = Field(
        default=40_000_000, ge=10_000,
        description="Largest decoded image (width x height); bigger ones are refused (413).",
    )
    handwriting_max_side: int = Field(
        default=1600, ge=64, description="Images are downscaled to this longer side first."
    )
    translation_max_chars: int = Field(
        default=1000, ge=1, le=100_000, description="Characters per text to translate."
    )
    matching_max_chars: int = Field(
        default=1000, ge=1, le=100_000,
        description="Characters per text on /v1/match and /v1/match/rank.")
    matching_max_candidates: int = Field(
        default=100, ge=1, le=10_000, description="Candidates per /v1/match/rank call.")
    require_manifest: bool = Field(
        default=False,
        description="Refuse artifact folders without manifest.json (default: load, warn).",
    )
    api_keys: str = Field(
        default="", repr=False,
        description="Comma-separated keys accepted in X-API-Key on /v1/...; empty = no auth.",
    )
    cors_origins: str = Field(
        default="", description="Comma list of allowed CORS origins, or '*'; empty = no CORS."
    )
    max_concurrent_requests: int = Field(
        default=64, ge=1, description="/v1/... requests in flight; beyond it 503 at once."
    )
    batching: bool = Field(
        default=True,
        description="Dynamic batching of /v1/translate, /v1/lm/score, /v1/match and the letter "
        "classifier of /v1/handwriting/*; false = each request runs alone in the threadpool.",
    )
    translation_max_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Most texts per batched translation call.")
    translation_max_wait_ms: float = Field(
        default=50.0, ge=0.0, le=10_000.0,
        description="Under load, how long after a translation batch ends the next one waits to "
        "fill (an idle worker never waits).")
    lm_score_max_batch_size: int = Field(
        default=16, ge=1, le=1024, description="Most texts per batched LM scoring call.")
    lm_score_max_wait_ms: float = Field(
        default=5.0, ge=0.0, le=10_000.0,
        description="The same for LM scoring.")
    matching_max_batch_size: int = Field(
        default=64, ge=1, le=1024, description="Most text pairs per batched matching call.")
    matching_max_wait_ms: float = Field(
        default=5.0, ge=0.0, le=10_000.0,
        description="The same for text-pair matching.")
    handwriting_max_batch_size: int = Field(
        default=16, ge=1, le=1024,
        description="Most images whose letter crops share one batched classifier pass.")
    handwriting_max_wait_ms: float = Field(
        default=5.0, ge=0.0, le=10_000.0,
        description="The same for the handwriting letter classifier.")
    batch_queue_size: int = Field(
        default=256, ge=1,
        description="Items (texts) waiting per batched model; beyond it 503 + Retry-After.")
    request_timeout_s: float = Field(
        default=30.0, gt=0.0,
        description="A batched request not answered within this time gets 504.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = Field(
        default=True, description="One JSON line per request on the 'modelzoo.access' logger."
    )

    @field_validator("models")
    @classmethod
    def _check_models(cls, v: str) -> str:
        parsed = _parse_task_list(v, "MODELZOO_MODELS", allow_all=True)
        if parsed in ("", "none"):
            raise ValueError("MODELZOO_MODELS must name at least one task, or be 'all'")
        return parsed

    @field_validator("quantize")
    @classmethod
    def _check_quantize(cls, v: str) -> str:
        return _parse_task_list(v, "MODELZOO_QUANTIZE", allow_all=True) or "none"

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, v: str) -> str:
        keys = [k.strip() for k in v.split(",") if k.strip()]
        if v.strip() and not keys:
            raise ValueError("MODELZOO_API_KEYS names no key: give comma-separated keys, "
                             "or leave it empty to turn authentication off")
        return ",".join(dict.fromkeys(keys))

    @field_validator("cors_origins")
    @classmethod
    def _check_cors_origins(cls, v: str) -> str:
        origins = [o.strip().rstrip("/") for o in v.split(",") if o.strip()]
        bad = [o for o in origins if o != "*" and not re.fullmatch(r"https?://[^/\s]+", o)]
        if bad:
            raise ValueError(f"MODELZOO_CORS_ORIGINS has invalid origin(s) {bad}: use "
                             "scheme://host[:port] like https://app.example.com, or '*'")
        return "*" if "*" in origins else ",".join(dict.fromkeys(origins))

    def api_key_list(self) -> list[str]:
        """The accepted API keys; empty when authentication is off."""
        return [k for k in self.api_keys.split(",") if k]

    def cors_origin_list(self) -> list[str]:
        """Allowed CORS origins (``["*"]`` for any); empty when CORS is off."""
        return [o for o in self.cors_origins.split(",") if o]

    def requested_models(self) -> list[str] | None:
        """Explicitly requested tasks, or ``None`` for 'all available'."""
        return None if self.models == "all" else self.models.split(",")

    def quantize_task(self, task: str) -> bool:
        """Whether ``task`` should be served int8-quantized (``auto``: a task of
        :data:`INT8_BY_DEFAULT` whose device resolves to CPU)."""
        if self.quantize == "auto":
            on_cuda = self.device == "cuda" or (self.device == "auto"
                                                and torch.cuda.is_available())
            return task in INT8_BY_DEFAULT and not on_cuda
        return self.quantize == "all" or task in self.quantize.split(",")
