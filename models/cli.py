"""The ``modelzoo`` command line: train, evaluate and serve.

``modelzoo train <task>``, ``modelzoo evaluate <task>``, ``modelzoo serve``.
"""

from __future__ import annotations

import json
import logging
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
app.add_typer(evaluate_app, name="evaluate")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


@train_app.command("word2vec")
def train_word2vec(
    ctx: typer.Context,
    train_file: Annotated[Path | None, typer.Option(help="PTB-format training text.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Artifact directory to write.")] = None,
    checkpoint_dir: Path = Path("runs/word2vec"),
    wordsim_dir: Annotated[Path | None, typer.Option(help="Benchmarks for the card.")] = None,
    embed_size: int = 100,
    min_count: int = 5,
    subsample_t: float = 1e-4,
    max_window_size: int = 5,
    num_noise_words: int = 5,
    batch_size: int = 512,
    lr: float = 0.005,
    lr_schedule: str = "linear",
    optimizer: Annotated[
        str, typer.Option(help="sparse_adam (lazy Adam) | adam (dense, the tutorial's) | sgd")
    ] = "sparse_adam",
    epochs: int = 20,
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
    checkpoint_every: int = 2000,
    resume: bool = False,
    max_steps: int | None = None,
    verbose: bool = False,
) -> None:
    """Train skip-gram word2vec (negative sampling, subsampling) on PTB."""
    from models.word2vec.train import TrainConfig, train

    _setup_logging(verbose)
    cfg = TrainConfig(
        train_file=train_file or data_dir() / "ptb" / "ptb.train.txt",
        out_dir=out_dir or artifacts_dir() / "word2vec",
        checkpoint_dir=checkpoint_dir,
        wordsim_dir=wordsim_dir or data_dir() / "wordsim",
        embed_size=embed_size, min_count=min_count, subsample_t=subsample_t,
        max_window_size=max_window_size, num_noise_words=num_noise_words,
        batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,  # type: ignore[arg-type]
        optimizer=optimizer,  # type: ignore[arg-type]
        epochs=epochs, seed=seed, bf16=bf16, device=device,
        checkpoint_every=checkpoint_every, resume=resume, max_steps=max_steps,
        command=_command_line(ctx),
    )
    card = train(cfg)
    typer.echo(json.dumps({"out_dir": str(cfg.out_dir), "metrics": card["metrics"],
                           "wall_time_s": card["training"]["wall_time_s"]}, indent=2))


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
    batch_size: Annotated[int | None, typer.Option(help="Override the preset's batch.")] = None,
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
    """Train the LSTM language model (truncated BPTT) on PTB."""
    from models.lm.train import TrainConfig, train

    _setup_logging(verbose)
    overrides = {k: v for k, v in {"epochs": epochs, "lr": lr, "batch_size": batch_size}.items()
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
    typer.echo(json.dumps({"out_dir": str(cfg.out_dir), "metrics": card["metrics"],
                           "wall_time_s": card["training"]["wall_time_s"]}, indent=2))


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
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder with the handwriting/*.npz archives.")] = None,
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
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
    resume: bool = False,
    max_steps: int | None = None,
    verbose: bool = False,
) -> None:
    """Train the letter classifier on the shared handwriting sets (train splits)."""
    from models.handwriting.train import TrainConfig, train

    _setup_logging(verbose)
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
    typer.echo(json.dumps({"out_dir": str(cfg.out_dir), "metrics": card["metrics"],
                           "wall_time_s": card["training"]["wall_time_s"]}, indent=2))


@evaluate_app.command("handwriting")
def evaluate_handwriting(
    artifact_dir: Annotated[Path | None, typer.Option(help="Artifact to evaluate.")] = None,
    data_dir_: Annotated[Path | None, typer.Option(
        "--data-dir", help="Folder with the handwriting/*.npz archives.")] = None,
    sets: Annotated[str | None, typer.Option(
        help="Comma list of archives to score (default: every 64x64 set).")] = None,
    pages: Annotated[list[Path] | None, typer.Option(
        help="Folder of page images with labels.jsonl; repeatable.")] = None,
    synth: Annotated[int, typer.Option(
        help="Also compose this many pages per difficulty from test letters and score them.")
    ] = 0,
    synth_dir: Annotated[Path, typer.Option(help="Where composed pages are written.")] = Path(
        "runs/handwriting-pages"),
    difficulty: Annotated[str, typer.Option(help="clean,realistic (comma list)")] = (
        "clean,realistic"),
    seed: int = 0,
) -> None:
    """Letter accuracy per test split (writer-disjoint sets first) with the most confused
    pairs; with --pages/--synth, character error rate and word accuracy on whole pages."""
    from models.handwriting.data import SETS_64, LabelSet, load_sets
    from models.handwriting.evaluate import (
        format_page_score,
        format_scores,
        score_pages,
        score_sets,
    )
    from models.handwriting.predictor import HandwritingPredictor
    from models.handwriting.synth import make_eval_set

    predictor = HandwritingPredictor.load(artifact_dir or artifacts_dir() / "handwriting")
    root = data_dir_ or data_dir() / "handwriting"
    names = tuple(sets.split(",")) if sets else SETS_64
    label_set = LabelSet(predictor.card.get("labels", "letters").split(":")[0],
                         tuple(predictor.classes))
    test = load_sets(root, names, 1, label_set)
    typer.echo(format_scores(score_sets(predictor.model, test, label_set, predictor.image_size)))
    folders = list(pages or [])
    for level in (d for d in difficulty.split(",") if synth):
        folders.append(make_eval_set(synth_dir, synth, seed, level, data_dir=root,
                                     overwrite=True))
    for folder in folders:
        typer.echo(format_page_score(score_pages(predictor, folder)))


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
    max_tokens: Annotated[int | None, typer.Option(help="Target tokens per batch.")] = None,
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
    checkpoint_every: int = 200,
    resume: bool = False,
    max_steps: int | None = None,
    verbose: bool = False,
) -> None:
    """Train a German→English model on Multi30k (tokenizer trained on train only)."""
    from models.translation.train import TrainConfig, train

    _setup_logging(verbose)
    cfg = TrainConfig.from_arch(
        arch, data_dir=data_dir_ or data_dir() / "multi30k",
        out_dir=out_dir or artifacts_dir() / "translation", checkpoint_dir=checkpoint_dir,
        vocab_size=vocab_size, epochs=epochs, lr=lr, max_tokens=max_tokens, seed=seed,
        bf16=bf16, device=device, checkpoint_every=checkpoint_every, resume=resume,
        max_steps=max_steps, command=_command_line(ctx),
    )
    card = train(cfg)
    typer.echo(json.dumps({"out_dir": str(cfg.out_dir), "metrics": card["metrics"],
                           "wall_time_s": card["training"]["wall_time_s"]}, indent=2))


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
