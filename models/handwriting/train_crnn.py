"""Train the CRNN line recognizer with CTC on composed lines (``modelzoo train handwriting
--arch crnn``).

Lines come from :class:`models.handwriting.linesynth.LineSynthesizer` (real letter crops of
the archives' **train** splits and handwriting fonts, photographed and preprocessed like
uploads), drawn fresh every step in a background worker. AdamW with a one-cycle schedule
(Smith & Topin 2019), bf16 autocast on CPU when asked, gradient clipping, ``nn.CTCLoss``
(Graves et al. 2006). A checkpoint (``checkpoint_dir/last.pt``, tensors only) is written every
``checkpoint_every`` steps; ``resume`` continues from it with the same data stream. The
validation lines (composed from the **test**-split letters with Penn Treebank *valid* text)
are scored by greedy-decoding character error rate for monitoring only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from tqdm import tqdm

from models.common.artifacts import git_commit, save_artifact
from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.common.config import training_record
from models.common.device import hardware_summary, resolve_device
from models.common.manifest import write_manifest
from models.common.paths import artifacts_dir, data_dir
from models.common.seeding import seed_everything
from models.handwriting.charlm import LM_SOURCES, CharNgramLM, english_corpus, ptb_lines
from models.handwriting.crnn import CRNN
from models.handwriting.linereader import LM_FILE
from models.handwriting.linesynth import (
    ALPHABET,
    DEFAULT_NUMBER_SHARE,
    DEFAULT_UPPER_SHARE,
    FontBank,
    LetterBank,
    LineSynthesizer,
    crop_to_height,
    english_lines,
    find_fonts,
)
from models.handwriting.metrics import character_error_rate
from models.handwriting.reallines import RealLineBank

log = logging.getLogger(__name__)

CHAR_TO_CLASS = {c: i + 1 for i, c in enumerate(ALPHABET)}  # 0 = CTC blank


#: how the card names each LM corpus
LM_TEXT_NAMES = {"ptb": "PTB train", "multi30k": "Multi30k English train",
                 "wikiqa": "WikiQA train questions and sentences"}


@dataclass
class CRNNTrainConfig:
    """Every knob of a CRNN training run (paths default under ``MODELZOO_DATA_DIR``)."""

    data_dir: Path = field(default_factory=data_dir)
    out_dir: Path = field(default_factory=lambda: artifacts_dir() / "handwriting" / "crnn")
    checkpoint_dir: Path = Path("runs/handwriting-crnn")
    fonts_dir: Path = Path("/usr/share/fonts")
    use_fonts: bool = True
    use_letters: bool = True
    font_share: float = 0.5
    #: share of composed line texts in all capitals (LineSynthesizer.upper_share)
    upper_share: float = DEFAULT_UPPER_SHARE
    #: share of letter-crop lines with their letters written well apart
    apart_share: float = 0.0
    #: share of composed line texts given written numbers (TextSampler.number_share)
    number_share: float = DEFAULT_NUMBER_SHARE
    steps: int = 12000
    batch_size: int = 32
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    hidden: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 96, 128)
    max_width: int = 800
    seed: int = 0
    bf16: bool = False
    workers: int = 1
    threads: int = 0  # torch CPU threads of the training process; 0 = torch's default
    device: str = "auto"
    checkpoint_every: int = 250
    eval_every: int = 1000
    val_lines: int = 300
    lm_order: int = 7
    lm_min_count: int = 3
    #: corpora of the character LM (:func:`models.handwriting.charlm.english_corpus`)
    lm_sources: tuple[str, ...] = LM_SOURCES
    beam_size: int = 8
    lm_weight: float = 0.5
    insertion_bonus: float = 1.0
    resume: bool = False
    max_steps: int | None = None
    command: str = ""
    #: folder with manifest.tsv of real line/word images (:mod:`models.handwriting.reallines`)
    real_lines: Path | None = None
    real_share: float = 0.5
    #: labels.tsv files of evaluation images never to train on (besides handwriting-pages)
    exclude_labels: tuple[Path, ...] = ()
    #: a CRNN artifact folder whose weights start the run (fine-tuning); None = random init
    init_from: Path | None = None
    warmup_pct: float = 0.05


def encode_text(text: str) -> list[int]:
    """Class indices of ``text`` (characters outside :data:`ALPHABET` are dropped)."""
    return [CHAR_TO_CLASS[c] for c in text if c in CHAR_TO_CLASS]


def collate(samples: list[tuple[np.ndarray, str]], max_width: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Pad lines into a batch.

    Args:
        samples: (float32 (32, W_i) ink map, text) pairs.
        max_width: lines wider than this are squeezed to it.

    Returns:
        images float32 (B, 1, 32, W) zero-padded (W a multiple of 4), output lengths int64
        (B,) (``W_i // 4``), concatenated targets int64 (sum L_i,), target lengths int64 (B,),
        and the texts.
    """
    import cv2

    lines = [x if x.shape[1] <= max_width else
             cv2.resize(x, (max_width, x.shape[0]), interpolation=cv2.INTER_AREA)
             for x, _ in samples]
    width = max(4, -(-max(x.shape[1] for x in lines) // 4) * 4)
    batch = np.zeros((len(lines), 1, lines[0].shape[0], width), np.float32)
    for i, x in enumerate(lines):
        batch[i, 0, :, :x.shape[1]] = x
    texts = [t for _, t in samples]
    targets = [encode_text(t) for t in texts]
    return (torch.from_numpy(batch),
            torch.tensor([x.shape[1] // 4 for x in lines], dtype=torch.int64),
            torch.tensor([c for t in targets for c in t], dtype=torch.int64),
            torch.tensor([len(t) for t in targets], dtype=torch.int64), texts)


class _LineStream(IterableDataset):
    """Endless batches from a :class:`LineSynthesizer`, seeded by (seed, start step)."""

    def __init__(self, cfg: CRNNTrainConfig, start_step: int) -> None:
        self.cfg, self.start_step = cfg, start_step

    def __iter__(self) -> Iterator[Any]:
        import cv2

        cv2.setNumThreads(1)  # one core per composing worker
        cfg = self.cfg
        synth = build_synthesizer(cfg, split=0, text_file="train")
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([cfg.seed, self.start_step, wid])
        while True:  # 4 batches at a time, of lines of similar width (less padding)
            pool = sorted((synth.sample(rng) for _ in range(4 * cfg.batch_size)),
                          key=lambda s: s[0].shape[1])
            for k in rng.permutation(4):
                yield collate(pool[k * cfg.batch_size:(k + 1) * cfg.batch_size], cfg.max_width)


def build_synthesizer(cfg: CRNNTrainConfig, split: int, text_file: str) -> LineSynthesizer:
    """The line synthesizer for one split: letters of archive ``split``, English text from
    PTB ``text_file`` ("train": PTB + Multi30k train; "valid": PTB valid only). The
    validation lines keep the default mix (``DEFAULT_UPPER_SHARE``, no letters written apart),
    so runs with other shares are scored on the same kind of lines.

    Raises:
        FileNotFoundError: no text, or no glyph source.
    """
    if text_file == "train":
        sentences = english_lines(cfg.data_dir)
    else:
        path = cfg.data_dir / "ptb" / "ptb.valid.txt"
        sentences = [" ".join(w for w in line.split() if w != "<unk>")
                     for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bank = LetterBank.load(cfg.data_dir / "handwriting", split=split) if cfg.use_letters else None
    fonts = FontBank(find_fonts(cfg.fonts_dir)) if cfg.use_fonts else None
    if fonts is not None and not fonts.paths:
        log.warning("no handwriting fonts under %s (apt-get install fonts-dkg-handwriting "
                    "fonts-dancingscript ...); training on letter crops only", cfg.fonts_dir)
        fonts = None
    train = split == 0
    real = real_bank(cfg, "train") if cfg.real_lines is not None and train else None
    return LineSynthesizer(sentences, bank, fonts, height=32, font_share=cfg.font_share,
                           real=real, real_share=cfg.real_share,
                           upper_share=cfg.upper_share if train else DEFAULT_UPPER_SHARE,
                           apart_share=cfg.apart_share if train else 0.0,
                           number_share=cfg.number_share if train else DEFAULT_NUMBER_SHARE)


def real_bank(cfg: CRNNTrainConfig, split: str) -> RealLineBank:
    """The real line/word images of ``cfg.real_lines`` (``split``: train | val), minus the
    development pages (``handwriting-pages/labels.tsv`` and ``cfg.exclude_labels``).

    Raises:
        FileNotFoundError, ValueError: see :meth:`RealLineBank.load`.
    """
    assert cfg.real_lines is not None
    exclude = [cfg.data_dir / "handwriting-pages" / "labels.tsv", *cfg.exclude_labels]
    return RealLineBank.load(cfg.real_lines, ALPHABET, exclude=exclude, split=split)


def real_val_batches(cfg: CRNNTrainConfig, limit: int = 300) -> list[Any]:
    """Held-out real samples (every 20th row of the manifest), cropped as the service crops
    a line (no augmentation), in batches of 50; [] without ``cfg.real_lines``."""
    if cfg.real_lines is None:
        return []
    bank = real_bank(cfg, "val")
    samples = [(crop_to_height(bank.ink(i), 32), bank.texts[i])
               for i in range(min(limit, len(bank)))]
    return [collate(samples[k:k + 50], cfg.max_width) for k in range(0, len(samples), 50)]


def load_init_weights(model: CRNN, artifact_dir: Path) -> None:
    """Copy the weights of a CRNN artifact (``model.safetensors``, any float dtype) into
    ``model``.

    Raises:
        FileNotFoundError: no ``model.safetensors`` there.
        RuntimeError: the shapes do not fit (another alphabet or size).
    """
    from safetensors.torch import load_file

    path = artifact_dir / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"--init-from {artifact_dir}: no model.safetensors")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(path).items()}
    model.load_state_dict(state)


def greedy_texts(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Best-path decoding of a batch: log_probs float (T, B, K), lengths int (B,)."""
    best = log_probs.argmax(-1).T.cpu().numpy()  # (B, T)
    out = []
    for row, n in zip(best, lengths.tolist(), strict=True):
        prev, chars = 0, []
        for k in row[:n]:
            if k != prev and k != 0:
                chars.append(ALPHABET[k - 1])
            prev = k
        out.append("".join(chars))
    return out


@torch.inference_mode()
def validate(model: CRNN, batches: list[Any], device: torch.device) -> dict[str, float]:
    """Greedy CER on fixed validation batches, case-sensitive and case-insensitive."""
    model.eval()
    hyps, refs = [], []
    for x, lengths, _, _, texts in batches:
        hyps += greedy_texts(model(x.to(device), lengths), lengths)
        refs += texts
    model.train()
    return {"cer": round(character_error_rate(hyps, refs), 4),
            "cer_nocase": round(character_error_rate([h.upper() for h in hyps],
                                                     [r.upper() for r in refs]), 4)}


def train_crnn(cfg: CRNNTrainConfig) -> dict[str, Any]:
    """Train, checkpoint, validate; write the artifact (float16 weights) and return its card.

    Raises:
        FileNotFoundError: datasets missing.
    """
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = CRNN(len(ALPHABET) + 1, channels=cfg.channels, hidden=cfg.hidden)
    if cfg.init_from is not None and not cfg.resume:
        load_init_weights(model, cfg.init_from)
        log.info("starting from the weights of %s", cfg.init_from)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr,
                                                    total_steps=cfg.steps,
                                                    pct_start=cfg.warmup_pct)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    progress: dict[str, Any] = {"global_step": 0, "elapsed": 0.0, "history": []}
    ckpt_path = cfg.checkpoint_dir / "last.pt"
    state = load_checkpoint(ckpt_path) if cfg.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = state["progress"]
        log.info("resumed at step %d", progress["global_step"])
    val_synth = build_synthesizer(cfg, split=1, text_file="valid")
    val_rng = np.random.default_rng([cfg.seed, 1])
    val = [collate([val_synth.sample(val_rng) for _ in range(50)], cfg.max_width)
           for _ in range(max(1, cfg.val_lines // 50))]
    real_val = real_val_batches(cfg)
    loader = DataLoader(_LineStream(cfg, progress["global_step"]), batch_size=None,
                        num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None,
                        # spawn, not fork: a forked worker can deadlock on the OpenCV/OpenMP
                        # thread pools the parent already started (seen here)
                        multiprocessing_context="spawn" if cfg.workers else None,
                        persistent_workers=False)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                else contextlib.nullcontext())
    last = cfg.steps if cfg.max_steps is None else min(cfg.steps, cfg.max_steps)
    t0 = time.perf_counter()
    bar = tqdm(total=last, initial=progress["global_step"], desc="crnn", mininterval=10)
    running = 0.0
    model.train()
    for x, lengths, targets, target_lengths, _ in loader:
        if progress["global_step"] >= last:
            break
        with autocast:
            log_probs = model(x.to(device), lengths)
        loss = ctc(log_probs.float(), targets, lengths, target_lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        progress["global_step"] += 1
        step = progress["global_step"]
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}")
        if step % cfg.eval_every == 0 or step == last:
            scores = validate(model, val, device)
            if real_val:
                scores |= {f"real_{k}": v for k, v in validate(model, real_val, device).items()}
            progress["history"].append({"step": step, "loss": round(running, 4), **scores,
                                        "elapsed_s": round(progress["elapsed"]
                                                           + time.perf_counter() - t0, 1)})
            log.info("step %d: %s", step, progress["history"][-1])
        if step % cfg.checkpoint_every == 0 or step == last:
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "progress": {**progress, "elapsed": progress["elapsed"]
                             + time.perf_counter() - t0}})
    bar.close()
    wall = progress["elapsed"] + time.perf_counter() - t0
    return write_crnn_artifact(model, cfg, progress, wall, val, device, real_val)


def write_crnn_artifact(model: CRNN, cfg: CRNNTrainConfig, progress: dict[str, Any],
                        wall_s: float, val: list[Any], device: torch.device,
                        real_val: list[Any] | None = None) -> dict[str, Any]:
    """Round weights to float16, score the validation lines with exactly those weights, train
    the character LM (``cfg.lm_sources``: PTB train, Multi30k English train, WikiQA train),
    write ``model.safetensors`` + ``config.json`` (with the decoding settings) +
    ``card.json`` + ``charlm.npz`` into
    ``cfg.out_dir`` and refresh the manifest of the handwriting artifact folder above it."""
    model = model.cpu().eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    scores = validate(model, val, torch.device("cpu"))
    real_scores = validate(model, real_val, torch.device("cpu")) if real_val else {}
    lm = CharNgramLM.train(english_corpus(cfg.data_dir, cfg.lm_sources), order=cfg.lm_order,
                           min_count=cfg.lm_min_count, alphabet=ALPHABET)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    lm.save(cfg.out_dir / LM_FILE)
    lm_ppl = lm.perplexity(ptb_lines(cfg.data_dir / "ptb" / "ptb.valid.txt"))
    config = {"arch": "crnn", "model": model.config.to_dict(), "alphabet": ALPHABET,
              "blank": 0, "input": "ink map, float32 (1, 32, W), ink bright on black in [0, 1]",
              "decode": {"beam_size": cfg.beam_size, "lm_weight": cfg.lm_weight,
                         "insertion_bonus": cfg.insertion_bonus}}
    card = {
        "task": "handwriting",
        "name": "lines-crnn",
        "arch": "CRNN (Shi et al. 2015) + CTC",
        "labels": f"blank + {ALPHABET!r} (case-aware)",
        "dataset": {"name": "composed lines: shared handwriting letter crops (split==0) and "
                    "handwriting fonts; text from PTB train + Multi30k English train"
                    + (f"; plus real line/word images of {cfg.real_lines.name}/manifest.tsv "
                       f"(share {cfg.real_share}, every 20th row held out)"
                       if cfg.real_lines is not None else ""),
                    "validation": "composed lines from split==1 letters, PTB valid text"},
        "metrics": {"synthetic_val_cer_greedy": scores["cer"],
                    "synthetic_val_cer_nocase_greedy": scores["cer_nocase"],
                    **({"real_val_cer_greedy": real_scores["cer"],
                        "real_val_cer_nocase_greedy": real_scores["cer_nocase"]}
                       if real_scores else {})},
        "language_model": {"kind": "character n-gram, interpolated Kneser-Ney",
                           "order": cfg.lm_order, "min_count": cfg.lm_min_count,
                           "text": " + ".join(LM_TEXT_NAMES[k] for k in cfg.lm_sources),
                           "ptb_valid_perplexity_per_char": round(lm_ppl, 3),
                           "bytes": (cfg.out_dir / LM_FILE).stat().st_size},
        "history": progress["history"],
        "training_command": cfg.command,
        "training": {**training_record(cfg, ("data_dir", "out_dir", "checkpoint_dir", "resume",
                                             "command", "fonts_dir", "exclude_labels")),
                     "exclude_labels": [str(p) for p in cfg.exclude_labels],
                     "steps": progress["global_step"], "wall_time_s": round(wall_s, 1),
                     "hardware": hardware_summary(),
                     "fonts": [p.name for p in find_fonts(cfg.fonts_dir)] if cfg.use_fonts
                     else []},
        "params": sum(p.numel() for p in model.parameters()),
        "weights_dtype": "float16",
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_artifact(cfg.out_dir, tensors, config, card)
    if (cfg.out_dir.parent / "manifest.json").is_file():
        write_manifest(cfg.out_dir.parent)
    log.info("wrote %s (synthetic val CER %.4f)", cfg.out_dir, scores["cer"])
    return card
