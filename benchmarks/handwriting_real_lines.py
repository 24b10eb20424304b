"""Greedy CER of CRNN artifacts on the held-out rows of a real line/word image folder.

The folder is one that ``modelzoo train handwriting --arch crnn --real-lines DIR`` takes
(``manifest.tsv``: path, text[, source]); its held-out rows are the ones training scores
(every 20th row, development pages dropped by md5 and text:
:func:`models.handwriting.train_crnn.real_val_batches`), cropped as the service crops a
line. Each artifact (``config.json`` + ``model.safetensors``, loaded as the service loads
it) is run in fp32 on the same batches in the same process, and its character error rate
(as written, and case-insensitive; greedy best path, no LM) is printed, with the ratio to
the first one.

    python benchmarks/handwriting_real_lines.py --real-lines DIR \\
        artifacts/handwriting/crnn [OTHER_ARTIFACT ...] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models.handwriting.linereader import LineReader
from models.handwriting.train_crnn import CRNNTrainConfig, real_val_batches, validate


def main() -> None:
    """Parse the arguments and print one row per artifact."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path, help="CRNN artifact folders")
    parser.add_argument("--real-lines", type=Path, required=True,
                        help="folder with manifest.tsv (path, text[, source])")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = CRNNTrainConfig(real_lines=args.real_lines)
    batches = real_val_batches(cfg)
    n = sum(len(batch[4]) for batch in batches)  # collate(): (images, lengths, ..., texts)
    print(f"{args.real_lines}: {n} held-out samples")
    first: float | None = None
    for art in args.artifacts:
        model = LineReader.load(art).model  # as served (its own config.json), fp32
        scores = validate(model, batches, torch.device("cpu"))
        first = scores["cer_nocase"] if first is None else first
        ratio = scores["cer_nocase"] / first if first else float("nan")
        print(f"{art}: CER {scores['cer']:.2%}, case-insensitive {scores['cer_nocase']:.2%} "
              f"({ratio:.2f}x the first)")


if __name__ == "__main__":
    main()
