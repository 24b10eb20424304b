"""The ``modelzoo`` command line: train, evaluate and serve.

``modelzoo train <task>``, ``modelzoo evaluate <task>``, ``modelzoo ensemble matching``,
``modelzoo data iam-lines``, ``modelzoo manifest <task>``, ``modelzoo quantize <task>``,
``modelzoo serve``.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path
from typing import Annotated

import typer

from models.common.paths import artifacts_dir, data_dir

app = typer.Typer(help="modelzoo: train, evaluate and serve five classic models.",
                  no_args_is_help=True, add_completion=False)
train_app = typer.Typer(help="Train a model and write its artifact.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate a trained artifact.", no_args_is_help=True)
app.add_typer(train_app, name="train")
ensemble_app = typer.Typer(help="Combine trained models into a served ensemble.",
                           no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(ensemble_app, name="ensemble")
data_app = typer.Typer(help="Prepare training data from datasets you have.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _echo_summary(out_dir: Path, card: dict) -> None:
    """Print where a training run wrote its artifact, its metrics and its wall time."""
    typer.echo(json.dumps({"out_dir": str(out_dir), "metrics": card["metrics"],
                           "wall_time_s": card["training"]["wall_time_s"]}, indent=2))


def _command_line(ctx: typer.Context) -> str:
    """The command that reproduces this call: ``modelzoo <sub> <task>`` + non-default flags."""
    parts = ["modelzoo", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name is None or value == param.default or value is None:
            continue
        flag = next((o for o in getattr(param, "opts", []) if o.startswith("--")),
                    "--" + param.name.replace("_", "-"))
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list | tuple):  # a repeatable option: the flag once per value
            parts += [a for v in value for a in (flag, str(v))]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


@train_app.command("word2vec")
def train_word2vec(
    ctx: typer.Context,
    arch: Annotated[str, typer.Option(
        help="skipgram | cbow (CBOW writes artifacts/word2vec/cbow, served as model 'cbow')")
    ] = "skipgram",
    train_file: Annotated[Path | None, typer.Option(help="PTB-format training text.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Artifact directory to write.")] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(
        help="Default runs/word2vec (CBOW: runs/word2vec-cbow).")] = None,
    wordsim_dir: Annotated[Path | None, typer.Option(help="Benchmarks for the card.")] = None,
    embed_size: int = 100,
    min_count: int = 5,
    subsample_t: float = 1e-4,
    max_window_size: int = 5,
    num_noise_words: int = 5,
    batch_size: Annotated[int | None, typer.Option(
        help="Centers per batch. Default: skip-gram 2048, CBOW 512.")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Initial learning rate. Default: skip-gram 1.25 (sgd), CBOW 0.005 (sparse_adam).")
    ] = None,
    lr_schedule: str = "linear",
    optimizer: Annotated[str | None, typer.Option(
        help="sgd (word2vec.c's) | sparse_adam (lazy Adam) | adam (dense, the tutorial's). "
             "Default: skip-gram sgd, CBOW sparse_adam.")] = None,
    engine: Annotated[str, typer.Option(
        help="auto | fused (closed-form gradients on sparse kernels; skip-gram with "
             "sparse_adam or sgd, float32, CPU) | autograd (model + backward()). auto = "
             "fused where it applies")] = "auto",
    epochs: int = 20,
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
    checkpoint_every: int = 2000,
    resume: bool = False,
    max_steps: int | None = None,
    verbose: bool = False,
) -> None:
    """Train skip-gram or CBOW word2vec (negative sampling, subsampling) on PTB."""
    from models.word2vec.train import MODELS, OPTIMIZERS, TrainConfig, resolve_engine, train

    _setup_logging(verbose)
    if arch not in MODELS:
        raise typer.BadParameter(f"--arch must be one of {', '.join(MODELS)}, got {arch!r}")
    if engine not in ("auto", "fused", "autograd"):
        raise typer.BadParameter(f"--engine must be auto, fused or autograd, got {engine!r}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise typer.BadParameter(
            f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    cbow = arch == "cbow"
    chosen = {"batch_size": batch_size, "lr": lr, "optimizer": optimizer}  # None: the recipe's
    cfg = TrainConfig.for_arch(
        arch,
        train_file=train_file or data_dir() / "ptb" / "ptb.train.txt",
        out_dir=out_dir or artifacts_dir() / "word2vec" / ("cbow" if cbow else ""),
        checkpoint_dir=checkpoint_dir or Path("runs/word2vec-cbow" if cbow else "runs/word2vec"),
        wordsim_dir=wordsim_dir or data_dir() / "wordsim",
        embed_size=embed_size, min_count=min_count, subsample_t=subsample_t,
        max_window_size=max_window_size, num_noise_words=num_noise_words,
        lr_schedule=lr_schedule, engine=engine, epochs=epochs, seed=seed, bf16=bf16,
        device=device, checkpoint_every=checkpoint_every, resume=resume, max_steps=max_steps,
        command=_command_line(ctx),
        **{k: v for k, v in chosen.items() if v is not None},
    )
    try:
        resolve_engine(cfg)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--engine") from exc
    try:
        card = train(cfg)
    except FloatingPointError as exc:  # diverged: say which knob to turn, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    _echo_summary(cfg.out_dir, card)


@evaluate_app.command("word2vec")
def evaluate_word2vec(
    artifact_dir: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
    wordsim_dir: Annotated[
        Path | None, typer.Option(help="Folder with WS353, SimLex, MEN, analogies.")
    ] = None,
    pairs_file: Annotated[
        Path | None,
        typer.Option(help="Score any file of 'word1 word2 score' lines (tab, space or comma)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Spearman rho on WordSim-353, SimLex-999, MEN; Google analogies; probe neighbours."""
    from models.word2vec.evaluate import (
        evaluate_vectors,
        format_report,
        load_pairs_file,
        probe_neighbors,
        spearman_similarity,
    )
    from models.word2vec.predictor import Word2VecPredictor

    artifact_dir = artifact_dir or artifacts_dir() / "word2vec"
    vectors = Word2VecPredictor.load(artifact_dir).vectors
    if pairs_file is not None:
        r = spearman_similarity(vectors, load_pairs_file(pairs_file))
        metrics = {pairs_file.name: {"spearman": r.spearman, "pairs_used": r.pairs_used,
                                     "pairs_total": r.pairs_total}}
    else:
        metrics = evaluate_vectors(vectors, wordsim_dir or data_dir() / "wordsim")
    probes = probe_neighbors(vectors)
    if as_json:
        typer.echo(json.dumps({"metrics": metrics, "probe_neighbors": probes}, indent=2))
    else:
        typer.echo(format_report(metrics, probes))


