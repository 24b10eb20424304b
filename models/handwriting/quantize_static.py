"""Post-training static int8 quantization of the letter CNN (eager mode, x86/fbgemm).

The seed tutorial's second quantization method, the one that covers convolutions (dynamic
quantization only covers Linear/LSTM): fuse conv+bn+relu (and linear+bn+relu), set the
``x86`` qconfig (per-channel symmetric int8 weights, histogram-observed uint8 activations),
``prepare`` with observers, calibrate on training images, ``convert``.

Stored without pickle as ``<artifact>/int8-static/``:

* ``observers.safetensors`` - the calibrated state of every activation observer (histogram,
  min and max: plain float32 tensors);
* ``quantization.json`` - format, torch version, qconfig, the sha256 of the float weights it
  was calibrated on, how it was calibrated (images, sets, split, seed) and the fp32 vs int8
  figures measured by ``modelzoo quantize handwriting --static``, including ``serve``:
  whether int8 lost at most :data:`MAX_ACCURACY_DROP_POINTS` accuracy points.

Loading rebuilds the float model, fuses and prepares it, puts the stored observer state
back and converts: weights are quantized from the float weights by the same deterministic
per-channel observer, so the result equals the calibrated model exactly (tested).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.ao.quantization import DeQuantStub, QuantStub

from models.common.artifacts import WEIGHTS, ArtifactError, read_json, write_json
from models.common.manifest import file_sha256
from models.handwriting.augment import prepare_batch
from models.handwriting.data import LabelSet, load_sets
from models.handwriting.model import LetterCNN

log = logging.getLogger(__name__)

STATIC_DIR = "int8-static"
OBSERVERS = "observers.safetensors"
INFO = "quantization.json"
FORMAT = "modelzoo-int8-static"
FORMAT_VERSION = 1
ENGINE = "x86"
MAX_ACCURACY_DROP_POINTS = 0.5

_use_static: ContextVar[bool] = ContextVar("modelzoo_use_static_int8", default=True)


def use_static_int8() -> bool:
    """Whether quantized predictors may load ``int8-static/`` (:func:`ignoring_static_int8`)."""
    return _use_static.get()


@contextlib.contextmanager
def ignoring_static_int8() -> Iterator[None]:
    """Within this block quantized predictors use dynamic int8 even where ``int8-static/``
    exists (``modelzoo quantize handwriting`` without ``--static`` writes the dynamic one)."""
    token = _use_static.set(False)
    try:
        yield
    finally:
        _use_static.reset(token)


@contextlib.contextmanager
def _quiet_quantization_warnings() -> Iterator[None]:
    """Hide torch's deprecation notices about ``reduce_range`` and quantized tensors: the
    x86 default qconfig still uses both in torch 2.13."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        yield


class QuantizableLetterCNN(nn.Module):
    """:class:`LetterCNN` with quant/dequant stubs around it, for eager-mode static quantization.

    The float model's layers are copied (its own module is left untouched); dropout, an
    identity at inference, is dropped; global average pooling is ``adaptive_avg_pool2d``,
    which has an int8 kernel. Same outputs as the float model in float.
    """

    def __init__(self, model: LetterCNN) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.features = nn.Sequential(*(copy.deepcopy(m) for m in model.features
                                        if not isinstance(m, nn.Dropout | nn.Dropout2d)))
        self.classifier = nn.Sequential(*(copy.deepcopy(m) for m in model.classifier
                                          if not isinstance(m, nn.Dropout | nn.Flatten)))
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x - 0.5)                                 # (B, 1, S, S)
        x = self.features(x)                                    # (B, C3, S/8, S/8)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)              # (B, C3)
        return self.dequant(self.classifier(x))                 # (B, num_classes)

    def fuse(self) -> QuantizableLetterCNN:
        """Fuse conv+bn+relu and linear+bn(+relu) in place (eval mode); return self."""
        fuse = torch.ao.quantization.fuse_modules
        f = list(self.features)
        groups = [[str(i), str(i + 1), str(i + 2)] for i in range(len(f) - 2)
                  if isinstance(f[i], nn.Conv2d) and isinstance(f[i + 1], nn.BatchNorm2d)
                  and isinstance(f[i + 2], nn.ReLU)]
        fuse(self.features, groups, inplace=True)
        c = list(self.classifier)
        for i in range(len(c) - 1):
            if isinstance(c[i], nn.Linear) and isinstance(c[i + 1], nn.BatchNorm1d):
                fuse(self.classifier, [[str(i), str(i + 1)]], inplace=True)  # BN folded
                if i + 2 < len(c) and isinstance(c[i + 2], nn.ReLU):
                    fuse(self.classifier, [[str(i), str(i + 2)]], inplace=True)
        return self


