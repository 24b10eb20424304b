"""The ``modelzoo`` command line on a tiny corpus."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from typer.testing import CliRunner

from models.cli import _command_line, app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("train", "evaluate", "serve"):
        assert command in result.output


def test_train_then_evaluate_a_pairs_file(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "w2v"
    result = runner.invoke(app, [
        "train", "word2vec", "--train-file", str(tiny_corpus), "--out-dir", str(out),
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--wordsim-dir", str(tmp_path / "none"),
        "--min-count", "1", "--embed-size", "8", "--epochs", "1", "--batch-size", "32",
    ])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["command"].startswith("modelzoo train word2vec")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("chip\tintel\t9\nchip\tbaby\t1\nmother\tchild\t8\nzzz\tchip\t3\n")
    result = runner.invoke(app, ["evaluate", "word2vec", "--artifact-dir", str(out),
                                 "--pairs-file", str(pairs), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["metrics"]["pairs.tsv"]
    assert metrics["pairs_used"] == 3 and metrics["pairs_total"] == 4
    assert -1.0 <= metrics["spearman"] <= 1.0


def test_command_line_repeats_the_flag_of_a_list_option_and_skips_defaults() -> None:
    probe = typer.Typer()
    seen: list[str] = []

    @probe.command()
    def run(ctx: typer.Context,
            label: Annotated[list[Path] | None, typer.Option()] = None,
            steps: int = 10, bf16: bool = False) -> None:
        seen.append(_command_line(ctx))

    result = runner.invoke(probe, ["--label", "a.tsv", "--label", "b c.tsv", "--bf16"])
    assert result.exit_code == 0, result.output
    assert shlex.split(seen[0])[1:] == ["--label", "a.tsv", "--label", "b c.tsv", "--bf16"]