@train_app.command("lm")
def train_lm(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="served | baseline (the seed tutorial)")] = "served",
    train_file: Annotated[Path | None, typer.Option(help="PTB-format training text.")] = None,
    valid_file: Annotated[Path | None, typer.Option(help="PTB-format validation text.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Artifact directory to write.")] = None,
    checkpoint_dir: Path = Path("runs/lm"),
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the preset's learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Override the preset's batch (streams per process under torchrun).")] = None,
    embed_size: Annotated[int | None, typer.Option(help="Override the preset's size.")] = None,
    hidden_size: Annotated[int | None, typer.Option(help="Override the preset's size.")] = None,
    num_layers: Annotated[int | None, typer.Option(help="Override the preset's depth.")] = None,
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
    checkpoint_every: int = 200,
    resume: bool = False,
    max_steps: int | None = None,
    set_lr: Annotated[
        float | None, typer.Option(help="Set the learning rate now (e.g. with --resume).")
    ] = None,
    verbose: bool = False,
) -> None:
    """Train the LSTM language model (truncated BPTT) on PTB; multi-GPU under torchrun."""
    from models.common.distributed import is_main
    from models.lm.train import TrainConfig, train

    _setup_logging(verbose)
    overrides = {k: v for k, v in {"epochs": epochs, "lr": lr, "batch_size": batch_size,
                                   "embed_size": embed_size, "hidden_size": hidden_size,
                                   "num_layers": num_layers}.items()
                 if v is not None}
    cfg = TrainConfig.from_preset(
        preset,
        train_file=train_file or data_dir() / "ptb" / "ptb.train.txt",
        valid_file=valid_file or data_dir() / "ptb" / "ptb.valid.txt",
        out_dir=out_dir or artifacts_dir() / "lm",
        checkpoint_dir=checkpoint_dir, seed=seed, bf16=bf16, device=device,
        checkpoint_every=checkpoint_every, resume=resume, max_steps=max_steps, set_lr=set_lr,
        command=_command_line(ctx), **overrides,
    )
    card = train(cfg)
    if is_main():
        _echo_summary(cfg.out_dir, card)


@evaluate_app.command("lm")
def evaluate_lm(
    file: Annotated[Path, typer.Option(help="Any PTB-format file (one sentence a line).")],
    artifact_dir: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
) -> None:
    """Per-token perplexity (``<eos>`` counted) of any PTB-format file."""
    from models.lm.data import tokenize
    from models.lm.evaluate import perplexity
    from models.lm.predictor import LMPredictor

    lm = LMPredictor.load(artifact_dir or artifacts_dir() / "lm")
    ids = tokenize(file, lm.dictionary, grow=False)
    typer.echo(f"{file}: {ids.numel()} tokens, perplexity {perplexity(lm.model, ids):.2f}")


