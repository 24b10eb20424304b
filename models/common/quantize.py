"""int8 dynamic quantization, and quantized checkpoints that load without pickle.

Serving quantizes with :func:`quantize_dynamic_int8` (``torch.ao.quantization.quantize_dynamic``
over ``nn.Linear`` and ``nn.LSTM``: int8 weights, activations quantized on the fly, CPU only).
``torch.save`` of such a model pickles packed-parameter objects, so instead
``modelzoo quantize <task>`` writes the quantized layers' parameters as plain tensors:

* ``int8/model.safetensors`` - for each quantized weight ``<layer>.<name>``: ``.int8`` (the
  int8 values), ``.scale`` (float64) and ``.zero_point`` (int64), one per tensor or one per
  output channel; and each float32 bias as ``<layer>.<bias name>``;
* ``int8/quantization.json`` - the format, the torch version, the sha256 of the float
  ``model.safetensors`` it was made from, and each quantized layer (``Linear``/``LSTM``)
  with each weight's quantization scheme (and channel axis).

Loading (:func:`apply_saved_int8`) rebuilds the model as at load time (float weights, then
``quantize_dynamic``) and replaces every quantized layer's parameters with the stored ones
through the layers' own ``set_weight_bias``: the result is bit-identical to quantizing at load
time, and the file pins the int8 weights that were measured. A file made from other float
weights (an artifact retrained since) is ignored with a warning; an unreadable or mismatched
one is an :class:`~models.common.artifacts.ArtifactError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.ao.nn.quantized import dynamic as nnqd

from models.common.artifacts import WEIGHTS, ArtifactError, read_json, write_json
from models.common.manifest import file_sha256

log = logging.getLogger(__name__)

INT8_DIR = "int8"
INT8_WEIGHTS = "model.safetensors"
INT8_INFO = "quantization.json"
FORMAT = "modelzoo-int8-dynamic"
FORMAT_VERSION = 1
QUANTIZABLE: frozenset[type[nn.Module]] = frozenset({nn.Linear, nn.LSTM})

M = TypeVar("M", bound=nn.Module)

_use_saved: ContextVar[bool] = ContextVar("modelzoo_use_saved_int8", default=True)


def quantize_dynamic_int8(model: M, layers: frozenset[type[nn.Module]] = QUANTIZABLE) -> M:
    """int8 dynamic quantization of ``layers`` (a converted copy of the same class; CPU only)."""
    quantized: M = torch.ao.quantization.quantize_dynamic(model, set(layers), dtype=torch.qint8)
    return quantized


@contextlib.contextmanager
def ignoring_saved_int8() -> Iterator[None]:
    """Within this block :func:`apply_saved_int8` does nothing (quantize at load time only);
    ``modelzoo quantize`` uses it to rebuild a checkpoint from the float weights."""
    token = _use_saved.set(False)
    try:
        yield
    finally:
        _use_saved.reset(token)


def _quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Dynamically quantized ``Linear``/``LSTM`` modules by qualified name."""
    layers: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if isinstance(module, nnqd.LSTM | nnqd.Linear):
            layers[name] = module
    return layers


