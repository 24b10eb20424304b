"""Pictures of the embedding space: word vectors projected to 2-D, drawn as a labelled PNG.

The seed tutorial's plot (each point labelled with its word), made for a service: PCA by
numpy's SVD (deterministic, no extra package) or t-SNE (van der Maaten & Hinton 2008) from
scikit-learn, and matplotlib's object API on the Agg canvas (no pyplot global state, so
concurrent requests on different threads do not share a figure).
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np

Method = Literal["pca", "tsne"]
METHODS: tuple[Method, ...] = ("pca", "tsne")


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components.

    Args:
        x: ``(N, D)`` float vectors, ``N >= 2``.

    Returns:
        ``coords (N, 2)`` float64 and ``explained (2,)``, each component's share of the
        variance. Signs are fixed (each component's largest loading is positive), so the
        same words always give the same picture.
    """
    centered = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)  # vt: (min(N, D), D)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    coords = centered @ components.T  # (N, <=2)
    if coords.shape[1] < 2:  # two identical directions: a flat second axis
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    var = s**2
    total = var.sum()
    explained = np.zeros(2)
    explained[: min(2, len(var))] = var[:2] / total if total > 0 else 0.0
    return coords, explained


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE of the rows on cosine distance, ``(N, D)`` -> ``(N, 2)`` (scikit-learn).

    Perplexity is ``(N - 1) / 3`` clipped to ``[1, 30]`` (it must stay below ``N``);
    initialised from PCA with a fixed seed, so a request is repeatable.
    """
    from sklearn.manifold import TSNE

    n = len(x)
    perplexity = min(max(1.0, min(30.0, (n - 1) / 3)), n - 1.0)
    tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca",
                learning_rate="auto", random_state=seed)
    coords: np.ndarray = tsne.fit_transform(x.astype(np.float64))
    return coords


def project(x: np.ndarray, method: Method) -> tuple[np.ndarray, tuple[str, str]]:
    """2-D coordinates of the rows of ``x`` and the two axis labels.

    Raises:
        ValueError: an unknown method or fewer than two rows.
    """
    if len(x) < 2:
        raise ValueError("need at least two vectors to project")
    if method == "pca":
        coords, explained = pca_2d(x)
        return coords, (f"PC1 ({100 * explained[0]:.0f}% of variance)",
                        f"PC2 ({100 * explained[1]:.0f}% of variance)")
    if method == "tsne":
        return tsne_2d(x), ("t-SNE 1", "t-SNE 2")
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def render_png(words: list[str], coords: np.ndarray, axis_labels: tuple[str, str],
               title: str, size_px: tuple[int, int] = (1000, 750), dpi: int = 100) -> bytes:
    """Draw each word as a point with its label; return PNG bytes of ``size_px`` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(coords[:, 0], coords[:, 1], s=28, color="#1f77b4", zorder=2)
    span = np.ptp(coords, axis=0)
    pad = np.where(span > 0, span * 0.08, 1.0)  # room for the labels at the edges
    ax.set_xlim(coords[:, 0].min() - pad[0], coords[:, 0].max() + 2 * pad[0])
    ax.set_ylim(coords[:, 1].min() - pad[1], coords[:, 1].max() + pad[1])
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    ax.grid(True, alpha=0.3, zorder=0)
    fig.tight_layout()  # before the labels, so their places in pixels stay put
    _place_labels(ax, canvas.get_renderer(), words, coords,
                  fontsize=11 if len(words) <= 40 else 9 if len(words) <= 70 else 8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


#: label positions tried in turn, in points from the point: (dx, dy, ha, va)
_OFFSETS = ((4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
            (-4, -3, "right", "top"), (0, 7, "center", "bottom"), (0, -7, "center", "top"),
            (10, 12, "left", "bottom"), (10, -12, "left", "top"), (-10, 12, "right", "bottom"),
            (-10, -12, "right", "top"))


def _place_labels(ax: Any, renderer: Any, words: list[str], coords: np.ndarray,
                  fontsize: int) -> None:
    """Label each point with its word at the first of :data:`_OFFSETS` whose text does not
    overlap a label already placed (the first offset when all do)."""
    placed: list[Any] = []
    for word, (x, y) in zip(words, coords, strict=True):
        box = None
        for n, (dx, dy, ha, va) in enumerate(_OFFSETS):
            text = ax.annotate(word, (x, y), xytext=(dx, dy), textcoords="offset points",
                               ha=ha, va=va, fontsize=fontsize, zorder=3, parse_math=False)
            box = text.get_window_extent(renderer).expanded(1.04, 1.1)
            if not any(box.overlaps(other) for other in placed):
                break
            text.remove()
            if n == len(_OFFSETS) - 1:  # crowded everywhere: the default place
                dx, dy, ha, va = _OFFSETS[0]
                text = ax.annotate(word, (x, y), xytext=(dx, dy), textcoords="offset points",
                                   ha=ha, va=va, fontsize=fontsize, zorder=3, parse_math=False)
                box = text.get_window_extent(renderer)
        placed.append(box)