@train_app.command("handwriting")
def train_handwriting(
    ctx: typer.Context,
    preset: Annotated[str, typer.Option(help="served | baseline (the seed tutorial's CNN)")] = (
        "served"),
    arch: Annotated[str, typer.Option(
        help="letters: the letter CNN of --preset (pipeline=contours); crnn: the line "
        "recognizer (CRNN + CTC, pipeline=lines), written to <artifacts>/handwriting/crnn")] = (
        "letters"),
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder with the handwriting/*.npz archives (with --arch crnn: "
        "the data root holding handwriting/, ptb/ and multi30k/).")] = None,
    steps: Annotated[int, typer.Option(help="--arch crnn: optimizer steps.")] = 12000,
    fonts_dir: Annotated[Path, typer.Option(
        help="--arch crnn: where handwriting fonts are installed (Debian fonts-* packages; "
        "none found = letter crops only).")] = Path("/usr/share/fonts"),
    workers: Annotated[int, typer.Option(help="--arch crnn: line-composing processes.")] = 1,
    threads: Annotated[int, typer.Option(
        help="--arch crnn: torch threads of the training process (0 = torch's default).")] = 0,
    out_dir: Annotated[Path | None, typer.Option(help="Artifact directory to write.")] = None,
    checkpoint_dir: Path = Path("runs/handwriting"),
    label_set: Annotated[str, typer.Option(help="letters (A-Z) | alnum (0-9, A-Z)")] = "letters",
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the preset's learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the preset's batch.")] = None,
    emnist_images: Annotated[Path | None, typer.Option(
        help="EMNIST *-images-idx3-ubyte(.gz) to add to training.")] = None,
    emnist_labels: Annotated[Path | None, typer.Option(help="The matching labels file.")] = None,
    emnist_mapping: Annotated[Path | None, typer.Option(
        help="The split's emnist-*-mapping.txt.")] = None,
    real_lines: Annotated[Path | None, typer.Option(
        help="--arch crnn: folder with manifest.tsv (path, text) of real line/word images to "
        "mix in; the development pages (handwriting-pages, --exclude-labels) are dropped.")] = (
        None),
    real_share: Annotated[float, typer.Option(
        help="--arch crnn: share of training lines taken from --real-lines.")] = 0.5,
    exclude_labels: Annotated[list[Path] | None, typer.Option(
        help="--arch crnn: labels.tsv of evaluation images never to train on (repeatable).")] = (
        None),
    init_from: Annotated[Path | None, typer.Option(
        help="--arch crnn: start from this CRNN artifact's weights (fine-tuning).")] = None,
    upper_share: Annotated[float, typer.Option(
        help="--arch crnn: share of composed lines written all in capitals.")] = 0.12,
    apart_share: Annotated[float, typer.Option(
        help="--arch crnn: share of letter-crop lines with letters written well apart.")] = (
        0.0),
    number_share: Annotated[float, typer.Option(
        help="--arch crnn: share of composed lines given written numbers (addresses, dates, "
        "phone numbers, codes).")] = 0.0,
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
    resume: bool = False,
    max_steps: int | None = None,
    verbose: bool = False,
) -> None:
    """Train the letter classifier on the shared handwriting sets (train splits), or with
    --arch crnn the line recognizer on composed lines."""
    from models.handwriting.train import TrainConfig, train

    _setup_logging(verbose)
    if arch not in ("letters", "crnn"):
        raise typer.BadParameter(f"unknown --arch {arch!r}; use letters or crnn")
    if arch == "crnn":
        from models.handwriting.train_crnn import CRNNTrainConfig, train_crnn

        ccfg = CRNNTrainConfig(
            data_dir=data_dir_ or data_dir(),
            out_dir=out_dir or artifacts_dir() / "handwriting" / "crnn",
            checkpoint_dir=(checkpoint_dir if checkpoint_dir != Path("runs/handwriting")
                            else Path("runs/handwriting-crnn")),
            fonts_dir=fonts_dir, steps=steps, batch_size=batch_size or 32, lr=lr or 1.5e-3,
            seed=seed, bf16=bf16, workers=workers, threads=threads, device=device,
            resume=resume, max_steps=max_steps, command=_command_line(ctx),
            real_lines=real_lines, real_share=real_share,
            exclude_labels=tuple(exclude_labels or ()), init_from=init_from,
            upper_share=upper_share, apart_share=apart_share, number_share=number_share)
        _echo_summary(ccfg.out_dir, train_crnn(ccfg))
        return
    emnist = (emnist_images, emnist_labels, emnist_mapping)
    if any(emnist) and not all(emnist):
        raise typer.BadParameter("give --emnist-images, --emnist-labels and --emnist-mapping "
                                 "together")
    cfg = TrainConfig.from_preset(
        preset, data_dir=data_dir_ or data_dir() / "handwriting",
        out_dir=out_dir or artifacts_dir() / "handwriting", checkpoint_dir=checkpoint_dir,
        label_set=label_set, epochs=epochs, lr=lr, batch_size=batch_size,
        emnist_images=emnist_images, emnist_labels=emnist_labels, emnist_mapping=emnist_mapping,
        seed=seed, bf16=bf16, device=device, resume=resume, max_steps=max_steps,
        command=_command_line(ctx),
    )
    card = train(cfg)
    _echo_summary(cfg.out_dir, card)


@data_app.command("iam-lines")
def data_iam_lines(
    words_txt: Annotated[Path, typer.Option(help="IAM's words.txt (word-id ok|err gray x y w h "
                                            "tag text).")],
    words_dir: Annotated[Path, typer.Option(help="IAM's words/ folder (a01/a01-000u/*.png).")],
    out_dir: Annotated[Path, typer.Option(help="Folder to write: manifest.tsv, lines/, words/ "
                                          "(give it to train handwriting --real-lines).")],
    exclude_labels: Annotated[list[Path] | None, typer.Option(
        help="labels.tsv of evaluation images (repeatable); IAM texts sharing a line or a word "
        "crop (md5) with one are dropped. $MODELZOO_DATA_DIR/handwriting-pages/labels.tsv is "
        "always used.")] = None,
    word_share: Annotated[float, typer.Option(
        help="Share of single word crops written besides the rebuilt lines.")] = 0.33,
    seed: int = 0,
    source: Annotated[str, typer.Option(help="Text for the manifest's source column.")] = "IAM",
    verbose: bool = False,
) -> None:
    """Rebuild IAM text lines from its word crops (pasted at their boxes) for CRNN training."""
    import csv

    from models.handwriting.iamlines import build_iam_lines

    _setup_logging(verbose)
    from models.handwriting.reallines import excluded_keys

    labels = [data_dir() / "handwriting-pages" / "labels.tsv", *(exclude_labels or [])]
    md5s, _ = excluded_keys(labels)  # the md5 column and the md5 of each listed image
    texts = []
    for path in labels:
        if not path.is_file():
            if path in (exclude_labels or []):
                raise typer.BadParameter(f"--exclude-labels {path}: no such file")
            continue
        with path.open(encoding="utf-8", newline="") as f:
            texts += [row.get("text") or "" for row in
                      csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    try:
        counts = build_iam_lines(words_txt, words_dir, out_dir, exclude_texts=texts,
                                 exclude_md5s=md5s, word_share=word_share, seed=seed,
                                 source=source)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps({"out_dir": str(out_dir), "evaluation_texts": len(texts), **counts}))


@evaluate_app.command("handwriting")
def evaluate_handwriting(
    artifact_dir: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder with the handwriting/*.npz archives.")] = None,
    sets: Annotated[str | None, typer.Option(
        help="Comma list of archives to score (default: every 64x64 set).")] = None,
    pages: Annotated[list[Path] | None, typer.Option(
        help="Folder of page images with labels.tsv (filename, text, style) or labels.jsonl "
        "(file, text[, style]); CER and WER per style. Repeatable.")] = None,
    pipeline: Annotated[str | None, typer.Option(
        help="auto | lines | contours: how recognize() reads --pages and --synth pages "
        "(default: the predictor's default).")] = None,
    letters: Annotated[bool | None, typer.Option(
        "--letters/--no-letters", help="Score letter accuracy on the test splits "
        "(default: yes, unless --pages is given).")] = None,
    synth: Annotated[int, typer.Option(
        help="Also compose this many pages per difficulty from test letters and score them.")
    ] = 0,
    synth_dir: Annotated[Path, typer.Option(help="Where composed pages are written.")] = Path(
        "runs/handwriting-pages"),
    difficulty: Annotated[str, typer.Option(help="clean,realistic (comma list)")] = (
        "clean,realistic"),
    seed: int = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Letter accuracy per test split (writer-disjoint sets first) with the most confused
    pairs; with --pages, per style and overall: CER on A-Z (case-insensitive), CER as
    written and WER, and each image's reading; with --synth, CER and word accuracy on
    composed pages. Metrics: models/handwriting/metrics.py (ErrorCounts)."""
    from dataclasses import asdict
    from typing import Any

    from models.handwriting.data import SETS_64, LabelSet, load_sets
    from models.handwriting.evaluate import (
        format_page_report,
        format_page_score,
        format_scores,
        page_reader,
        read_page_labels,
        read_pages,
        score_pages,
        score_sets,
    )
    from models.handwriting.predictor import HandwritingPredictor
    from models.handwriting.synth import make_eval_set

    try:  # labels and images checked before any model work
        labelled = [(folder, read_page_labels(folder)) for folder in pages or []]
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    directory = artifact_dir or artifacts_dir() / "handwriting"
    predictor = HandwritingPredictor.load(directory)
    try:
        read = page_reader(predictor, pipeline)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pipeline") from exc
    root = data_dir_ or data_dir() / "handwriting"
    out: dict[str, Any] = {}
    score_letters = letters if letters is not None else not pages
    if score_letters:
        names = tuple(sets.split(",")) if sets else SETS_64
        label_set = LabelSet(predictor.card.get("labels", "letters").split(":")[0],
                             tuple(predictor.classes))
        test = load_sets(root, names, 1, label_set)
        scores = score_sets(predictor.model, test, label_set, predictor.image_size)
        out["letters"] = [asdict(s) for s in scores]
        if not as_json:
            typer.echo(format_scores(scores))
    system = f"modelzoo {directory} (pipeline {pipeline or 'default'})"
    for folder, labels in labelled:
        report = read_pages(read, folder, system, labels)
        out.setdefault("pages", []).append(report.to_dict())
        if not as_json:
            typer.echo(format_page_report(report))
    for level in (d for d in difficulty.split(",") if synth):
        folder = make_eval_set(synth_dir, synth, seed, level, data_dir=root, overwrite=True)
        page_score = score_pages(predictor, folder, pipeline=pipeline)
        out.setdefault("synth", []).append(asdict(page_score))
        if not as_json:
            typer.echo(format_page_score(page_score))
    if as_json:
        typer.echo(json.dumps(out, indent=2))


@train_app.command("translation")
def train_translation(
    ctx: typer.Context,
    arch: Annotated[str, typer.Option(help="transformer (served) | lstm (the seed tutorial)")] = (
        "transformer"),
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder with Multi30k's <split>.de.gz / <split>.en.gz.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Artifact directory to write.")] = None,
    checkpoint_dir: Path = Path("runs/translation"),
    vocab_size: int = 8000,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the preset's peak lr.")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        help="Target tokens per batch (per process under torchrun).")] = None,
    model_json: Annotated[str | None, typer.Option(
        "--model", help='Model hyper-parameters as JSON over the arch\'s preset, e.g. '
        '\'{"d_model": 128}\'.')] = None,
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
    checkpoint_every: int = 200,
    resume: bool = False,
    max_steps: int | None = None,
    verbose: bool = False,
) -> None:
    """Train a German→English model on Multi30k (tokenizer trained on train only);
    multi-GPU under torchrun."""
    from models.common.distributed import is_main
    from models.translation.train import PRESETS, TrainConfig, train

    _setup_logging(verbose)
    try:
        model = json.loads(model_json) if model_json else None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--model is not valid JSON: {exc}") from exc
    if model is not None:
        if not isinstance(model, dict):
            raise typer.BadParameter('--model must be a JSON object, e.g. \'{"d_model": 128}\'')
        model = {**PRESETS.get(arch, {}).get("model", {}), **model}
    cfg = TrainConfig.from_arch(
        arch, data_dir=data_dir_ or data_dir() / "multi30k",
        out_dir=out_dir or artifacts_dir() / "translation", checkpoint_dir=checkpoint_dir,
        vocab_size=vocab_size, epochs=epochs, lr=lr, max_tokens=max_tokens, model=model,
        seed=seed, bf16=bf16, device=device, checkpoint_every=checkpoint_every, resume=resume,
        max_steps=max_steps, command=_command_line(ctx),
    )
    card = train(cfg)
    if is_main():
        _echo_summary(cfg.out_dir, card)


EVAL_SPLITS = ("val", "test_2016_flickr")


@evaluate_app.command("translation")
def evaluate_translation(
    ctx: typer.Context,
    artifact_dir: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
    split: Annotated[str, typer.Option(help="Multi30k split: val | test_2016_flickr.")] = (
        "test_2016_flickr"),
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder with Multi30k's <split>.de.gz / <split>.en.gz.")] = None,
    src: Annotated[Path | None, typer.Option(
        help="Score any German file instead (plain or .gz, one sentence a line).")] = None,
    ref: Annotated[Path | None, typer.Option(help="Its English references (with --src).")] = (
        None),
    beam_size: int = 5,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding (same as --beam-size 1).")] = (
        False),
    length_penalty: Annotated[float, typer.Option(help="GNMT alpha for beam ranking.")] = 0.6,
    batch_size: int = 32,
    quantize: Annotated[bool, typer.Option(help="int8 dynamic quantization (CPU).")] = False,
    device: str = "cpu",
    limit: Annotated[int | None, typer.Option(help="Score only the first N sentences.")] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the translations here.")] = (
        None),
    write_card: Annotated[bool, typer.Option(
        help="Store BLEU/chrF in the artifact's card.json metrics.")] = False,
    verbose: bool = False,
) -> None:
    """sacreBLEU BLEU and chrF (with signatures) and sentences/second of a translation
    artifact on a Multi30k split or any --src/--ref pair of files."""
    import time

    from models.common.artifacts import CARD, ArtifactError, read_json, write_json
    from models.common.device import hardware_summary, resolve_device
    from models.common.manifest import MANIFEST, verify_manifest, write_manifest
    from models.translation.data import read_lines, split_paths
    from models.translation.evaluate import bleu_chrf, translate_file
    from models.translation.predictor import TranslationPredictor

    _setup_logging(verbose)
    if (src is None) != (ref is None):
        raise typer.BadParameter("give --src and --ref together")
    if src is None and split not in EVAL_SPLITS:
        raise typer.BadParameter(f"--split must be one of {', '.join(EVAL_SPLITS)}")
    if write_card and limit is not None:
        raise typer.BadParameter("--write-card scores whole files; drop --limit")
    if greedy:
        beam_size = 1
    if src is not None and ref is not None:
        name, (src_path, ref_path) = src.name.split(".")[0], (src, ref)
    else:
        name = split
        src_path, ref_path = split_paths(data_dir_ or data_dir() / "multi30k", split)
    sources, references = read_lines(src_path), read_lines(ref_path)
    if len(sources) != len(references):
        raise typer.BadParameter(f"{src_path} has {len(sources)} lines but {ref_path} has "
                                 f"{len(references)}")
    sources, references = sources[:limit], references[:limit]
    artifact_dir = artifact_dir or artifacts_dir() / "translation"
    predictor = TranslationPredictor.load(artifact_dir, resolve_device(device, quantize),
                                          quantize)
    start = time.perf_counter()
    hypotheses = translate_file(predictor, sources, beam_size, batch_size, length_penalty)
    seconds = time.perf_counter() - start
    scores = bleu_chrf(hypotheses, references)
    if output is not None:
        output.write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    variant = ("greedy" if beam_size == 1 else f"beam{beam_size}") + ("_int8" if quantize else "")
    speed = len(sources) / seconds
    typer.echo(f"{name}: {len(sources)} sentences, {variant}, batch {batch_size}, "
               f"{predictor.device}")
    typer.echo(f"{scores['bleu_detail']}\n  {scores['bleu_signature']}")
    typer.echo(f"chrF2 = {scores['chrf']:.2f}\n  {scores['chrf_signature']}")
    typer.echo(f"speed: {speed:.1f} sentences/s ({seconds:.1f} s)")
    if write_card:
        has_manifest = (artifact_dir / MANIFEST).is_file()
        if has_manifest:  # the card changes on purpose below; nothing else may have
            try:
                verify_manifest(artifact_dir)
            except ArtifactError as exc:
                typer.echo(f"error: not writing the card: {exc}", err=True)
                raise typer.Exit(1) from exc
        card = read_json(artifact_dir / CARD)
        key = f"{name}_{variant}"
        card.setdefault("metrics", {}).update(
            {f"bleu_{key}": scores["bleu"], f"chrf_{key}": scores["chrf"]})
        card.setdefault("evaluations", {})[key] = {
            **{k: scores[k] for k in ("bleu", "chrf", "bleu_signature", "chrf_signature",
                                      "sentences")},
            "beam_size": beam_size, "length_penalty": length_penalty, "quantized": quantize,
            "batch_size": batch_size, "sentences_per_second": round(speed, 2),
            "device": str(predictor.device), "hardware": hardware_summary(),
            "command": _command_line(ctx),
        }
        write_json(artifact_dir / CARD, card)
        if has_manifest:
            write_manifest(artifact_dir)
        typer.echo(f"wrote bleu_{key} / chrf_{key} to {artifact_dir / CARD}")


@train_app.command("matching")
def train_matching(
    ctx: typer.Context,
    arch: Annotated[str, typer.Option(
        help="dssm | mvlstm | matchpyramid | esim | bimpm | minilm-cross | minilm-bi "
        "(minilm-*: LoRA fine-tunes of all-MiniLM-L6-v2)")] = "esim",
    dataset: Annotated[str, typer.Option(help="quora | wikiqa")] = "quora",
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder holding quora/ and wikiqa/.")] = None,
    out_root: Annotated[Path | None, typer.Option(
        help="Folder of matching models; this run writes <arch>-<dataset>/ in it.")] = None,
    checkpoint_dir: Path = Path("runs/matching"),
    embeddings: Annotated[Path | None, typer.Option(
        help="Word vectors to start from: a text file, 'word v1 ... vD' per line (GloVe, "
        "fastText .vec, word2vec text), or a 'modelzoo train word2vec' artifact folder; D "
        "must equal the model's embed_dim.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the preset's lr.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the preset's batch.")] = None,
    model_json: Annotated[str | None, typer.Option(
        "--model", help='Model hyper-parameters as JSON, e.g. \'{"hidden": 100}\'.')] = None,
    min_count: int = 2,
    patience: Annotated[int, typer.Option(
        help="Stop after this many epochs without a better dev metric.")] = 2,
    seed: int = 0,
    bf16: Annotated[bool | None, typer.Option(
        help="bfloat16 autocast (default: the preset's; on for ESIM).")] = None,
    device: str = "cpu",
    resume: bool = False,
    max_steps: int | None = None,
    train_limit: Annotated[int | None, typer.Option(
        help="minilm-*: use only the first N training pairs (smoke runs).")] = None,
    init_from: Annotated[Path | None, typer.Option(
        help="minilm-*: start from this trained minilm-* folder's adapters and head "
        "(further fine-tuning; same arch and LoRA settings).")] = None,
    ema: Annotated[float, typer.Option(
        help="Score dev with, and keep, an exponential moving average of the weights with "
        "this decay per step (e.g. 0.999); 0: off. Not for minilm-*.")] = 0.0,
    freeze_embeddings: Annotated[bool, typer.Option(
        help="Keep the --embeddings word vectors fixed (BiMPM's setting); letter-trigram "
        "vectors still train. Not for minilm-*.")] = False,
    verbose: bool = False,
) -> None:
    """Train one matching architecture on Quora or WikiQA; early stopping on dev."""
    from models.matching.train import TrainConfig, train
    from models.matching.transformer import TRANSFORMER_ARCHS

    _setup_logging(verbose)
    if init_from is not None and arch not in TRANSFORMER_ARCHS:
        raise typer.BadParameter(f"--init-from is for {', '.join(TRANSFORMER_ARCHS)}, not "
                                 f"{arch}")
    if not 0.0 <= ema < 1.0:
        raise typer.BadParameter(f"--ema must be in [0, 1), got {ema}")
    if ema and arch in TRANSFORMER_ARCHS:
        raise typer.BadParameter(f"--ema is not available for {arch}")
    if freeze_embeddings and (embeddings is None or arch in TRANSFORMER_ARCHS):
        raise typer.BadParameter("--freeze-embeddings needs --embeddings and a from-scratch "
                                 "arch")
    if arch in TRANSFORMER_ARCHS:
        from models.matching.train_transformer import TransformerTrainConfig, train_transformer

        tcfg = TransformerTrainConfig(
            arch=arch, dataset=dataset, data_dir=data_dir_ or data_dir(),
            out_root=out_root or artifacts_dir() / "matching", checkpoint_dir=checkpoint_dir,
            seed=seed, device=device, resume=resume, max_steps=max_steps,
            command=_command_line(ctx), bf16=True if bf16 is None else bf16,
            train_limit=train_limit, init_from=init_from)
        if epochs is not None:
            tcfg.epochs = epochs
        if lr is not None:
            tcfg.lr = lr
        if batch_size is not None:
            tcfg.batch_size = batch_size
        _echo_summary(tcfg.out_root / tcfg.name, train_transformer(tcfg))
        return
    try:
        model = json.loads(model_json) if model_json else None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--model is not valid JSON: {exc}") from exc
    cfg = TrainConfig.from_arch(
        arch, dataset=dataset, data_dir=data_dir_ or data_dir(),
        out_root=out_root or artifacts_dir() / "matching", checkpoint_dir=checkpoint_dir,
        embeddings=embeddings, epochs=epochs, lr=lr, batch_size=batch_size, model=model,
        min_count=min_count, patience=patience, seed=seed, bf16=bf16, device=device,
        resume=resume, max_steps=max_steps, ema=ema, freeze_embeddings=freeze_embeddings,
        command=_command_line(ctx))
    card = train(cfg)
    _echo_summary(cfg.out_root / cfg.name, card)


@evaluate_app.command("matching")
def evaluate_matching(
    file: Annotated[Path, typer.Option(
        help="A Quora-style (label, text_a, text_b[, id]; .gz ok) or WikiQA-style file.")],
    model: Annotated[str | None, typer.Option(
        help="Served model name (e.g. esim-quora); default: the best for the file's kind.")
    ] = None,
    artifact_dir: Annotated[Path | None, typer.Option(help="Matching artifact folder.")] = None,
    quantize: Annotated[bool, typer.Option(help="int8 dynamic quantization (CPU).")] = False,
    device: str = "cpu",
    verbose: bool = False,
) -> None:
    """Accuracy/F1 (Quora-style) or MAP/MRR (WikiQA-style) of a matching model on a file."""
    from models.common.device import resolve_device
    from models.common.errors import UnknownItemError
    from models.matching.evaluate import evaluate_file
    from models.matching.predictor import MatchingPredictor

    _setup_logging(verbose)
    predictor = MatchingPredictor.load(artifact_dir or artifacts_dir() / "matching",
                                       resolve_device(device, quantize), quantize)
    try:
        result = evaluate_file(predictor, file, model)
    except (UnknownItemError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(json.dumps(result, indent=2))


@ensemble_app.command("matching")
def ensemble_matching(
    ctx: typer.Context,
    members: Annotated[str, typer.Option(
        help="Comma list of model folders of one dataset, e.g. esim-quora,dssm-quora.")],
    name: Annotated[str | None, typer.Option(
        help="Folder and served name of the ensemble; default ensemble-<dataset>.")] = None,
    artifacts_dir_: Annotated[Path | None, typer.Option(
        "--artifacts-dir", "--artifact-dir",
        help="Matching artifact folder holding the members (default: "
        "$MODELZOO_ARTIFACTS_DIR/matching); the ensemble is written in it.")] = None,
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder holding quora/ and wikiqa/ (the dev split is scored).")
    ] = None,
    device: str = "cpu",
    verbose: bool = False,
) -> None:
    """Serve the mean of several matching models' probabilities as one model.

    Scores the members' dev split, tunes the threshold on the average, writes
    <artifacts-dir>/<name>/ (ensemble.json + card.json; no weights) and rewrites the index
    card (the ensemble becomes the default when its dev metric is the best) and manifest. A
    manifest.json present is checked first.
    """
    from models.common.artifacts import ArtifactError
    from models.common.manifest import MANIFEST, verify_manifest
    from models.matching.ensemble import build_ensemble

    _setup_logging(verbose)
    root = artifacts_dir_ or artifacts_dir() / "matching"
    if not root.is_dir():
        raise typer.BadParameter(f"{root} is not a folder; give --artifacts-dir")
    try:
        if (root / MANIFEST).is_file():  # the index changes on purpose; nothing else may have
            verify_manifest(root)
        card = build_ensemble(root, [m.strip() for m in members.split(",") if m.strip()],
                              data_dir_ or data_dir(), name, device, _command_line(ctx))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except (ArtifactError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"out_dir": str(root / card["name"]), "members": card["members"],
                           "metrics": card["metrics"],
                           "held_out_half_accuracy": card["held_out_half_accuracy"],
                           "members_on_dev": card["members_on_dev"]}, indent=2))


@app.command()
def manifest(
    target: Annotated[str, typer.Argument(
        help="A task name (its folder under $MODELZOO_ARTIFACTS_DIR, default artifacts/) "
        "or a path to an artifact folder (e.g. ./lm, /data/artifacts/lm).")],
    check: Annotated[bool, typer.Option(
        "--check", help="Verify the folder against its manifest.json instead of writing it.")
    ] = False,
) -> None:
    """Write an artifact's manifest.json (sha256 and size of every file), or --check it.

    The service verifies manifests before loading a model; run this after changing an
    artifact's files on purpose. Exit status 1 when --check finds a problem.
    """
    from models.common.artifacts import ArtifactError
    from models.common.manifest import MANIFEST, verify_manifest, write_manifest

    is_task = re.fullmatch(r"[A-Za-z0-9_-]+", target) is not None
    directory = artifacts_dir() / target if is_task else Path(target)
    if not directory.is_dir():
        raise typer.BadParameter(f"{directory} is not a folder: give a task name under "
                                 f"{artifacts_dir()} or a path to an artifact folder")
    try:
        if check:
            n_files = verify_manifest(directory)
            typer.echo(f"ok: {n_files} files in {directory} match its {MANIFEST}")
        else:
            path = write_manifest(directory)
            n_files = len(json.loads(path.read_text(encoding="utf-8"))["files"])
            typer.echo(f"wrote {path} ({n_files} files)")
    except ArtifactError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command("store-int8")
def store_int8(
    target: Annotated[str, typer.Argument(
        help="A task name (its folder under $MODELZOO_ARTIFACTS_DIR) or an artifact folder.")],
    tensor: Annotated[list[str], typer.Option(
        help="A 2-D weight of model.safetensors to store row-wise int8 (repeatable).")],
) -> None:
    """Rewrite an artifact's model.safetensors with the given weights stored row-wise int8
    (absmax per row; loaded back as float16): about half their size on disk. The card
    records the tensors, the command and both sizes; manifest.json is rewritten (the task
    folder's, for a model sub-folder such as artifacts/matching/dssm-quora). Measure the
    model again afterwards (its evaluate command)."""
    from safetensors.torch import load_file, save_file

    from models.common.artifacts import (
        CARD,
        WEIGHTS,
        ArtifactError,
        int8_rows,
        read_json,
        write_json,
    )
    from models.common.manifest import covering_manifest_dir, write_manifest

    is_task = re.fullmatch(r"[A-Za-z0-9_-]+", target) is not None
    directory = artifacts_dir() / target if is_task else Path(target)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise typer.BadParameter(f"{weights} does not exist: give a task name under "
                                 f"{artifacts_dir()} or an artifact folder")
    tensors = load_file(weights)
    missing = [t for t in tensor if t not in tensors]
    if missing:
        raise typer.BadParameter(f"not in {weights}: {', '.join(missing)}; it has "
                                 f"{', '.join(sorted(tensors))}")
    try:
        stored = int8_rows(tensors, tensor)
        card = read_json(directory / CARD)
    except (ValueError, ArtifactError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    before = weights.stat().st_size
    save_file(stored, weights)
    card.setdefault("weights_storage", {})["int8_rows"] = sorted(
        set(card.get("weights_storage", {}).get("int8_rows", [])) | set(tensor))
    command = shlex.join(["modelzoo", "store-int8", target,
                          *[a for t in tensor for a in ("--tensor", t)]])
    card["weights_storage"].update(command=command, bytes_before=before,
                                   bytes_after=weights.stat().st_size)
    write_json(directory / CARD, card)
    write_manifest(covering_manifest_dir(directory))
    typer.echo(f"wrote {weights}: {before} -> {weights.stat().st_size} bytes "
               f"({', '.join(tensor)} row-wise int8)")


QUANTIZABLE_PREDICTORS = {
    "lm": "models.lm.predictor:LMPredictor",
    "translation": "models.translation.predictor:TranslationPredictor",
    "matching": "models.matching.predictor:MatchingPredictor",
    "handwriting": "models.handwriting.predictor:HandwritingPredictor",
}


@app.command()
def quantize(
    task: Annotated[str, typer.Argument(help="lm | translation | matching | handwriting")],
    artifact_dir: Annotated[Path | None, typer.Option(
        help="Artifact folder (default: the task's under $MODELZOO_ARTIFACTS_DIR).")] = None,
    static: Annotated[bool, typer.Option(
        "--static", help="handwriting only: post-training static int8 (fused conv+bn+relu, "
        "x86 qconfig, calibrated on training images) into <artifact>/int8-static/.")] = False,
    calibration_images: Annotated[int, typer.Option(
        help="With --static: training images to calibrate on.")] = 500,
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="With --static: folder with the handwriting/*.npz archives.")] = None,
    seed: Annotated[int, typer.Option(help="With --static: calibration sample seed.")] = 0,
) -> None:
    """Write the int8 dynamically quantized weights as <artifact>/int8/ (safetensors + JSON).

    The service (MODELZOO_QUANTIZE) then loads them instead of quantizing at load time, with
    the same outputs; no pickle is involved. A manifest.json present is checked first and
    rewritten after. Matching writes one int8/ per model sub-folder.

    With --static (handwriting): calibrate, convert, report accuracy per test set, images/s
    and size of fp32 vs int8 in this run, and write <artifact>/int8-static/; the service
    serves it (MODELZOO_QUANTIZE=handwriting) only when accuracy dropped by <= 0.5 points.
    """
    import importlib

    import torch

    from models.common.artifacts import ArtifactError
    from models.common.manifest import MANIFEST, verify_manifest, write_manifest
    from models.common.predictor import predictor_modules
    from models.common.quantize import INT8_DIR, ignoring_saved_int8, int8_state, save_int8
    from models.handwriting.quantize_static import ignoring_static_int8

    if static:
        command = f"modelzoo quantize {task} --static --calibration-images {calibration_images}"
        _quantize_static(task, artifact_dir, data_dir_, calibration_images, seed,
                         command + (f" --seed {seed}" if seed else ""))
        return

    if task not in QUANTIZABLE_PREDICTORS:
        raise typer.BadParameter(
            f"'{task}' cannot be int8-quantized: choose one of "
            f"{', '.join(QUANTIZABLE_PREDICTORS)} (word2vec has no Linear/LSTM layer)")
    directory = artifact_dir or artifacts_dir() / task
    module_name, class_name = QUANTIZABLE_PREDICTORS[task].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    has_manifest = (directory / MANIFEST).is_file()
    try:
        if has_manifest:
            verify_manifest(directory)
        with ignoring_saved_int8(), ignoring_static_int8():  # quantize the float weights afresh
            predictor = cls.load(directory, torch.device("cpu"), True)
        written = {sub: save_int8(model, directory / sub)
                   for sub, model in predictor_modules(predictor).items()}
        if has_manifest:
            write_manifest(directory)
        with ignoring_static_int8():
            reloaded = predictor_modules(cls.load(directory, torch.device("cpu"), True))
    except ArtifactError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for sub, model in predictor_modules(predictor).items():  # the service reads them back
        stored, again = int8_state(model)[0], int8_state(reloaded[sub])[0]
        if stored.keys() != again.keys() or not all(torch.equal(stored[k], again[k])
                                                    for k in stored):
            typer.echo(f"error: {written[sub]} did not load back identically", err=True)
            raise typer.Exit(1)
    typer.echo(json.dumps({str(out): {
        "layers": len(int8_state(predictor_modules(predictor)[sub])[1]),
        "bytes": sum(p.stat().st_size for p in out.iterdir()),
        "float_bytes": (directory / sub / "model.safetensors").stat().st_size,
    } for sub, out in written.items()}, indent=2))
    typer.echo(f"wrote {len(written)} {INT8_DIR}/ folder(s); serve them with "
               f"MODELZOO_QUANTIZE={task}")


def _quantize_static(task: str, artifact_dir: Path | None, data_root: Path | None,
                     calibration_images: int, seed: int, command: str) -> None:
    """``modelzoo quantize handwriting --static``: see :func:`quantize`."""
    from models.common.artifacts import ArtifactError
    from models.common.manifest import MANIFEST, verify_manifest, write_manifest
    from models.handwriting.quantize_static import format_static_report, measure_static

    if task != "handwriting":
        raise typer.BadParameter(f"--static is for handwriting's CNN only, not '{task}'")
    if calibration_images < 1:
        raise typer.BadParameter("--calibration-images must be at least 1")
    _setup_logging(False)
    directory = artifact_dir or artifacts_dir() / task
    has_manifest = (directory / MANIFEST).is_file()
    try:
        if has_manifest:
            verify_manifest(directory)
        info = measure_static(directory, data_root or data_dir() / "handwriting",
                              calibration_images, seed, command=command)
        if has_manifest:
            write_manifest(directory)
    except (ArtifactError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(format_static_report(info))
    typer.echo(f"wrote {directory / 'int8-static'}")


@app.command()
def serve(
    host: str = "0.0.0.0",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the models).")] = 1,
    log_level: str = "info",
) -> None:
    """Serve the API with uvicorn (settings from MODELZOO_* environment variables)."""
    import uvicorn

    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)


if __name__ == "__main__":
    app()
