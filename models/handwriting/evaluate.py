"""Letter accuracy per dataset (writer-disjoint sets reported apart), confusions, and
error rates on whole pages: composed pages (:func:`score_pages`) and folders of real pages
scored per writing style (:func:`read_pages`)."""

from __future__ import annotations

import csv
import inspect
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from models.handwriting.augment import prepare_batch
from models.handwriting.data import WRITER_DISJOINT, LabelSet, LetterSet
from models.handwriting.metrics import (
    ErrorCounts,
    character_error_rate,
    edit_distance,
    error_counts,
    total_counts,
    word_accuracy,
)

if TYPE_CHECKING:
    from models.handwriting.predictor import HandwritingPredictor

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict_letters(model: nn.Module, images: np.ndarray, image_size: int,
                    batch_size: int = 512, device: torch.device | str = "cpu") -> np.ndarray:
    """Class probabilities for uint8 letter images (N, S, S) → float32 (N, num_classes)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = prepare_batch(torch.from_numpy(images[i:i + batch_size]), image_size).to(device)
        out.append(model(x).float().softmax(-1).cpu())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy()


@dataclass
class SetScore:
    """Accuracy of one dataset's test split."""

    name: str
    n: int
    accuracy: float
    writer_disjoint: bool
    confusions: list[tuple[str, str, int]] = field(default_factory=list)


def score_sets(model: nn.Module, data: LetterSet, label_set: LabelSet, image_size: int,
               top_confusions: int = 5, device: torch.device | str = "cpu") -> list[SetScore]:
    """Accuracy per source in ``data`` (case-insensitive via ``label_set``), plus "all".

    Confusions are ``(true, predicted, count)``, most frequent first.
    """
    targets = label_set.targets(data.codepoints)
    preds = predict_letters(model, data.images, image_size, device=device).argmax(-1)
    scores = []
    names = [*sorted(set(data.source.tolist())), "all"]
    for name in names:
        keep = np.ones(len(data), dtype=bool) if name == "all" else data.source == name
        t, p = targets[keep], preds[keep]
        pairs = Counter((label_set.classes[a], label_set.classes[b])
                        for a, b in zip(t, p, strict=True) if a != b)
        scores.append(SetScore(name, int(keep.sum()), float((t == p).mean()) if keep.any() else 0.0,
                               name in WRITER_DISJOINT,
                               [(a, b, c) for (a, b), c in pairs.most_common(top_confusions)]))
    return scores


def format_scores(scores: list[SetScore]) -> str:
    """A plain-text table: writer-disjoint sets first, then the others, then all."""
    lines = [f"{'set':32s} {'n':>6s} {'accuracy':>9s}  most confused (true→pred ×n)"]
    order = sorted(scores, key=lambda s: (s.name == "all", not s.writer_disjoint, s.name))
    for s in order:
        tag = " (writer-disjoint)" if s.writer_disjoint else ""
        conf = ", ".join(f"{a}→{b}×{c}" for a, b, c in s.confusions)
        lines.append(f"{s.name + tag:32s} {s.n:6d} {100 * s.accuracy:8.2f}%  {conf}")
    return "\n".join(lines)


@dataclass
class PageScore:
    """Whole-image quality on a folder of pages (``labels.jsonl`` + images).

    Attributes:
        cer: character error rate (Levenshtein distance / reference length, spaces and
            newlines counted), references upper-cased as the model is case-insensitive.
        word_accuracy: fraction of reference words read exactly.
        letter_count_accuracy: fraction of pages where segmentation found exactly as many
            letters as the reference has.
        exact: fraction of pages read exactly.
        seconds_per_page: mean wall time of ``recognize`` per page.
    """

    folder: str
    n: int
    cer: float
    word_accuracy: float
    letter_count_accuracy: float
    exact: float
    seconds_per_page: float
    worst: list[tuple[str, str, str]] = field(default_factory=list)


def score_pages(predictor: HandwritingPredictor, folder: Path, worst: int = 3,
                pipeline: str | None = None) -> PageScore:
    """Read every page listed in ``folder`` (:func:`read_page_labels`: ``labels.jsonl`` as
    :func:`models.handwriting.synth.make_eval_set` writes it, or ``labels.tsv``) and score
    the upper-cased readings against the upper-cased references (case-insensitive, as the
    letter CNN reads A-Z); ``pipeline`` as :func:`page_reader`.

    Raises:
        FileNotFoundError: no labels file, or a listed image is missing.
        ValueError: as :func:`page_reader`.
    """
    read = page_reader(predictor, pipeline)
    records = read_page_labels(folder)
    hyps, refs, seconds = [], [], 0.0
    for r in records:
        data = (folder / r.file).read_bytes()
        t0 = time.perf_counter()
        hyps.append(read(data).upper())  # case-insensitive: the letter CNN reads A-Z
        seconds += time.perf_counter() - t0
        refs.append(r.text.upper())
    per_page = sorted(((edit_distance(h, t) / max(1, len(t)), f.file, h, t)
                       for h, t, f in zip(hyps, refs, records, strict=True)), reverse=True)
    return PageScore(
        str(folder), len(records), character_error_rate(hyps, refs), word_accuracy(hyps, refs),
        float(np.mean([sum(c.isalpha() for c in h) == sum(c.isalpha() for c in t)
                       for h, t in zip(hyps, refs, strict=True)])),
        float(np.mean([h == t for h, t in zip(hyps, refs, strict=True)])),
        seconds / max(1, len(records)),
        [(name, h, t) for _, name, h, t in per_page[:worst]],
    )


