"""Loads artifacts into predictors once, and tells what is ready.

Device policy lives in :func:`models.common.device.resolve_device`: ``auto`` means CUDA
when available, and int8-quantized models always stay on CPU; on CUDA a model runs in
``MODELZOO_CUDA_DTYPE`` (float16 by default, :func:`models.common.device.inference_dtype`).
After loading, each model answers one tiny request (``predictor.warmup()``, when
``MODELZOO_WARMUP``) before it is ready, so the first real request is not slow. Each
artifact folder is checked against its ``manifest.json`` first (``models.common.manifest``):
a mismatch fails that model only; a folder without one loads with a warning unless
``require_manifest``.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from app.config import Settings
from models.common.artifacts import directory_size_bytes
from models.common.device import cast_for_inference, inference_dtype, resolve_device
from models.common.manifest import ManifestError, MissingManifestError, verify_manifest
from models.common.predictor import Predictor, predictor_modules

log = logging.getLogger(__name__)

# task -> "module:Class" of its predictor; imported only when the task is loaded.
PREDICTORS: dict[str, str] = {
    "word2vec": "models.word2vec.predictor:Word2VecPredictor",
    "lm": "models.lm.predictor:LMPredictor",
    "handwriting": "models.handwriting.predictor:HandwritingPredictor",
    "translation": "models.translation.predictor:TranslationPredictor",
    "matching": "models.matching.predictor:MatchingPredictor",
}

Status = Literal["pending", "loading", "ready", "failed"]


class ConfigurationError(RuntimeError):
    """Settings ask for something that cannot be served; raised at startup."""


class ModelNotReadyError(Exception):
    """A route asked for a model that is not loaded; the service answers 503."""

    def __init__(self, task: str, status: str, reason: str | None = None) -> None:
        self.task, self.status, self.reason = task, status, reason
        extra = f": {reason}" if reason else ""
        super().__init__(f"model '{task}' is {status}{extra}")


@dataclass
class ModelSlot:
    """One configured model and its loading state."""

    task: str
    status: Status = "pending"
    predictor: Predictor | None = None
    error: str | None = None
    load_seconds: float | None = None
    dtype: str | None = None
    warmup_seconds: float | None = None


class ModelRegistry:
    """One predictor per configured task.

    Args:
        settings: which tasks, where the artifacts are, device and quantization.
        on_change: called with the slot each time a model's status changes (metrics).

    Raises:
        ConfigurationError: an explicitly requested task has no predictor or no artifact
            folder, or ``all`` finds no artifact at all.
    """

    def __init__(self, settings: Settings,
                 on_change: Callable[[ModelSlot], None] | None = None) -> None:
        self.settings = settings
        self.on_change = on_change
        self._check_device()
        self.slots: dict[str, ModelSlot] = {t: ModelSlot(t) for t in self._plan()}
        self._lock = threading.Lock()
        for slot in self.slots.values():
            self._notify(slot)

    def _check_device(self) -> None:
        """``MODELZOO_DEVICE=cuda`` on a machine without CUDA fails startup, not each model."""
        if self.settings.device == "cuda" and not torch.cuda.is_available():
            raise ConfigurationError(
                "MODELZOO_DEVICE=cuda but torch.cuda.is_available() is False (no visible GPU, "
                f"no driver, or a CPU-only torch build: {torch.__version__}); set "
                "MODELZOO_DEVICE=auto or cpu, or install a CUDA build of torch (Docker: "
                "--build-arg TORCH_VARIANT=cu128, run with --gpus all)"
            )

    def _plan(self) -> list[str]:
        root = self.settings.artifacts_dir
        requested = self.settings.requested_models()
        if requested is None:
            tasks = [t for t in PREDICTORS if (root / t).is_dir()]
            if not tasks:
                raise ConfigurationError(
                    f"no model artifacts found under {root}; set MODELZOO_ARTIFACTS_DIR to the "
                    "folder holding word2vec/ ... or train one with 'modelzoo train <task>'"
                )
            return tasks
        for task in requested:
            if task not in PREDICTORS:
                raise ConfigurationError(
                    f"task '{task}' is not served by this version; MODELZOO_MODELS may "
                    f"name {', '.join(PREDICTORS)}"
                )
            if not (root / task).is_dir():
                raise ConfigurationError(
                    f"MODELZOO_MODELS asks for '{task}' but {root / task} does not exist; "
                    f"train it with 'modelzoo train {task}' or remove it from MODELZOO_MODELS"
                )
        return requested

    def load_all(self) -> None:
        """Load every pending model (blocking); failures are recorded, not raised."""
        for slot in self.slots.values():
            if slot.status == "pending":
                self._load(slot)

    def _notify(self, slot: ModelSlot) -> None:
        if self.on_change is not None:
            try:
                self.on_change(slot)
            except Exception:  # observing a load must never break it
                log.exception("on_change failed for %s", slot.task)

    def _load(self, slot: ModelSlot) -> None:
        slot.status = "loading"
        self._notify(slot)
        started = time.perf_counter()
        try:
            self._verify(slot.task)
            module_name, class_name = PREDICTORS[slot.task].split(":")
            cls = getattr(importlib.import_module(module_name), class_name)
            quantize = self.settings.quantize_task(slot.task)
            device = resolve_device(self.settings.device, quantized=quantize)
            predictor = cls.load(self.settings.artifacts_dir / slot.task, device, quantize)
            modules = predictor_modules(predictor)  # none for word2vec's vector table
            dtype = inference_dtype(predictor.device, self.settings.cuda_dtype, quantize)
            for module in modules.values():
                cast_for_inference(module, dtype)
            # word2vec has no module to cast: it reports the dtype of its vector table
            slot.dtype = (str(dtype).removeprefix("torch.") if modules
                          else getattr(predictor, "dtype", None))
        except ManifestError as exc:  # one line naming the file; no traceback to read
            log.error("refusing to load %s: %s", slot.task, exc)
            slot.status, slot.error = "failed", str(exc)
            self._notify(slot)
            return
        except Exception as exc:  # a broken artifact must not take the service down
            log.exception("failed to load %s", slot.task)
            slot.status, slot.error = "failed", f"{type(exc).__name__}: {exc}"
            self._notify(slot)
            return
        slot.load_seconds = round(time.perf_counter() - started, 3)
        log.info("loaded %s on %s (%s) in %.2fs", slot.task, predictor.device, slot.dtype,
                 slot.load_seconds)
        if self.settings.warmup:
            self._warmup(slot, predictor)
        slot.predictor, slot.status = predictor, "ready"
        self._notify(slot)

    def _warmup(self, slot: ModelSlot, predictor: Predictor) -> None:
        """Run the predictor's ``warmup()`` once, timed; a failure is logged, not fatal."""
        warmup = getattr(predictor, "warmup", None)
        if warmup is None:
            return
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                warmup()
        except Exception:  # the model loaded; a real request may still succeed
            log.warning("warm-up of %s failed; serving it anyway", slot.task, exc_info=True)
            return
        slot.warmup_seconds = round(time.perf_counter() - started, 3)
        log.info("warmed up %s in %.3fs", slot.task, slot.warmup_seconds)

    def _verify(self, task: str) -> None:
        """Check the task's artifact against its ``manifest.json`` before loading it.

        A folder without a manifest (e.g. an artifact trained before manifests existed) is
        loaded with a warning, unless ``require_manifest`` is set.

        Raises:
            ManifestError: a file is missing, unexpected or changed, the manifest is
                malformed, or it is absent while ``require_manifest`` is set.
        """
        directory = self.settings.artifacts_dir / task
        try:
            n_files = verify_manifest(directory)
        except MissingManifestError as exc:
            if self.settings.require_manifest:
                raise MissingManifestError(
                    f"the '{task}' artifact has no manifest.json and MODELZOO_REQUIRE_MANIFEST "
                    f"is on; write one with 'modelzoo manifest {task}'") from exc
            log.warning("%s has no manifest.json: loading it unverified (write one with "
                        "'modelzoo manifest %s'; MODELZOO_REQUIRE_MANIFEST=true refuses such "
                        "folders)", directory, task)
            return
        log.info("%s: %d files match manifest.json", task, n_files)

    def get(self, task: str) -> Predictor:
        """The ready predictor for ``task``.

        Raises:
            ModelNotReadyError: the task is not configured, still loading, or failed.
        """
        slot = self.slots.get(task)
        if slot is None:
            raise ModelNotReadyError(task, "not configured",
                                     f"add it to MODELZOO_MODELS (now '{self.settings.models}')")
        if slot.predictor is None:
            raise ModelNotReadyError(task, slot.status, slot.error)
        return slot.predictor

    def not_ready(self) -> dict[str, str]:
        """Tasks that are not ready, with their status (and error, if any)."""
        return {
            s.task: s.status + (f": {s.error}" if s.error else "")
            for s in self.slots.values()
            if s.status != "ready"
        }

    def describe(self) -> list[dict[str, Any]]:
        """Each configured model's card plus its runtime facts (device, quantized, size)."""
        out = []
        for slot in self.slots.values():
            info: dict[str, Any] = {"task": slot.task, "status": slot.status}
            p = slot.predictor
            if p is not None:
                artifact = self.settings.artifacts_dir / slot.task
                info |= {
                    "device": str(p.device),
                    "quantized": p.quantized,
                    "dtype": slot.dtype,
                    "size_on_disk_bytes": directory_size_bytes(artifact),
                    "load_seconds": slot.load_seconds,
                    "warmup_seconds": slot.warmup_seconds,
                    "card": p.card,
                }
            elif slot.error:
                info["error"] = slot.error
            out.append(info)
        return out