def prepare_static(model: nn.Module) -> QuantizableLetterCNN:
    """A fused copy of ``model`` with the x86 qconfig and observers attached (``prepare``).

    Raises:
        TypeError: ``model`` is not a :class:`LetterCNN` (the seed CNN is not supported).
    """
    if not isinstance(model, LetterCNN):
        raise TypeError(f"static int8 quantization supports the served LetterCNN, not "
                        f"{type(model).__name__}")
    torch.backends.quantized.engine = ENGINE
    q = QuantizableLetterCNN(model.cpu().float().eval()).eval().fuse()
    with _quiet_quantization_warnings():
        q.qconfig = torch.ao.quantization.get_default_qconfig(ENGINE)
        torch.ao.quantization.prepare(q, inplace=True)
    return q


@torch.inference_mode()
def calibrate(prepared: nn.Module, images: np.ndarray, image_size: int,
              batch_size: int = 256) -> None:
    """Run uint8 letter images (N, S, S) through the observers."""
    for i in range(0, len(images), batch_size):
        prepared(prepare_batch(torch.from_numpy(images[i:i + batch_size]), image_size))


def convert_static(prepared: nn.Module) -> nn.Module:
    """The int8 model of a calibrated ``prepared`` one (``prepared`` is left as it is)."""
    torch.backends.quantized.engine = ENGINE
    with _quiet_quantization_warnings():
        return torch.ao.quantization.convert(copy.deepcopy(prepared).eval(), inplace=False)


def calibration_images(root: Path, sets: tuple[str, ...] | list[str], n: int,
                       label_set: LabelSet, seed: int = 0) -> tuple[np.ndarray, dict[str, int]]:
    """``n`` letter images drawn without replacement from the **training** split
    (``split == 0``) of ``sets``, and how many came from each set.

    Raises:
        FileNotFoundError: an archive is missing.
        ValueError: ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"calibration needs at least one image, got {n}")
    train = load_sets(root, sets, 0, label_set)  # split 0: training images only
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(train), size=min(n, len(train)), replace=False))
    names, counts = np.unique(train.source[pick], return_counts=True)
    return train.images[pick], {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def quantize_static(model: nn.Module, images: np.ndarray, image_size: int
                    ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Fuse, prepare, calibrate on ``images`` and convert.

    Returns:
        ``(int8 model, observer state)``: the state is what :func:`save_static` stores.
    """
    prepared = prepare_static(model)
    calibrate(prepared, images, image_size)
    return convert_static(prepared), observer_state(prepared)


def observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    """The calibrated activation observers' buffers of a prepared model, as plain tensors."""
    return {k: v.detach().float().contiguous().clone()
            for k, v in prepared.state_dict().items() if "activation_post_process" in k}