def format_page_score(s: PageScore) -> str:
    """One paragraph: CER, word accuracy, segmentation and the worst pages."""
    lines = [f"{s.folder}: {s.n} pages  CER {100 * s.cer:.2f}%  word accuracy "
             f"{100 * s.word_accuracy:.2f}%  pages exact {100 * s.exact:.1f}%  letter count right "
             f"{100 * s.letter_count_accuracy:.1f}%  {1000 * s.seconds_per_page:.0f} ms/page"]
    for name, hyp, ref in s.worst:
        lines.append(f"  worst {name}: read {hyp!r} for {ref!r}")
    return "\n".join(lines)


# ------------------------------------------------------------ real pages, per style

PIPELINES = ("auto", "lines", "contours")
TSV_COLUMNS = ("filename", "text", "style")


@dataclass(frozen=True)
class PageLabel:
    """One labelled image of a page folder: its file name (relative to the folder), the
    transcription as written (case and punctuation kept) and its writing style."""

    file: str
    text: str
    style: str = "unknown"


def read_page_labels(folder: Path) -> list[PageLabel]:
    """The labels of a page folder, every listed image checked to exist.

    ``labels.tsv`` (tab-separated, a header row naming at least ``filename``, ``text`` and
    ``style``; other columns are ignored) is read when present, else ``labels.jsonl`` (one
    ``{"file", "text"}`` object per line, ``"style"`` optional). A missing or empty style
    is ``"unknown"``.

    Raises:
        FileNotFoundError: ``folder`` has neither labels file, or listed images are missing
            (the message names them).
        ValueError: the TSV header lacks a required column, or a row or line is malformed.
    """
    tsv, jsonl = folder / "labels.tsv", folder / "labels.jsonl"
    if tsv.is_file():
        labels = _read_tsv(tsv)
    elif jsonl.is_file():
        labels = _read_jsonl(jsonl)
    else:
        raise FileNotFoundError(f"{folder} has no labels.tsv (filename, text, style) or "
                                "labels.jsonl ({\"file\", \"text\"} per line); add one")
    missing = [r.file for r in labels if not (folder / r.file).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) listed in the labels of {folder} "
                                f"are missing: {', '.join(missing)}")
    return labels


def _read_tsv(path: Path) -> list[PageLabel]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path} is empty; it needs a header row {', '.join(TSV_COLUMNS)}")
    header = rows[0]
    absent = [c for c in TSV_COLUMNS if c not in header]
    if absent:
        raise ValueError(f"{path}: the header row {header} lacks column(s) "
                         f"{', '.join(absent)}; tab-separated {', '.join(TSV_COLUMNS)} needed")
    col = {c: header.index(c) for c in TSV_COLUMNS}
    labels = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(col["filename"], col["text"]):
            raise ValueError(f"{path}:{n}: {len(row)} tab-separated field(s), expected "
                             f"{len(header)} as in the header")
        style = row[col["style"]].strip() if len(row) > col["style"] else ""
        labels.append(PageLabel(row[col["filename"]], row[col["text"]], style or "unknown"))
    return labels


def _read_jsonl(path: Path) -> list[PageLabel]:
    labels = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            labels.append(PageLabel(r["file"], r["text"], r.get("style") or "unknown"))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: expected a JSON object with \"file\" and \"text\" "
                             f"({exc})") from exc
    return labels


def page_reader(predictor: HandwritingPredictor,
                pipeline: str | None = None) -> Callable[[bytes], str]:
    """``image bytes → text`` with ``predictor.recognize``.

    ``pipeline`` (one of :data:`PIPELINES`) is passed on only when given, and only to a
    predictor whose ``recognize`` takes it; one without that argument has the contour
    pipeline alone, so ``"auto"`` and ``"contours"`` read with it.

    Raises:
        ValueError: an unknown pipeline, or ``"lines"`` for a predictor without it.
    """
    if pipeline is None:
        return lambda data: predictor.recognize(data)[0].text
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; use one of {', '.join(PIPELINES)}")
    if "pipeline" in inspect.signature(predictor.recognize).parameters:
        kwargs: dict[str, Any] = {"pipeline": pipeline}
        return lambda data: predictor.recognize(data, **kwargs)[0].text
    if pipeline == "lines":
        raise ValueError("this HandwritingPredictor has no line recognizer (recognize() takes "
                         "no pipeline); use --pipeline contours or auto")
    log.info("recognize() takes no pipeline; pipeline %r reads with contours", pipeline)
    return lambda data: predictor.recognize(data)[0].text


