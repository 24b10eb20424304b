"""fp32 vs int8 for every task, in one process per command: size, latency, throughput, quality.

For each task the predictor is loaded twice, float32 and int8 (``load(dir, "cpu", quantize)``,
as the service does: dynamic int8 of the Linear/LSTM layers for lm, translation and matching;
the calibrated *static* int8 of ``artifacts/handwriting/int8-static/`` for handwriting, which is
what ``MODELZOO_QUANTIZE=auto`` serves; word2vec is an embedding table with no Linear/LSTM
layer, so int8 does not apply and its row says so), then measured side by side, the two
variants alternating call by call so that load from other processes hits both alike:

- **size**: ``torch.save(state_dict)`` bytes of each model in memory (the fp32 equivalent,
  even where the file on disk is float16, and what the int8 model holds); where
  ``modelzoo quantize <task>`` has written ``int8/``, the int8 figure is that file plus the
  float tensors int8 leaves unquantized, as they would be stored in float32. The ``size`` line
  under the table says which was used.
- **latency**: median ms over ``--calls`` single requests (batch 1), cycling through real
  inputs: LM score of one PTB valid sentence and a 30-word generation (the API default), one
  Multi30k val sentence translated with the service default (beam 5), one Quora dev pair
  (``/v1/match`` default model), one WikiQA dev question ranked over its candidates
  (``/v1/match/rank`` default model), one letter crop classified, one ~1 MP JPEG page of 35
  letters recognised end to end, and one word2vec neighbours query.
- **throughput**: items/s at the service's largest dynamic batch (``Settings``:
  ``lm_score_max_batch_size``, ``translation_max_batch_size``, ``matching_max_batch_size``;
  256 letters; 8 LM samples generated together), median over ``--batches`` calls of one
  fixed batch of real inputs.
- **quality**, with the evaluation code of ``models/<task>/``: PTB valid perplexity
  (``models.lm.evaluate.perplexity``), sacreBLEU on Multi30k val
  (``models.translation.evaluate``), Quora dev accuracy at the card's threshold and WikiQA
  dev MAP (``models.matching.evaluate.evaluate_file``), letter accuracy on the test split
  (``models.handwriting.evaluate.score_sets``), WordSim-353 Spearman rho. By default a
  seeded subset of ``--n`` items (PTB: a contiguous block of sentences, keeping article
  context; Multi30k: sentences; Quora: pairs; letters: test images; WikiQA dev is small,
  2,733 pairs, and always scored whole); ``--full`` scores the complete splits.

Prints one Markdown table (task | model | sizes | latency | throughput | quality | relative
change | served by default) and, per task, whether int8 meets the target of issue 7
(>= 2x CPU speed-up at batch 1 or at the batch size, <= 1% relative quality loss).
``--write-cards`` stores each task's rows under ``"quantization"`` in
``artifacts/<task>/card.json`` (matching: the index card) with the command, date, threads and
hardware, and rewrites that task's ``manifest.json`` (checked first, as
``modelzoo evaluate translation --write-card`` does).

    OMP_NUM_THREADS=2 python benchmarks/quantization.py [--tasks lm,translation] [--threads 2]
        [--n 500] [--full] [--calls 30] [--write-cards]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from app.config import TASKS, Settings
from models.common.paths import artifacts_dir, data_dir

MB = 1e6
TARGET_SPEEDUP = 2.0
MAX_RELATIVE_LOSS = 0.01
GENERATE_TOKENS = 30  # the API's default max_tokens
GENERATE_SAMPLES = 8
# default eval subset sizes: PTB valid sentences, Multi30k val sentences (beam search is the
# slow part of the whole run), Quora dev pairs, test letters
DEFAULT_N = {"lm": 1000, "translation": 300, "matching": 2000, "handwriting": 2000}


@dataclass
class Row:
    """One line of the table: a model and request kind, fp32 vs int8."""

    task: str
    model: str
    size_fp32: int | None = None  # bytes
    size_int8: int | None = None
    size_source: str = ""
    latency_fp32: float | None = None  # ms, median at batch 1
    latency_int8: float | None = None
    latency_request: str = ""
    throughput_fp32: float | None = None  # items/s at the batch size
    throughput_int8: float | None = None
    throughput_unit: str = ""
    metric: str = ""
    quality_fp32: float | None = None
    quality_int8: float | None = None
    higher_is_better: bool = True
    eval_items: str = ""
    served: str = ""  # what MODELZOO_QUANTIZE=auto serves on CPU
    int8_applies: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def latency_speedup(self) -> float | None:
        if self.latency_fp32 is None or not self.latency_int8:
            return None
        return self.latency_fp32 / self.latency_int8

    @property
    def throughput_speedup(self) -> float | None:
        if self.throughput_int8 is None or not self.throughput_fp32:
            return None
        return self.throughput_int8 / self.throughput_fp32

    @property
    def relative_change(self) -> float | None:
        if self.quality_fp32 is None or self.quality_int8 is None or not self.quality_fp32:
            return None
        return self.quality_int8 / self.quality_fp32 - 1.0

    @property
    def relative_loss(self) -> float | None:
        """Relative quality lost by int8 (negative: int8 is better)."""
        change = self.relative_change
        if change is None:
            return None
        return -change if self.higher_is_better else change

    def as_dict(self) -> dict[str, Any]:
        def r(v: float | None, d: int = 3) -> float | None:
            return None if v is None else round(v, d)

        out = asdict(self)
        out |= {"latency_fp32": r(self.latency_fp32, 2), "latency_int8": r(self.latency_int8, 2),
                "throughput_fp32": r(self.throughput_fp32, 1),
                "throughput_int8": r(self.throughput_int8, 1),
                "quality_fp32": r(self.quality_fp32, 4), "quality_int8": r(self.quality_int8, 4),
                "latency_speedup": r(self.latency_speedup, 2),
                "throughput_speedup": r(self.throughput_speedup, 2),
                "relative_change": r(self.relative_change, 5)}
        return out


# ------------------------------------------------------------------------- measuring helpers

P = TypeVar("P")
Call = Callable[[int], object]  # one timed call; the argument picks the input


def each(models: dict[str, P], make: Callable[[P], Call]) -> dict[str, Call]:
    """The timed call of every variant: ``make(predictor)``."""
    return {k: make(p) for k, p in models.items()}


def median_ms(calls: dict[str, Call], n: int,
              warmup: int = 2) -> dict[str, float]:
    """Median wall time (ms) of ``n`` calls ``fn(i)`` per variant, variants alternating."""
    for fn in calls.values():
        for i in range(warmup):
            fn(i)
    times: dict[str, list[float]] = {k: [] for k in calls}
    for i in range(n):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def items_per_second(calls: dict[str, Call], items: int,
                     n: int) -> dict[str, float]:
    """``items`` / median seconds of one batched call, per variant (alternating)."""
    return {k: 1000 * items / ms for k, ms in median_ms(calls, n, warmup=1).items()}


def state_dict_bytes(model: nn.Module) -> int:
    """``torch.save(model.state_dict())`` size in memory (the tutorials' model size)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def int8_sizes(fp32: nn.Module, int8: nn.Module, artifact_dir: Path) -> tuple[int, int, str]:
    """``(fp32 bytes, int8 bytes, source)`` of one model: see the module docstring."""
    from safetensors.torch import save as safetensors_bytes

    from models.common.quantize import INT8_DIR, INT8_WEIGHTS, read_int8

    fp32_bytes = state_dict_bytes(fp32)
    saved = read_int8(artifact_dir)
    if saved is None:
        return fp32_bytes, state_dict_bytes(int8), "state_dict"
    layers = saved[1]["layers"]
    prefixes = tuple(f"{name}." for name in layers)
    rest = {k: v.detach().float().contiguous() for k, v in fp32.state_dict().items()
            if not k.startswith(prefixes) and v.is_floating_point()}
    float_rest = len(safetensors_bytes(rest)) if rest else 0
    on_disk = (artifact_dir / INT8_DIR / INT8_WEIGHTS).stat().st_size
    return fp32_bytes, on_disk + float_rest, "int8/ on disk + float32 rest"


def seeded_indices(total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted sample of ``n`` indices of ``range(total)`` (all when ``n`` is None or larger)."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))


def subset_size(args: argparse.Namespace, task: str) -> int:
    """Items in the quality subset of ``task``: ``--n``, else :data:`DEFAULT_N`."""
    return int(args.n) if args.n is not None else DEFAULT_N[task]


@contextmanager
def phase(task: str, what: str) -> Iterator[None]:
    """Print how long one step of a task took (stderr), to see where the time goes."""
    start = time.perf_counter()
    yield
    print(f"  {task}: {what} {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def served_label(task: str) -> str:
    """What the service loads for ``task`` on CPU with the default ``MODELZOO_QUANTIZE=auto``."""
    settings = Settings(device="cpu", quantize="auto")
    return "int8" if settings.quantize_task(task) else "fp32"


# ------------------------------------------------------------------------------- the tasks

def bench_word2vec(args: argparse.Namespace) -> list[Row]:
    from models.word2vec.evaluate import load_wordsim353, spearman_similarity
    from models.word2vec.predictor import Word2VecPredictor

    directory = args.artifacts_dir / "word2vec"
    predictor = Word2VecPredictor.load(directory, "cpu")
    words = [w for w in predictor.vocab.tokens[:2000] if w.isalpha()]
    pick = [words[i] for i in seeded_indices(len(words), 256, args.seed)]
    lat = median_ms({"fp32": lambda i: predictor.neighbors([pick[i % len(pick)]], 10)},
                    args.calls)
    batch = 64
    thr = items_per_second({"fp32": lambda i: predictor.neighbors(
        [pick[(i * batch + k) % len(pick)] for k in range(batch)], 10)}, batch, args.batches)
    pairs = load_wordsim353(args.data_dir / "wordsim" / "wordsim353" / "combined.csv")
    rho = spearman_similarity(predictor.vectors, pairs)
    unit = predictor.vectors.unit  # (V, D) float32
    disk = (directory / "model.safetensors").stat().st_size
    return [Row(
        "word2vec", f"{predictor.default_model} (neighbors k=10)",
        size_fp32=unit.numel() * unit.element_size(),
        size_source=f"float32 table in memory, {tuple(unit.shape)} (the file holds float16 "
        f"tables: {disk / MB:.2f} MB)",
        latency_fp32=lat["fp32"], latency_request="neighbors of one word, k=10",
        throughput_fp32=thr["fp32"], throughput_unit=f"words/s @{batch}",
        metric="WS353 rho", quality_fp32=rho.spearman,
        eval_items=f"{rho.pairs_used}/{rho.pairs_total} pairs (all)",
        served="fp32 (int8 n/a)", int8_applies=False,
        notes=["an embedding table: no Linear/LSTM layer, so int8 does not apply "
               "(load(quantize=True) serves the same float vectors); quality unchanged"])]


def bench_lm(args: argparse.Namespace) -> list[Row]:
    from models.lm.data import tokenize
    from models.lm.evaluate import perplexity
    from models.lm.predictor import LMPredictor

    directory = args.artifacts_dir / "lm"
    fp32 = LMPredictor.load(directory, "cpu", False)
    int8 = LMPredictor.load(directory, "cpu", True)
    models = {"fp32": fp32, "int8": int8}
    valid = args.data_dir / "ptb" / "ptb.valid.txt"
    lines = [line for line in valid.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentences = [" ".join(line.split()) for line in lines]
    size_fp32, size_int8, source = int8_sizes(fp32.model, int8.model, directory)
    served = served_label("lm")

    # latency and throughput: scoring
    by_len = sorted(sentences[:400], key=len)
    typical = by_len[len(by_len) // 4: 3 * len(by_len) // 4]  # the middle half by length
    b = Settings().lm_score_max_batch_size
    with phase("lm", "scoring speed"):
        lat = median_ms(each(models, lambda p: lambda i: p.score(typical[i % len(typical)])),
                        args.calls)
        batch = [typical[j * len(typical) // b] for j in range(b)]  # the same every call
        thr = items_per_second(each(models, lambda p: lambda i: p.score_many(batch)), b,
                               args.batches)

    # latency and throughput: generation (30 words, as the API default)
    def generate(p: LMPredictor, samples: int, seed: int) -> int:
        return sum(1 for _ in p.stream("the company said", GENERATE_TOKENS, 1.0, None, None,
                                       seed, samples, False))

    with phase("lm", "generation speed"):
        gen_lat = median_ms(each(models, lambda p: lambda i: generate(p, 1, i)),
                            max(5, args.calls // 3))
        gen_thr = items_per_second(
            each(models, lambda p: lambda i: generate(p, GENERATE_SAMPLES, i)),
            GENERATE_TOKENS * GENERATE_SAMPLES, args.batches)

    # quality: perplexity on a contiguous seeded block of sentences, or the whole split
    if args.full:
        ids_of = {k: tokenize(valid, p.dictionary, grow=False) for k, p in models.items()}
        items = f"all {len(lines)} sentences"
    else:
        n = min(subset_size(args, "lm"), len(lines))
        start = int(np.random.default_rng(args.seed).integers(0, len(lines) - n + 1))
        with tempfile.TemporaryDirectory() as tmp:
            subset = Path(tmp) / "valid-subset.txt"
            subset.write_text("\n".join(lines[start:start + n]) + "\n", encoding="utf-8")
            ids_of = {k: tokenize(subset, p.dictionary, grow=False) for k, p in models.items()}
        items = f"{n} sentences (lines {start + 1}-{start + n})"
    with phase("lm", "perplexity"):
        ppl = {k: perplexity(p.model, ids_of[k]) for k, p in models.items()}
    items += f", {len(ids_of['fp32'])} tokens"
    common = dict(size_fp32=size_fp32, size_int8=size_int8, size_source=source,
                  metric="PTB valid ppl", quality_fp32=ppl["fp32"], quality_int8=ppl["int8"],
                  higher_is_better=False, eval_items=items, served=served)
    return [
        Row("lm", "LSTM 2x650 (score)", latency_fp32=lat["fp32"], latency_int8=lat["int8"],
            latency_request="score one PTB valid sentence",
            throughput_fp32=thr["fp32"], throughput_int8=thr["int8"],
            throughput_unit=f"sentences/s @{b}", **common),  # type: ignore[arg-type]
        Row("lm", f"LSTM 2x650 (generate {GENERATE_TOKENS})", latency_fp32=gen_lat["fp32"],
            latency_int8=gen_lat["int8"],
            latency_request=f"generate {GENERATE_TOKENS} words, 1 sample",
            throughput_fp32=gen_thr["fp32"], throughput_int8=gen_thr["int8"],
            throughput_unit=f"tokens/s @{GENERATE_SAMPLES} samples",
            **common),  # type: ignore[arg-type]
    ]


def bench_translation(args: argparse.Namespace) -> list[Row]:
    from models.translation.data import read_lines, split_paths
    from models.translation.evaluate import bleu_chrf, translate_file
    from models.translation.predictor import TranslationPredictor

    directory = args.artifacts_dir / "translation"
    models = {k: TranslationPredictor.load(directory, "cpu", q)
              for k, q in (("fp32", False), ("int8", True))}
    src_path, ref_path = split_paths(args.data_dir / "multi30k", "val")
    sources, references = read_lines(src_path), read_lines(ref_path)
    beam = args.beam_size
    size_fp32, size_int8, source = int8_sizes(models["fp32"].model, models["int8"].model,
                                               directory)
    pool = sources[:256]
    b = Settings().translation_max_batch_size
    with phase("translation", "speed"):
        lat = median_ms(each(models, lambda p: lambda i: p.translate(
            [pool[i % len(pool)]], beam_size=beam)), args.calls)
        batch = [pool[j * len(pool) // b] for j in range(b)]  # the same every call
        thr = items_per_second(each(models, lambda p: lambda i: p.translate(
            batch, beam_size=beam, batch_size=b)), b, args.batches)
    keep = seeded_indices(len(sources), None if args.full else subset_size(args, "translation"),
                          args.seed)
    src = [sources[i] for i in keep]
    ref = [references[i] for i in keep]
    with phase("translation", "BLEU"):
        bleu = {k: bleu_chrf(translate_file(p, src, beam, b, progress=False), ref)["bleu"]
                for k, p in models.items()}
    decoding = "greedy" if beam == 1 else f"beam {beam}"
    arch = models["fp32"].config.get("arch", "?")
    return [Row(
        "translation", f"{arch} de-en ({decoding})", size_fp32=size_fp32, size_int8=size_int8,
        size_source=source, latency_fp32=lat["fp32"], latency_int8=lat["int8"],
        latency_request=f"translate one val sentence, {decoding}",
        throughput_fp32=thr["fp32"], throughput_int8=thr["int8"],
        throughput_unit=f"sentences/s @{b}", metric=f"BLEU val ({decoding})",
        quality_fp32=bleu["fp32"], quality_int8=bleu["int8"],
        eval_items=f"{len(src)} of {len(sources)} sentences" + ("" if args.full else
                                                                 f" (seed {args.seed})"),
        served=served_label("translation"),
        notes=["int8 covers the decoder's feed-forward Linear layers only (the encoder "
               "keeps PyTorch's fused fast path)"])]


def _subset_file(path: Path, keep_lines: Callable[[list[str]], list[str]], out: Path) -> Path:
    """Write the lines ``keep_lines`` picks of a (gzipped) text file to ``out``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        lines = [line.rstrip("\r") for line in f.read().split("\n") if line.strip("\r")]
    out.write_text("\n".join(keep_lines(lines)) + "\n", encoding="utf-8")
    return out


def matcher_sizes(fp32: Any, int8: Any, directory: Path) -> tuple[int, int, str, str]:
    """``(fp32 bytes, int8 bytes, source, label)`` of a served matcher: an ensemble (``model``
    None, ``members``) counts each member's network once."""
    members = getattr(fp32, "members", None)
    if members is None:
        return (*int8_sizes(fp32.model, int8.model, directory / fp32.name), fp32.name)
    sizes = [int8_sizes(f.model, q.model, directory / f.name)
             for f, q in zip(members, int8.members, strict=True)]
    label = f"{fp32.name} = mean of {'+'.join(m.name for m in members)}"
    return (sum(s[0] for s in sizes), sum(s[1] for s in sizes),
            " + ".join(dict.fromkeys(s[2] for s in sizes)) + " (sum over members)", label)


def bench_matching(args: argparse.Namespace) -> list[Row]:
    from models.matching.data import read_pairs, split_path
    from models.matching.evaluate import evaluate_file
    from models.matching.predictor import MatchingPredictor

    directory = args.artifacts_dir / "matching"
    models = {k: MatchingPredictor.load(directory, "cpu", q)
              for k, q in (("fp32", False), ("int8", True))}
    fp32 = models["fp32"]
    quora, wikiqa = (split_path(args.data_dir, d, "dev") for d in ("quora", "wikiqa"))
    b = Settings().matching_max_batch_size
    served = served_label("matching")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {"quora": quora, "wikiqa": wikiqa}
        if not args.full:
            def quora_pick(lines: list[str]) -> list[str]:
                n = subset_size(args, "matching")
                return [lines[i] for i in seeded_indices(len(lines), n, args.seed)]

            files = {"quora": _subset_file(quora, quora_pick, Path(tmp) / "quora-dev.tsv"),
                     "wikiqa": wikiqa}  # small (2,733 pairs, 122 scored questions): all of it
        with phase("matching", "quality"):
            results = {(d, k): evaluate_file(p, path, batch_size=b)
                       for d, path in files.items() for k, p in models.items()}

    pairs = [(p.a, p.b) for p in read_pairs(quora)[1][:256]]
    wiki = read_pairs(wikiqa)[1]
    pairs_of = {"quora": pairs, "wikiqa": [(p.a, p.b) for p in wiki[:256]]}
    questions: dict[str, tuple[str, list[str]]] = {}
    for p in wiki:
        questions.setdefault(str(p.group), (p.a, []))[1].append(p.b)
    ranked = [q for q in questions.values() if len(q[1]) >= 2][:128]
    for use, dataset in (("match", "quora"), ("rank", "wikiqa")):
        name = fp32.defaults[use]
        size_fp32, size_int8, source, label = matcher_sizes(
            fp32.matchers[name], models["int8"].matchers[name], directory)
        if use == "match":
            lat = median_ms(each(models, lambda p: lambda i: p.score_pairs(
                [pairs[i % len(pairs)]])), args.calls)
            request = "score one Quora dev pair"
        else:
            lat = median_ms(each(models, lambda p: lambda i: p.rank(*ranked[i % len(ranked)])),
                            args.calls)
            mean = statistics.mean(len(c) for _, c in ranked)
            request = f"rank one WikiQA dev question ({mean:.0f} candidates on average)"
        batch = [pairs_of[dataset][j % len(pairs_of[dataset])] for j in range(b)]

        def batched(p: MatchingPredictor, name: str = name,
                    batch: list[tuple[str, str]] = batch) -> Call:
            return lambda i: p.score_pairs(batch, model=name, batch_size=b)

        thr = items_per_second(each(models, batched), b, args.batches)
        key = "accuracy" if dataset == "quora" else "map"
        f, q = results[(dataset, "fp32")], results[(dataset, "int8")]
        items = (f"{f['pairs']} pairs" + ("" if args.full else f" (seed {args.seed})")
                 if dataset == "quora" else
                 f"all {f['questions']} scored questions ({f['pairs']} pairs)")
        rows.append(Row(
            "matching", f"{label} ({use})", size_fp32=size_fp32, size_int8=size_int8,
            size_source=source, latency_fp32=lat["fp32"], latency_int8=lat["int8"],
            latency_request=request, throughput_fp32=thr["fp32"], throughput_int8=thr["int8"],
            throughput_unit=f"{dataset} pairs/s @{b}",
            metric=f"{'Quora dev accuracy' if key == 'accuracy' else 'WikiQA dev MAP'}",
            quality_fp32=f[key], quality_int8=q[key],
            eval_items=items, served=served))
    return rows


def bench_handwriting(args: argparse.Namespace) -> list[Row]:
    import cv2

    from models.handwriting.data import SETS_64, LabelSet, load_sets
    from models.handwriting.evaluate import score_sets
    from models.handwriting.predictor import HandwritingPredictor

    try:
        from benchmarks.handwriting import jpeg_at, make_page
    except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
        from handwriting import jpeg_at, make_page  # type: ignore[no-redef]

    cv2.setNumThreads(args.threads)
    directory = args.artifacts_dir / "handwriting"
    models = {k: HandwritingPredictor.load(directory, "cpu", q)
              for k, q in (("fp32", False), ("int8", True))}
    fp32, int8 = models["fp32"], models["int8"]
    kind = int8.quantization  # "static" when int8-static/ is accepted, else "dynamic"
    size_fp32, size_int8 = state_dict_bytes(fp32.model), state_dict_bytes(int8.model)
    source = ("state_dict (int8-static/ stores only observers; weights are quantized from "
              "the float file at load)") if kind == "static" else "state_dict"
    if kind != "static":
        size_fp32, size_int8, source = int8_sizes(fp32.model, int8.model, directory)

    sets = tuple(fp32.card.get("dataset", {}).get("sets") or SETS_64)
    label_set = LabelSet(str(fp32.card.get("labels", "letters")).split(":")[0],
                         tuple(fp32.classes))
    test = load_sets(args.data_dir / "handwriting", sets, 1, label_set, fp32.image_size)
    keep = np.zeros(len(test), dtype=bool)
    keep[seeded_indices(len(test), None if args.full else subset_size(args, "handwriting"),
                        args.seed)] = True
    subset = test.select(keep)
    with phase("handwriting", "accuracy"):
        accuracy = {k: next(s for s in score_sets(p.model, subset, label_set, p.image_size)
                            if s.name == "all").accuracy for k, p in models.items()}

    crops = subset.images[:256]
    lat = median_ms(each(models, lambda p: lambda i: p.classify(crops[i % len(crops)][None])),
                    args.calls)
    b = 256
    letters = test.images[:b]
    thr = items_per_second(each(models, lambda p: lambda i: p.classify(letters)),
                           len(letters), args.batches)
    page, origin = make_page()
    data, (w, h) = jpeg_at(page, 1.0)
    n_letters = len(fp32.recognize(data)[0].letters)
    page_lat = median_ms(each(models, lambda p: lambda i: p.recognize(data)),
                         max(5, args.calls // 3))
    same_text = fp32.recognize(data)[0].text == int8.recognize(data)[0].text
    common = dict(size_fp32=size_fp32, size_int8=size_int8, size_source=source,
                  metric="letter accuracy", quality_fp32=accuracy["fp32"],
                  quality_int8=accuracy["int8"],
                  eval_items=f"{len(subset)} of {len(test)} test letters" + (
                      "" if args.full else f" (seed {args.seed})"),
                  served=served_label("handwriting") + (f" ({kind})" if served_label(
                      "handwriting") == "int8" else ""))
    return [
        Row("handwriting", f"LetterCNN ({kind} int8, classify)", latency_fp32=lat["fp32"],
            latency_int8=lat["int8"], latency_request="classify one 64x64 letter crop",
            throughput_fp32=thr["fp32"], throughput_int8=thr["int8"],
            throughput_unit=f"letters/s @{b}", **common),  # type: ignore[arg-type]
        Row("handwriting", f"LetterCNN ({kind} int8, recognize page)",
            latency_fp32=page_lat["fp32"], latency_int8=page_lat["int8"],
            latency_request=f"recognize one {w}x{h} JPEG page of {n_letters} letters ({origin})",
            notes=[f"page text {'identical' if same_text else 'DIFFERS'} fp32 vs int8; "
                   "segmentation (OpenCV) is not quantized"],
            **common),  # type: ignore[arg-type]
    ]


BENCHES: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "word2vec": bench_word2vec, "lm": bench_lm, "translation": bench_translation,
    "matching": bench_matching, "handwriting": bench_handwriting,
}


# --------------------------------------------------------------------------------- output

def _num(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _pair(a: float | None, b: float | None, fmt: str) -> str:
    if a is None:
        return "—"
    return f"{format(a, fmt)} / {_num(b, fmt)}"


def _ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _quality(v: float | None, metric: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}" if "ppl" in metric or "BLEU" in metric else f"{v:.4f}"


def _change(row: Row) -> str:
    if not row.int8_applies:
        return "none (int8 n/a)"
    change, loss = row.relative_change, row.relative_loss
    if change is None or loss is None:
        return "n/a" if row.quality_fp32 is None or row.quality_int8 is None else "—"
    word = "worse" if loss > 0 else "better" if loss < 0 else "same"
    return f"{100 * change:+.2f}% ({word})"


def markdown_table(rows: Sequence[Row]) -> str:
    head = ["task", "model", "size fp32 (MB)", "size int8 (MB)", "latency b1 fp32/int8 (ms)",
            "speed-up", "throughput fp32/int8", "speed-up", "quality fp32", "quality int8",
            "relative change", "served by default"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        thr = _pair(r.throughput_fp32, r.throughput_int8, ".1f")
        if r.throughput_fp32 is not None:
            thr += f" {r.throughput_unit}"
        cells = [r.task, r.model,
                 _num(None if r.size_fp32 is None else r.size_fp32 / MB, ".2f"),
                 _num(None if r.size_int8 is None else r.size_int8 / MB, ".2f"),
                 _pair(r.latency_fp32, r.latency_int8, ".2f"), _ratio(r.latency_speedup),
                 thr, _ratio(r.throughput_speedup) if r.throughput_fp32 is not None else "—",
                 f"{_quality(r.quality_fp32, r.metric)} {r.metric}",
                 _quality(r.quality_int8, r.metric) if r.int8_applies else "= fp32",
                 _change(r), r.served]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(rows: Sequence[Row]) -> str:
    """Whether int8 meets the issue's target for the task of ``rows``."""
    task = rows[0].task
    if all(r.latency_int8 is None for r in rows):
        return f"{task}: int8 does not apply; served {rows[0].served}"
    best = max(max(r.latency_speedup or 0.0, r.throughput_speedup or 0.0) for r in rows)
    loss = max((r.relative_loss or 0.0) for r in rows)
    ok_speed, ok_quality = best >= TARGET_SPEEDUP, loss <= MAX_RELATIVE_LOSS
    if ok_speed and ok_quality:
        text = "meets the target"
    else:
        why = [] if ok_speed else [f"speed-up {best:.2f}x < {TARGET_SPEEDUP:g}x"]
        why += [] if ok_quality else [f"quality loss {100 * loss:.2f}% > "
                                      f"{100 * MAX_RELATIVE_LOSS:g}%"]
        text = "does not pay (" + "; ".join(why) + ")"
    return (f"{task}: int8 {text}: best speed-up {best:.2f}x, worst relative quality loss "
            f"{100 * loss:+.2f}%; served by default: {rows[0].served}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_card(task: str, rows: Sequence[Row], args: argparse.Namespace, command: str,
               date: str) -> Path:
    """Store the rows under ``"quantization"`` in the task's card and rewrite its manifest.

    Raises:
        models.common.artifacts.ArtifactError: the artifact does not match its manifest
            before the change (nothing is written then).
    """
    from models.common.artifacts import CARD, read_json, write_json
    from models.common.device import hardware_summary
    from models.common.manifest import MANIFEST, verify_manifest, write_manifest

    directory = args.artifacts_dir / task
    has_manifest = (directory / MANIFEST).is_file()
    if has_manifest:  # the card changes on purpose below; nothing else may have
        verify_manifest(directory)
    card = read_json(directory / CARD)
    card["quantization"] = {
        "command": command, "date": date, "threads": args.threads,
        "hardware": f"{hardware_summary()}; {cpu_name()}", "torch": torch.__version__,
        "eval": "full splits" if args.full else (
            f"seeded subset of {subset_size(args, task)} (seed {args.seed})"
            if task in DEFAULT_N else "all"),
        "calls": args.calls, "target": f">= {TARGET_SPEEDUP:g}x speed-up, <= "
                                      f"{100 * MAX_RELATIVE_LOSS:g}% relative quality loss",
        "verdict": verdict(rows), "table": markdown_table(rows),
        "rows": [r.as_dict() for r in rows],
    }
    write_json(directory / CARD, card)
    if has_manifest:
        write_manifest(directory)
    return directory / CARD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma list among " + ", ".join(TASKS))
    parser.add_argument("--threads", type=int, default=2, help="torch (and OpenCV) threads")
    parser.add_argument("--n", type=int, default=None,
                        help="eval subset size for every task (default: " + ", ".join(
                            f"{t} {n}" for t, n in DEFAULT_N.items()) + "; see above)")
    parser.add_argument("--full", action="store_true", help="score the complete splits")
    parser.add_argument("--calls", type=int, default=30,
                        help="single requests timed per variant (median)")
    parser.add_argument("--batches", type=int, default=5,
                        help="batched calls timed per variant (median)")
    parser.add_argument("--beam-size", type=int, default=5,
                        help="translation decoding (5: the service default)")
    parser.add_argument("--seed", type=int, default=0, help="subset sampling seed")
    parser.add_argument("--artifacts-dir", type=Path, default=artifacts_dir())
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    parser.add_argument("--write-cards", action="store_true",
                        help="store each task's rows under 'quantization' in its card.json "
                        "and rewrite its manifest.json")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        parser.error(f"--tasks takes a comma list among {', '.join(TASKS)}; got {args.tasks!r}")
    if (args.n is not None and args.n < 1) or args.calls < 1 or args.batches < 1:
        parser.error("--n, --calls and --batches must be at least 1")
    torch.set_num_threads(args.threads)
    for message in (".*quantized tensor creation functions.*", ".*reduce_range will be deprec.*",
                    ".*torch.ao.quantization is deprecated.*"):  # torch 2.13's int8 notices
        warnings.filterwarnings("ignore", message=message)
    command = shlex.join(["python", *sys.argv])
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    results: dict[str, list[Row]] = {}
    seconds: dict[str, float] = {}
    for task in tasks:
        if not (args.artifacts_dir / task).is_dir():
            print(f"skipping {task}: no {args.artifacts_dir / task}", file=sys.stderr)
            continue
        start = time.perf_counter()
        print(f"measuring {task} ...", file=sys.stderr, flush=True)
        results[task] = BENCHES[task](args)
        seconds[task] = time.perf_counter() - start
        print(f"  {task} done in {seconds[task]:.0f} s", file=sys.stderr, flush=True)
    rows = [r for task_rows in results.values() for r in task_rows]
    if not rows:
        sys.exit("nothing measured")

    print(f"\nfp32 vs int8 on CPU, torch {torch.__version__}, {args.threads} thread(s), "
          f"{cpu_name()}; {date}")
    sizes = ", ".join(f"{t} {subset_size(args, t)}" for t in tasks if t in DEFAULT_N)
    print(f"quality on {'the full splits' if args.full else f'seeded subsets ({sizes})'};"
          f" latency: median of {args.calls} single requests; throughput: median of "
          f"{args.batches} batched calls\n")
    print(markdown_table(rows))
    print()
    for r in rows:
        extra = "; ".join(r.notes)
        print(f"- {r.task} / {r.model}: latency = {r.latency_request}; size = {r.size_source}; "
              f"eval = {r.eval_items}" + (f"; {extra}" if extra else ""))
    print()
    for task_rows in results.values():
        print(f"- {verdict(task_rows)}")
    print(f"\ntarget: >= {TARGET_SPEEDUP:g}x at batch 1 or at the batch size, <= "
          f"{100 * MAX_RELATIVE_LOSS:g}% relative quality loss; wall time "
          + ", ".join(f"{t} {s:.0f} s" for t, s in seconds.items()))
    if args.write_cards:
        from models.common.artifacts import ArtifactError

        failed = []
        for task, task_rows in results.items():
            try:
                print(f"wrote {write_card(task, task_rows, args, command, date)}")
            except ArtifactError as exc:  # changed since its manifest: leave it alone
                print(f"error: not writing the {task} card: {exc}", file=sys.stderr)
                failed.append(task)
        if failed:
            sys.exit(f"cards not written: {', '.join(failed)}")


if __name__ == "__main__":
    main()