def from_observer_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Rebuild the int8 model from the float model and stored observer state.

    Raises:
        ArtifactError: the stored observers do not match the model's.
    """
    prepared = prepare_static(model)
    expected = set(observer_state(prepared))
    if set(state) != expected:
        raise ArtifactError(f"the int8-static observers do not fit the model: missing "
                            f"{sorted(expected - set(state))[:3]}, unexpected "
                            f"{sorted(set(state) - expected)[:3]}")
    prepared.load_state_dict(state, strict=False)
    return convert_static(prepared)


def save_static(artifact_dir: Path, state: dict[str, torch.Tensor],
                info: dict[str, Any]) -> Path:
    """Write ``artifact_dir/int8-static/`` (observer state + description) and return it."""
    out = artifact_dir / STATIC_DIR
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, out / OBSERVERS, metadata={"format": FORMAT})
    write_json(out / INFO, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "torch": torch.__version__,
        "engine": ENGINE,
        "qconfig": {"activation": "HistogramObserver quint8 per-tensor affine, reduce_range",
                    "weight": "PerChannelMinMaxObserver qint8 per-channel symmetric"},
        "source": {"file": WEIGHTS, "sha256": file_sha256(artifact_dir / WEIGHTS)},
        **info,
    })
    return out


def load_static(model: nn.Module, artifact_dir: Path,
                require_accepted: bool = True) -> nn.Module | None:
    """The static int8 model stored in ``artifact_dir/int8-static/``, or ``None`` when there
    is none, it was calibrated on other float weights, or (``require_accepted``) it lost
    more than :data:`MAX_ACCURACY_DROP_POINTS` points when it was measured (a warning says
    which).

    Raises:
        ArtifactError: the folder is unreadable or does not fit the model.
    """
    folder = artifact_dir / STATIC_DIR
    if not folder.is_dir():
        return None
    info = read_json(folder / INFO)
    if not (isinstance(info, dict) and info.get("format") == FORMAT
            and info.get("format_version") == FORMAT_VERSION):
        raise ArtifactError(f"{folder / INFO} is not a {FORMAT} v{FORMAT_VERSION} description; "
                            "rewrite it with 'modelzoo quantize handwriting --static'")
    source = info.get("source")
    if not isinstance(source, dict) or source.get("sha256") != file_sha256(
            artifact_dir / WEIGHTS):
        log.warning("%s was calibrated on other float weights (retrained since?): ignoring "
                    "it; rerun 'modelzoo quantize handwriting --static'", folder)
        return None
    if require_accepted and not info.get("serve", False):
        log.warning("%s lost more than %.1f accuracy points when measured (%s): not serving "
                    "it", folder, MAX_ACCURACY_DROP_POINTS, info.get("accuracy_drop_points"))
        return None
    try:
        state = load_file(folder / OBSERVERS, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{folder / OBSERVERS} is not a safetensors file ({exc})") from exc
    return from_observer_state(model, state)


def state_dict_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())`` in memory (the tutorials' model size)."""
    import io

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def images_per_second(model: nn.Module, images: np.ndarray, image_size: int,
                      batch_size: int, repeats: int = 3) -> float:
    """Median throughput of ``predict_letters`` over ``images`` (after one warm-up batch)."""
    import statistics
    import time

    from models.handwriting.evaluate import predict_letters

    predict_letters(model, images[:batch_size], image_size, batch_size)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_letters(model, images, image_size, batch_size)
        times.append(time.perf_counter() - start)
    return len(images) / statistics.median(times)


