"""Corpus BLEU and chrF with sacreBLEU (Post 2018) on detokenized output, and file translation.

Scores are computed on raw (cleaned) references with sacreBLEU's defaults: BLEU with the
``13a`` tokenizer, cased, exponential smoothing; chrF with character 6-grams, beta 2. The
signature strings say exactly that, so the figures are comparable across papers.
"""

from __future__ import annotations

import logging
from typing import Any

from sacrebleu.metrics import BLEU, CHRF
from tqdm import tqdm

from models.translation.predictor import TranslationPredictor

log = logging.getLogger(__name__)


def bleu_chrf(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus BLEU and chrF of one system output against one reference per sentence.

    Returns:
        ``{"bleu", "chrf"}`` (0–100 floats), ``"bleu_signature"``, ``"chrf_signature"``
        (sacreBLEU signature strings), ``"bleu_detail"`` (the sacreBLEU score line with
        n-gram precisions, brevity penalty, lengths) and ``"sentences"``.

    Raises:
        ValueError: different numbers of hypotheses and references, or none.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise ValueError("no sentences to score")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(float(bleu_score.score), 2),
        "chrf": round(float(chrf_score.score), 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "bleu_detail": str(bleu_score),
        "sentences": len(references),
    }


def translate_file(predictor: TranslationPredictor, src_lines: list[str], beam_size: int = 5,
                   batch_size: int = 32, length_penalty: float = 0.6,
                   progress: bool = True) -> list[str]:
    """Translate a file's sentences (one a line) in chunks of ``batch_size`` sentences
    (each chunk length-sorted inside the predictor); blank lines give blank outputs.

    Args:
        predictor: the loaded translator.
        src_lines: German sentences, one per output line.
        beam_size: 1 = greedy decoding.
        batch_size: sentences decoded together.
        length_penalty: GNMT ``alpha`` for ranking beam hypotheses.
        progress: show a tqdm bar.

    Returns:
        One English line per source line, in order.
    """
    out = [""] * len(src_lines)
    todo = [i for i, line in enumerate(src_lines) if line.strip()]
    # big chunks so the predictor's length sorting works over many sentences at once
    chunk = max(batch_size, 1) * 16
    for start in tqdm(range(0, len(todo), chunk), desc="translate", disable=not progress,
                      leave=False):
        idx = todo[start:start + chunk]
        results = predictor.translate([src_lines[i] for i in idx], beam_size=beam_size,
                                      length_penalty=length_penalty, batch_size=batch_size)
        for i, r in zip(idx, results, strict=True):
            out[i] = r.text
    return out