@dataclass(frozen=True)
class ImageScore:
    """One image read and scored: ``ms`` is the wall time of the read."""

    file: str
    style: str
    reference: str
    hypothesis: str
    counts: ErrorCounts
    ms: float


#: the style of joined writing in ``labels.tsv``
CURSIVE = "cursive"
#: the tables' group of every other style (capitals, mixed-case print, notebooks, ...)
PRINT = "print (not cursive)"


@dataclass
class PageReport:
    """A page folder read by one system, scored per image (:func:`error_counts`).

    Rates per style and overall sum the counts of their images (total edits / total
    reference length), so a long page weighs more than a short line.
    """

    folder: str
    system: str
    images: list[ImageScore]

    def styles(self) -> list[str]:
        return sorted({s.style for s in self.images})

    def rows(self) -> list[str | None]:
        """What the tables list: each style, then :data:`PRINT` (every style but cursive)
        when there are cursive and other images, then None (all images)."""
        styles = self.styles()
        group: list[str | None] = [PRINT] if CURSIVE in styles and len(styles) > 1 else []
        return [*styles, *group, None]

    def of_style(self, style: str | None = None) -> list[ImageScore]:
        """The images of one style, of every style but cursive when ``style`` is
        :data:`PRINT`, or all images when ``style`` is None."""
        if style == PRINT:
            return [s for s in self.images if s.style != CURSIVE]
        return [s for s in self.images if style is None or s.style == style]

    def counts(self, style: str | None = None) -> ErrorCounts:
        """Summed counts of one style's images (or group, see :meth:`of_style`)."""
        return total_counts(s.counts for s in self.of_style(style))

    def ms_per_image(self, style: str | None = None) -> float:
        ms = [s.ms for s in self.of_style(style)]
        return sum(ms) / len(ms) if ms else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: rates per style and overall (``null`` where undefined), per image."""
        def summary(style: str | None) -> dict[str, Any]:
            c = self.counts(style)
            return {"images": len(self.of_style(style)),
                    "cer_az": _finite(c.cer_az), "cer": _finite(c.cer), "wer": _finite(c.wer),
                    "ms_per_image": _finite(self.ms_per_image(style)), "counts": asdict(c)}

        return {"folder": self.folder, "system": self.system,
                "styles": {style: summary(style) for style in self.rows() if style},
                "overall": summary(None),
                "images": [{"file": s.file, "style": s.style, "cer_az": _finite(s.counts.cer_az),
                            "cer": _finite(s.counts.cer), "wer": _finite(s.counts.wer),
                            "ms": round(s.ms, 2), "hypothesis": s.hypothesis,
                            "reference": s.reference} for s in self.images]}


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def read_pages(read: Callable[[bytes], str], folder: Path, system: str = "modelzoo",
               labels: list[PageLabel] | None = None) -> PageReport:
    """Read every labelled image of ``folder`` with ``read`` (image bytes → text, e.g.
    :func:`page_reader`) and score it against its reference as written.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_page_labels`.
    """
    scores = []
    for r in labels if labels is not None else read_page_labels(folder):
        data = (folder / r.file).read_bytes()
        t0 = time.perf_counter()
        text = read(data)
        ms = 1000 * (time.perf_counter() - t0)
        scores.append(ImageScore(r.file, r.style, r.text, text, error_counts(text, r.text), ms))
    return PageReport(str(folder), system, scores)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def format_page_report(report: PageReport) -> str:
    """A table per style and overall (CER A–Z, CER, WER, ms per image), then one line per
    image with its CERs and what was read."""
    lines = [f"{report.folder}: {len(report.images)} images read by {report.system}",
             f"{'style':<20}{'images':>7}{'CER A-Z':>9}{'CER':>9}{'WER':>9}{'ms/image':>10}"]
    for style in report.rows():
        c = report.counts(style)
        lines.append(f"{style or 'overall':<20}{len(report.of_style(style)):>7}"
                     f"{_pct(c.cer_az):>9}{_pct(c.cer):>9}{_pct(c.wer):>9}"
                     f"{report.ms_per_image(style):>10.0f}")
    width = max([4, *(len(s.file) for s in report.images)])
    lines.append(f"{'file':<{width}}  {'style':<10}{'CER A-Z':>8}{'CER':>8}  hypothesis")
    lines += [f"{s.file:<{width}}  {s.style:<10}{_pct(s.counts.cer_az):>8}"
              f"{_pct(s.counts.cer):>8}  {s.hypothesis!r}" for s in report.images]
    return "\n".join(lines)