def measure_static(artifact_dir: Path, data_root: Path, calibration: int, seed: int = 0,
                   speed_images: int = 1024, command: str = "") -> dict[str, Any]:
    """Calibrate, convert and measure fp32 vs static int8 in one process; write
    ``int8-static/`` with the figures and whether it is served.

    Accuracy is scored per test split (``split == 1``) of the sets the model was trained on,
    speed as images/second at batch 256 and batch 1 on the first ``speed_images`` test
    images, size as the serialized ``state_dict``.

    Returns:
        What ``quantization.json`` holds beside the format fields.

    Raises:
        ArtifactError: the artifact is not a LetterCNN one.
        FileNotFoundError: the data is missing.
    """
    from models.handwriting.data import SETS_64
    from models.handwriting.evaluate import score_sets
    from models.handwriting.predictor import HandwritingPredictor

    with ignoring_static_int8():
        predictor = HandwritingPredictor.load(artifact_dir)
    if not isinstance(predictor.model, LetterCNN):
        raise ArtifactError(f"{artifact_dir}: static int8 needs the LetterCNN ('cnn') model")
    sets = tuple(predictor.card.get("dataset", {}).get("sets") or SETS_64)
    label_set = LabelSet(str(predictor.card.get("labels", "letters")).split(":")[0],
                         tuple(predictor.classes))
    images, per_set = calibration_images(data_root, sets, calibration, label_set, seed)
    int8, state = quantize_static(predictor.model, images, predictor.image_size)
    test = load_sets(data_root, sets, 1, label_set)
    size = predictor.image_size
    scores = {name: score_sets(m, test, label_set, size)
              for name, m in (("fp32", predictor.model), ("int8", int8))}
    accuracy = {s.name: {"n": s.n, "fp32": round(s.accuracy, 4),
                         "int8": round(t.accuracy, 4),
                         "writer_disjoint": s.writer_disjoint}
                for s, t in zip(scores["fp32"], scores["int8"], strict=True)}
    drop = round(100 * (accuracy["all"]["fp32"] - accuracy["all"]["int8"]), 2)
    sample = test.images[:speed_images]
    speed = {f"{name}_batch{b}": round(images_per_second(m, sample if b > 1 else sample[:200],
                                                         size, b), 1)
             for b in (256, 1) for name, m in (("fp32", predictor.model), ("int8", int8))}
    info = {
        "calibration": {"images": len(images), "split": "train (split == 0)", "seed": seed,
                        "per_set": per_set},
        "accuracy": accuracy,
        "accuracy_drop_points": drop,
        "max_accuracy_drop_points": MAX_ACCURACY_DROP_POINTS,
        "serve": drop <= MAX_ACCURACY_DROP_POINTS,
        "images_per_second": {**speed, "threads": torch.get_num_threads(),
                              "images": len(sample)},
        "state_dict_bytes": {"fp32": state_dict_bytes(predictor.model),
                             "int8": state_dict_bytes(int8)},
        "command": command,
    }
    save_static(artifact_dir, state, info)
    again = load_static(predictor.model, artifact_dir, require_accepted=False)
    x = prepare_batch(torch.from_numpy(test.images[:64]), size)
    with torch.inference_mode():
        if again is None or not torch.equal(again(x), int8(x)):
            raise ArtifactError(f"{artifact_dir / STATIC_DIR} did not load back identically")
    return info


def format_static_report(info: dict[str, Any]) -> str:
    """A plain-text table of :func:`measure_static`'s figures."""
    lines = [f"calibrated on {info['calibration']['images']} training images "
             f"(split == 0, seed {info['calibration']['seed']})",
             f"{'set':32s} {'n':>6s} {'fp32':>8s} {'int8':>8s}"]
    order = sorted(info["accuracy"].items(),
                   key=lambda kv: (kv[0] == "all", not kv[1]["writer_disjoint"], kv[0]))
    for name, a in order:
        tag = " (writer-disjoint)" if a["writer_disjoint"] else ""
        lines.append(f"{name + tag:32s} {a['n']:6d} {100 * a['fp32']:7.2f}% "
                     f"{100 * a['int8']:7.2f}%")
    s = info["images_per_second"]
    lines.append(f"images/s at batch 256: fp32 {s['fp32_batch256']:.0f}, int8 "
                 f"{s['int8_batch256']:.0f} ({s['int8_batch256'] / s['fp32_batch256']:.2f}x); "
                 f"batch 1: fp32 {s['fp32_batch1']:.0f}, int8 {s['int8_batch1']:.0f} "
                 f"({s['int8_batch1'] / s['fp32_batch1']:.2f}x); {s['threads']} thread(s)")
    b = info["state_dict_bytes"]
    lines.append(f"state_dict size: fp32 {b['fp32'] / 1e6:.2f} MB, int8 {b['int8'] / 1e6:.2f} MB "
                 f"({b['fp32'] / b['int8']:.1f}x smaller)")
    verdict = ("served with MODELZOO_QUANTIZE=handwriting" if info["serve"] else
               "NOT served (dynamic int8 is used with MODELZOO_QUANTIZE=handwriting)")
    lines.append(f"accuracy drop {info['accuracy_drop_points']:+.2f} points (limit "
                 f"{info['max_accuracy_drop_points']}): {verdict}")
    return "\n".join(lines)
