"""CTC decoding and int8 for the CRNN line recognizer, measured on held-out composed lines.

Composes ``--lines`` validation lines exactly as training validates (letters of the
archives' **test** split and the installed handwriting fonts, Penn Treebank *valid* text;
``models.handwriting.train_crnn.build_synthesizer(split=1, text_file="valid")``), runs the
CRNN once per line (fp32, then dynamic int8 of its LSTM and Linear layers, in the same
process), and prints the character error rate (as written, and case-insensitive) of:
greedy best path, prefix beam search without the language model, and beam search with the
character n-gram LM over a grid of LM weight (alpha) and insertion bonus (beta); plus the
CRNN's milliseconds per line, fp32 vs int8.

    python benchmarks/handwriting_decode.py [--artifact-dir artifacts/handwriting/crnn]
        [--lines 300] [--beam 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from models.common.paths import artifacts_dir, data_dir
from models.handwriting.ctc import beam_search, greedy_decode
from models.handwriting.linereader import LineReader
from models.handwriting.metrics import character_error_rate
from models.handwriting.train_crnn import CRNNTrainConfig, build_synthesizer

ALPHAS = (0.0, 0.3, 0.5, 0.8, 1.2)
BETAS = (0.0, 0.5, 1.0, 2.0)


def cer_pair(hyps: list[str], refs: list[str]) -> str:
    nocase = character_error_rate([h.upper() for h in hyps], [r.upper() for r in refs])
    return f"{100 * character_error_rate(hyps, refs):6.2f}%  {100 * nocase:6.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact-dir", type=Path,
                        default=artifacts_dir() / "handwriting" / "crnn")
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    synth = build_synthesizer(CRNNTrainConfig(data_dir=args.data_dir), split=1,
                              text_file="valid")
    rng = np.random.default_rng([0, args.seed])
    samples = [synth.sample(rng) for _ in range(args.lines)]
    crops, refs = [s[0] for s in samples], [s[1] for s in samples]
    print(f"{len(refs)} composed validation lines (test-split letters + fonts, PTB valid "
          f"text), {sum(map(len, refs))} characters; CER as written, case-insensitive")
    readers = {"fp32": LineReader.load(args.artifact_dir),
               "int8": LineReader.load(args.artifact_dir, quantize=True)}
    lps: dict[str, list[np.ndarray]] = {}
    for name, reader in readers.items():
        reader.log_probs(crops[:4])  # warm-up
        t0 = time.perf_counter()
        lps[name] = reader.log_probs(crops)
        ms = 1000 * (time.perf_counter() - t0) / len(crops)
        alphabet = reader.alphabet
        greedy = ["".join(alphabet[k - 1] for k, _ in greedy_decode(lp)) for lp in lps[name]]
        width = np.mean([c.shape[1] for c in crops])
        print(f"{name}: CRNN {ms:.1f} ms/line (mean width {width:.0f} px); greedy CER "
              f"{cer_pair(greedy, refs)}")
    fp32 = readers["fp32"]
    full = "\x00" + fp32.alphabet
    t0 = time.perf_counter()
    plain = [beam_search(lp, full, beam_size=args.beam).text for lp in lps["fp32"]]
    ms = 1000 * (time.perf_counter() - t0) / len(refs)
    print(f"beam {args.beam}, no LM: CER {cer_pair(plain, refs)}  ({ms:.1f} ms/line)")
    if fp32.lm is None:
        print("no charlm.npz in the artifact: LM grid skipped")
        return
    print(f"beam {args.beam} + char LM (order {fp32.lm.order}):  alpha  beta   CER   CER no-case"
          "  ms/line")
    for alpha in ALPHAS:
        for beta in BETAS:
            t0 = time.perf_counter()
            hyps = [beam_search(lp, full, beam_size=args.beam, lm=fp32.lm, alpha=alpha,
                                beta=beta).text for lp in lps["fp32"]]
            ms = 1000 * (time.perf_counter() - t0) / len(refs)
            star = "*" if (alpha, beta) == (fp32.lm_weight, fp32.insertion_bonus) else " "
            print(f"{star:>34}{alpha:5.1f} {beta:5.1f}  {cer_pair(hyps, refs)}  {ms:6.1f}")
    int8 = [beam_search(lp, full, beam_size=args.beam, lm=fp32.lm, alpha=fp32.lm_weight,
                        beta=fp32.insertion_bonus).text for lp in lps["int8"]]
    print(f"int8 with the served decoding (alpha {fp32.lm_weight}, beta "
          f"{fp32.insertion_bonus}): CER {cer_pair(int8, refs)}")


if __name__ == "__main__":
    main()
