"""Greedy CER of CRNN artifacts on the held-out rows of a real line/word image folder.

The folder is one that ``modelzoo train handwriting --arch crnn --real-lines DIR`` takes
(``manifest.tsv``: path, text[, source]); its held-out rows are the ones training scores
(every 20th row, development pages dropped by md5 and text:
:func:`models.handwriting.train_crnn.real_val_batches`), cropped as the service crops a
line. Each artifact (``config.json`` + ``model.safetensors``, loaded as the service loads
it) is run in fp32 on the same batches in the same process, and its character error rate
(as written, and case-insensitive; greedy best path, no LM) is printed, with the ratio to
the first one. ``--int8`` adds a row per artifact for its dynamic int8 model (LSTM and
Linear layers, as ``MODELZOO_QUANTIZE`` serves it). ``--lm`` adds a row per artifact for
decoding as the service decodes: CTC prefix beam search with the artifact's character LM
and its ``config.json`` decoding settings (``LineReader.decode``), fp32.

    python benchmarks/handwriting_real_lines.py --real-lines DIR \\
        artifacts/handwriting/crnn [OTHER_ARTIFACT ...] [--threads 1] [--int8] [--lm]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from models.handwriting.linereader import LineReader
from models.handwriting.metrics import character_error_rate
from models.handwriting.train_crnn import CRNNTrainConfig, real_val_batches, validate


def main() -> None:
    """Parse the arguments and print one row per artifact."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="+", type=Path, help="CRNN artifact folders")
    parser.add_argument("--real-lines", type=Path, required=True,
                        help="folder with manifest.tsv (path, text[, source])")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--int8", action="store_true", help="also score each int8 model")
    parser.add_argument("--lm", action="store_true",
                        help="also score beam search with each artifact's character LM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = CRNNTrainConfig(real_lines=args.real_lines)
    batches = real_val_batches(cfg)
    n = sum(len(batch[4]) for batch in batches)  # collate(): (images, lengths, ..., texts)
    print(f"{args.real_lines}: {n} held-out samples")
    first: float | None = None
    for art in args.artifacts:
        for int8 in (False, True) if args.int8 else (False,):
            # as served (its own config.json); fp32, or int8 as MODELZOO_QUANTIZE serves it
            model = LineReader.load(art, quantize=int8).model
            scores = validate(model, batches, torch.device("cpu"))
            first = scores["cer_nocase"] if first is None else first
            ratio = scores["cer_nocase"] / first if first else float("nan")
            print(f"{art}{' int8' if int8 else ''}: CER {scores['cer']:.2%}, case-insensitive "
                  f"{scores['cer_nocase']:.2%} ({ratio:.2f}x the first)")
        if args.lm:
            scores = beam_scores(LineReader.load(art), batches)
            print(f"{art} beam + LM: CER {scores['cer']:.2%}, case-insensitive "
                  f"{scores['cer_nocase']:.2%}")


@torch.inference_mode()
def beam_scores(reader: LineReader, batches: list[Any]) -> dict[str, float]:
    """CER (as written and case-insensitive) of ``reader.decode`` (beam search + LM, the
    artifact's settings) on the held-out batches; a line's log-probabilities are its first
    ``lengths[i]`` frames of the batch output (T, B, K)."""
    hyps: list[str] = []
    refs: list[str] = []
    for x, lengths, _, _, texts in batches:
        log_probs = reader.model(x, lengths)  # (T, B, K)
        for i, n in enumerate(lengths.tolist()):
            hyps.append(reader.decode(log_probs[:n, i].numpy())[0])
        refs += texts
    return {"cer": character_error_rate(hyps, refs),
            "cer_nocase": character_error_rate([h.upper() for h in hyps],
                                               [r.upper() for r in refs])}


if __name__ == "__main__":
    main()
