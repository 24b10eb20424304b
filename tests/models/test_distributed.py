"""Multi-process training under torchrun: DDP with the gloo backend, two CPU processes.

Each test launches ``python -m torch.distributed.run --nproc_per_node 2 --standalone -m
models.cli train <task> ...`` on tiny data and a tiny model, then checks that the run
succeeded, that rank 0 alone reported the artifact and that it loads with the task's
predictor, and that the ranks trained on different, complementary shards of the epoch:
every rank logs (``--verbose``) what it fed the model in each epoch.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from models.common.manifest import verify_manifest
from models.common.paths import REPO_ROOT
from models.lm.data import Corpus, batchify
from models.lm.predictor import LMPredictor
from models.lm.train import PRESETS
from models.translation.predictor import TranslationPredictor
from tests.conftest import write_tiny_corpus
from tests.models.translation.test_translation import TINY, TINY_VOCAB, synthetic_pairs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                       reason="this PyTorch build has no torch.distributed with the gloo "
                              "backend, which the two-process CPU runs need"),
]

WORLD = 2
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    """``modelzoo <args> --verbose`` in ``WORLD`` processes; fails the test on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--standalone", "-m", "models.cli", *args, "--verbose"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def summaries(stdout: str) -> list[dict]:
    """The JSON summaries the CLI printed (one per process that printed one)."""
    decoder, found, i = json.JSONDecoder(), [], stdout.find("{")
    while i != -1:
        obj, end = decoder.raw_decode(stdout, i)
        found.append(obj)
        i = stdout.find("{", end)
    return found


def shard_logs(stderr: str, pattern: str) -> dict[int, tuple[str, ...]]:
    """rank -> the groups of its epoch-1 debug line matching ``pattern``."""
    found = {int(m.group(1)): m.groups()[1:]
             for m in re.finditer(rf"rank (\d+)/{WORLD} epoch 1: {pattern}", stderr)}
    assert sorted(found) == list(range(WORLD)), stderr[-4000:]
    return found


def test_lm_ranks_train_on_disjoint_streams_and_rank0_writes_the_artifact(
    tmp_path: Path,
) -> None:
    corpus_file = write_tiny_corpus(tmp_path / "tiny.txt")
    batch, seq = 4, PRESETS["served"]["seq_length"]
    # what each rank must have fed the model in epoch 1: its 4 of the corpus' 8 streams
    streams = batchify(Corpus.load(corpus_file, corpus_file).train, batch * WORLD)
    expected = {r: streams[r * batch:(r + 1) * batch, :-1] for r in range(WORLD)}
    steps_per_epoch = len(range(0, streams.size(1) - 1, seq))
    max_steps = steps_per_epoch + 3  # a full epoch 1 (validation, checkpoint), then 3 steps
    out = tmp_path / "lm"
    result = torchrun(
        "train", "lm", "--train-file", str(corpus_file), "--valid-file", str(corpus_file),
        "--out-dir", str(out), "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--embed-size", "16", "--hidden-size", "16", "--batch-size", str(batch),
        "--epochs", "2", "--max-steps", str(max_steps), "--checkpoint-every", "0")

    [summary] = summaries(result.stdout)  # printed by rank 0 only
    assert summary["out_dir"] == str(out)
    logged = shard_logs(result.stderr, r"trained on (\d+) input tokens \(id sum (\d+)\)")
    for r in range(WORLD):
        assert (int(logged[r][0]), int(logged[r][1])) == (
            expected[r].numel(), int(expected[r].sum())), f"rank {r} trained on other tokens"
    assert logged[0] != logged[1]
    # together the ranks covered the corpus once, not once each
    assert sum(int(t) for t, _ in logged.values()) <= streams.numel()
    verify_manifest(out)
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["world_size"] == WORLD
    assert card["training"]["steps"] == max_steps
    assert [h["epoch"] for h in card["history"]] == [1]
    predictor = LMPredictor.load(out)
    assert len(predictor.dictionary) == len(Corpus.load(corpus_file, corpus_file).dictionary)
    tokens, _, perplexity, _ = predictor.score("the chip and the computer")
    assert len(tokens) == 6 and math.isfinite(perplexity)


def write_multi30k(folder: Path) -> Path:
    """``train`` (400 pairs) and ``val`` (40) in Multi30k's ``<split>.<lang>.gz`` layout."""
    folder.mkdir(parents=True)
    for split, n, seed in (("train", 400, 0), ("val", 40, 1)):
        pairs = synthetic_pairs(n, seed)
        for side, lang in enumerate(("de", "en")):
            with gzip.open(folder / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.write("".join(pair[side] + "\n" for pair in pairs))
    return folder


def test_translation_ranks_train_on_alternate_batches_and_rank0_writes_the_artifact(
    tmp_path: Path,
) -> None:
    n_train, max_steps = 400, 20
    out = tmp_path / "translation"
    result = torchrun(
        "train", "translation", "--data-dir", str(write_multi30k(tmp_path / "multi30k")),
        "--out-dir", str(out), "--checkpoint-dir", str(tmp_path / "ckpt"),
        "--vocab-size", str(TINY_VOCAB), "--max-tokens", "400", "--epochs", "2",
        "--max-steps", str(max_steps), "--model", json.dumps(TINY["transformer"]))

    [summary] = summaries(result.stdout)  # printed by rank 0 only
    assert summary["out_dir"] == str(out)
    logged = shard_logs(result.stderr, r"trained on (\d+) of (\d+) batches, (\d+) pairs, "
                                       r"\d+ target tokens \(source id sum (\d+)\)")
    n_batches = {int(b) for _, b, _, _ in logged.values()}
    assert len(n_batches) == 1  # every rank built the same list of batches
    total = n_batches.pop()
    assert total // WORLD < max_steps, "epoch 1 must be complete for the counts below"
    for mine, _, pairs, _ in logged.values():
        assert int(mine) == total // WORLD  # each rank its share, the same number of steps
        assert 0 < int(pairs) < n_train
    pairs_trained = sum(int(p) for _, _, p, _ in logged.values())
    # the shards are complementary: each pair once per epoch in all (an odd batch left out)
    assert pairs_trained == n_train if total % WORLD == 0 else pairs_trained < n_train
    assert logged[0][3] != logged[1][3]
    verify_manifest(out)
    card = json.loads((out / "card.json").read_text())
    assert card["training"]["world_size"] == WORLD
    assert card["training"]["steps"] == max_steps
    assert [h["epoch"] for h in card["history"]] == [1]
    predictor = TranslationPredictor.load(out)
    [translation] = predictor.translate(["Ein Mann fährt ein Fahrrad im Park."], beam_size=1)
    assert isinstance(translation.text, str)