def _split_qtensor(key: str, weight: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Store a quantized tensor as ``key.int8`` + ``key.scale`` + ``key.zero_point``."""
    if weight.dtype != torch.qint8:
        raise ValueError(f"{key}: only qint8 weights are supported, got {weight.dtype}")
    out[f"{key}.int8"] = weight.int_repr().contiguous()
    scheme = weight.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        out[f"{key}.scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        out[f"{key}.zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        return {"qscheme": "per_tensor"}
    if scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        out[f"{key}.scale"] = weight.q_per_channel_scales().to(torch.float64).contiguous()
        out[f"{key}.zero_point"] = weight.q_per_channel_zero_points().to(torch.int64).contiguous()
        return {"qscheme": "per_channel", "axis": int(weight.q_per_channel_axis())}
    raise ValueError(f"{key}: unsupported quantization scheme {scheme}")


def _join_qtensor(key: str, spec: Mapping[str, Any],
                  tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The quantized tensor stored by :func:`_split_qtensor`."""
    values = tensors[f"{key}.int8"]
    scale, zero_point = tensors[f"{key}.scale"], tensors[f"{key}.zero_point"]
    if values.dtype != torch.int8:
        raise ValueError(f"{key}.int8 is {values.dtype}, expected torch.int8")
    if spec.get("qscheme") == "per_tensor":
        return torch._make_per_tensor_quantized_tensor(
            values, float(scale.item()), int(zero_point.item()))
    if spec.get("qscheme") == "per_channel":
        return torch._make_per_channel_quantized_tensor(
            values, scale.to(torch.float64), zero_point.to(torch.int64), int(spec["axis"]))
    raise ValueError(f"{key}: unknown qscheme {spec.get('qscheme')!r}")


def _weights_and_biases(module: nn.Module) -> tuple[dict[str, torch.Tensor],
                                                    dict[str, torch.Tensor | None]]:
    """A quantized layer's weights (qint8) and biases (float or None) by parameter name."""
    if isinstance(module, nnqd.Linear):
        weight, bias = module._weight_bias()
        return {"weight": weight}, {"bias": bias}
    if isinstance(module, nnqd.LSTM):
        both = module._weight_bias()
        return dict(both["weight"]), dict(both["bias"])
    raise TypeError(f"not a dynamically quantized Linear/LSTM: {type(module).__name__}")


def int8_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Plain tensors and a JSON-able description of every quantized layer of ``model``.

    Returns:
        ``(tensors, layers)``: ``tensors`` holds only int8/float64/int64/float32 tensors;
        ``layers`` maps each layer name to ``{"type", "weights": {name: scheme},
        "biases": [names]}``.

    Raises:
        ValueError: ``model`` has no dynamically quantized layer, or one that is not qint8.
    """
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, Any] = {}
    for name, module in _quantized_layers(model).items():
        weights, biases = _weights_and_biases(module)
        prefix = f"{name}." if name else ""
        specs = {w: _split_qtensor(prefix + w, q, tensors) for w, q in weights.items()}
        for b, bias in biases.items():
            if bias is not None:
                tensors[prefix + b] = bias.detach().float().contiguous()
        layers[name] = {"type": type(module).__name__, "weights": specs,
                        "biases": sorted(b for b, v in biases.items() if v is not None)}
    if not layers:
        raise ValueError("the model has no dynamically quantized Linear/LSTM layer: quantize it "
                         "with quantize_dynamic_int8 first")
    return tensors, layers


def load_int8_state(model: nn.Module, tensors: Mapping[str, torch.Tensor],
                    layers: Mapping[str, Any]) -> None:
    """Put stored int8 parameters into ``model``, already converted by ``quantize_dynamic``.

    Raises:
        ArtifactError: the stored layers, names or shapes do not match the model's.
    """
    present = _quantized_layers(model)
    if set(present) != set(layers):
        raise ArtifactError(f"the int8 checkpoint quantizes layers {sorted(layers)} but the "
                            f"model {sorted(present)}")
    used: set[str] = set()
    for name, module in present.items():
        spec = layers[name]
        if spec.get("type") != type(module).__name__:
            raise ArtifactError(f"int8 layer {name!r} is a {spec.get('type')}, the model's a "
                                f"{type(module).__name__}")
        prefix = f"{name}." if name else ""
        old_weights, old_biases = _weights_and_biases(module)
        try:
            weights = {w: _join_qtensor(prefix + w, spec["weights"][w], tensors)
                       for w in old_weights}
            biases = {b: tensors[prefix + b] if b in spec["biases"] else None for b in old_biases}
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ArtifactError(f"int8 layer {name!r} is incomplete or malformed: {exc}") from exc
        for w, q in weights.items():
            if q.shape != old_weights[w].shape:
                raise ArtifactError(f"int8 weight {prefix + w} has shape {tuple(q.shape)}, the "
                                    f"model's {tuple(old_weights[w].shape)}")
        for b, bias in biases.items():
            old = old_biases[b]
            if (bias is None) != (old is None) or (
                    bias is not None and old is not None and bias.shape != old.shape):
                raise ArtifactError(f"int8 bias {prefix + b} does not fit the model's")
        used |= {prefix + w + s for w in weights for s in (".int8", ".scale", ".zero_point")}
        used |= {prefix + b for b, v in biases.items() if v is not None}
        if isinstance(module, nnqd.Linear):
            module.set_weight_bias(weights["weight"], biases["bias"])
        elif isinstance(module, nnqd.LSTM):
            module.set_weight_bias({**weights, **biases})
    extra = sorted(set(tensors) - used)
    if extra:
        raise ArtifactError(f"the int8 checkpoint has tensors no layer uses: {extra[:5]}")


def save_int8(model: nn.Module, artifact_dir: Path) -> Path:
    """Write ``model``'s quantized layers to ``artifact_dir/int8/`` (safetensors + JSON).

    ``model`` must be what the predictor builds from ``artifact_dir/model.safetensors`` with
    quantization at load time; the float file's sha256 is recorded to spot stale checkpoints.

    Returns:
        The folder written.
    """
    tensors, layers = int8_state(model)
    out = artifact_dir / INT8_DIR
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out / INT8_WEIGHTS, metadata={"format": FORMAT})
    write_json(out / INT8_INFO, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "torch": torch.__version__,
        "source": {"file": WEIGHTS, "sha256": file_sha256(artifact_dir / WEIGHTS)},
        "layers": layers,
    })
    return out


def read_int8(artifact_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(tensors, description)`` of ``artifact_dir/int8/``, or ``None`` when there is none.

    Tensors are read with safetensors (no pickle: a file that is not safetensors is refused).

    Raises:
        ArtifactError: one of the two files is missing, unreadable or of another format.
    """
    folder = artifact_dir / INT8_DIR
    if not folder.is_dir():
        return None
    info = read_json(folder / INT8_INFO)
    if not (isinstance(info, dict) and info.get("format") == FORMAT
            and info.get("format_version") == FORMAT_VERSION
            and isinstance(info.get("layers"), dict)):
        raise ArtifactError(f"{folder / INT8_INFO} is not a {FORMAT} v{FORMAT_VERSION} "
                            "description; rewrite it with 'modelzoo quantize'")
    path = folder / INT8_WEIGHTS
    if not path.is_file():
        raise ArtifactError(f"missing {INT8_WEIGHTS} in {folder}")
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a safetensors file ({exc}); rewrite it with "
                            "'modelzoo quantize'") from exc
    return tensors, info


def apply_saved_int8(model: nn.Module, artifact_dir: Path) -> bool:
    """Load ``artifact_dir/int8/`` into ``model`` (already ``quantize_dynamic``-converted).

    Returns:
        Whether stored int8 parameters were loaded (``False``: none stored, stale, or inside
        :func:`ignoring_saved_int8`; the model keeps the parameters quantized at load time).

    Raises:
        ArtifactError: the stored checkpoint is unreadable or does not fit the model.
    """
    if not _use_saved.get():
        return False
    saved = read_int8(artifact_dir)
    if saved is None:
        return False
    tensors, info = saved
    source = info.get("source")
    recorded = source.get("sha256") if isinstance(source, dict) else None
    if recorded != file_sha256(artifact_dir / WEIGHTS):
        log.warning("%s was made from other float weights than %s (retrained since?): "
                    "ignoring it and quantizing at load time; rewrite it with "
                    "'modelzoo quantize'", artifact_dir / INT8_DIR, artifact_dir / WEIGHTS)
        return False
    load_int8_state(model, tensors, info["layers"])
    log.info("loaded int8 weights of %d layers from %s", len(info["layers"]),
             artifact_dir / INT8_DIR)
    return True
