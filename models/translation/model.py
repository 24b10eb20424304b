"""Encoder–decoder translation models sharing one decoding interface.

Both models expose

* ``encode(src) -> dict[str, Tensor]``: encoder state, **batch in dim 0** of every tensor,
  so beam search can ``index_select`` it;
* ``decode(tgt_in, enc) -> logits``: next-token logits for every prefix position.

``decode`` recomputes the whole prefix each call (no incremental cache): simple and exact,
and cheap for Multi30k's short sentences.
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn

from models.translation.data import PAD

Enc = dict[str, torch.Tensor]


class Seq2SeqLSTM(nn.Module):
    """The seed tutorial's model (bentrevett/pytorch-seq2seq part 1; Sutskever et al. 2014):
    a multi-layer LSTM encoder whose final (hidden, cell) is the context vector, and an LSTM
    decoder initialised with it, trained with teacher forcing at ``teacher_forcing_ratio``.

    Args:
        vocab_size: shared source/target vocabulary size.
        embed_size: 256 in the tutorial.
        hidden_size: 512 in the tutorial.
        num_layers: 2 in the tutorial.
        dropout: 0.5 in the tutorial (embeddings and between LSTM layers).
    """

    def __init__(self, vocab_size: int, embed_size: int = 256, hidden_size: int = 512,
                 num_layers: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(vocab_size, embed_size, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(vocab_size, embed_size, padding_idx=PAD)
        self.encoder = nn.LSTM(embed_size, hidden_size, num_layers, dropout=dropout,
                               batch_first=True)
        self.decoder = nn.LSTM(embed_size, hidden_size, num_layers, dropout=dropout,
                               batch_first=True)
        self.fc_out = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def encode(self, src: torch.Tensor) -> Enc:
        """``src`` int64 (B, S) → context ``hidden``, ``cell`` float (B, L, H).

        Padding is packed away, so the context is the state after each sentence's last token.
        """
        lengths = (src != PAD).sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(self.src_embed(src)), lengths,
                                                   batch_first=True, enforce_sorted=False)
        _, (hidden, cell) = self.encoder(packed)             # (L, B, H) each
        return {"hidden": hidden.transpose(0, 1), "cell": cell.transpose(0, 1)}

    def decode(self, tgt_in: torch.Tensor, enc: Enc, last_only: bool = False) -> torch.Tensor:
        """``tgt_in`` int64 (B, T) (starting with ``<s>``) → logits float (B, T, V), or
        (B, 1, V) for the last position only when ``last_only`` (decoding)."""
        state = (enc["hidden"].transpose(0, 1).contiguous(),
                 enc["cell"].transpose(0, 1).contiguous())
        out, _ = self.decoder(self.dropout(self.tgt_embed(tgt_in)), state)
        return self.fc_out(out[:, -1:] if last_only else out)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing_ratio: float = 1.0) -> torch.Tensor:
        """Training pass → logits (B, T, V). With ``teacher_forcing_ratio`` < 1 each step
        feeds, with that probability, the true previous token, else the model's own argmax
        (the tutorial's loop)."""
        enc = self.encode(src)
        if teacher_forcing_ratio >= 1.0:
            return self.decode(tgt_in, enc)
        state = (enc["hidden"].transpose(0, 1).contiguous(),
                 enc["cell"].transpose(0, 1).contiguous())
        token, outputs = tgt_in[:, :1], []
        for t in range(tgt_in.size(1)):
            out, state = self.decoder(self.dropout(self.tgt_embed(token)), state)
            logits = self.fc_out(out)                          # (B, 1, V)
            outputs.append(logits)
            if t + 1 < tgt_in.size(1):
                teacher = random.random() < teacher_forcing_ratio
                token = tgt_in[:, t + 1:t + 2] if teacher else logits.argmax(-1)
        return torch.cat(outputs, dim=1)


class PositionalEncoding(nn.Module):
    """Sinusoidal positions (Vaswani et al. 2017, §3.5), added to scaled embeddings."""

    pe: torch.Tensor

    def __init__(self, d_model: int, max_len: int = 512) -> None:
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.size(1)]


class TransformerNMT(nn.Module):
    """A pre-norm Transformer encoder–decoder (Vaswani et al. 2017; pre-norm as in Xiong et
    al. 2020) with one embedding matrix shared by source, target and output (Press & Wolf
    2017), the tutorial series' part 6 model made small enough for CPU training.

    Args:
        vocab_size: joint SentencePiece vocabulary size.
        d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout:
            as in ``nn.Transformer``.
        max_len: longest sequence (positions).
    """

    def __init__(self, vocab_size: int, d_model: int = 256, nhead: int = 4,
                 num_encoder_layers: int = 3, num_decoder_layers: int = 3,
                 dim_feedforward: int = 1024, dropout: float = 0.2, max_len: int = 256) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0.0, d_model**-0.5)
        self.pos = PositionalEncoding(d_model, max_len)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Transformer(
            d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout,
            batch_first=True, norm_first=True,
        )

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.pos(self.embed(ids) * math.sqrt(self.d_model)))

    def encode(self, src: torch.Tensor) -> Enc:
        """``src`` int64 (B, S) → ``memory`` float (B, S, D) and ``src_pad`` bool (B, S)."""
        src_pad = src == PAD
        memory = self.transformer.encoder(self._embed(src), src_key_padding_mask=src_pad)
        return {"memory": memory, "src_pad": src_pad}

    def decode(self, tgt_in: torch.Tensor, enc: Enc, last_only: bool = False) -> torch.Tensor:
        """``tgt_in`` int64 (B, T) → logits float (B, T, V) (causal self-attention), or
        (B, 1, V) for the last position only when ``last_only`` (decoding).

        With ``last_only`` the decoder runs incrementally when it can: ``enc`` then keeps,
        per decoder layer, the self-attention inputs of the prefix (``self_0``, ... float
        (B, T-1, D), added here), so a step computes one position instead of all ``T``
        (the standard key/value cache of autoregressive decoding; exact, since causal
        attention never lets a position see later ones). Decoders reorder them with the
        rest of ``enc`` (``index_select`` on rows). Without a cache of length ``T - 1`` (a
        first step starts one) the whole prefix is decoded.
        """
        t = tgt_in.size(1)
        cached = enc.get("self_0")
        if last_only and not self.training and (
                t == 1 if cached is None else cached.size(1) == t - 1):
            return self._decode_step(tgt_in, enc)
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=tgt_in.device), 1)
        out = self.transformer.decoder(
            self._embed(tgt_in), enc["memory"], tgt_mask=causal,
            tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=enc["src_pad"],
        )
        if last_only:
            out = out[:, -1:]
        return out @ self.embed.weight.T                       # (B, T, V), tied output

    def _decode_step(self, tgt_in: torch.Tensor, enc: Enc) -> torch.Tensor:
        """The last position of :meth:`decode`, from the cached prefix: (B, 1, V). Each
        pre-norm layer (``nn.TransformerDecoderLayer``, ``norm_first``) attends from the new
        position to the layer-normed inputs of every position so far, ``enc["self_<l>"]``
        extended by the new one."""
        t = tgt_in.size(1)
        x = self.embed(tgt_in[:, -1:]) * math.sqrt(self.d_model) + self.pos.pe[t - 1]
        pad = tgt_in == PAD                                              # (B, T)
        for i, layer in enumerate(self.transformer.decoder.layers):
            h = layer.norm1(x)                                           # (B, 1, D)
            prefix = enc.get(f"self_{i}")
            keys = h if prefix is None else torch.cat([prefix, h], dim=1)  # (B, T, D)
            enc[f"self_{i}"] = keys
            x = x + layer.self_attn(h, keys, keys, key_padding_mask=pad,
                                    need_weights=False)[0]
            h = layer.norm2(x)
            x = x + layer.multihead_attn(h, enc["memory"], enc["memory"],
                                         key_padding_mask=enc["src_pad"],
                                         need_weights=False)[0]
            x = x + layer._ff_block(layer.norm3(x))
        norm = self.transformer.decoder.norm
        out = norm(x) if norm is not None else x
        return out @ self.embed.weight.T                                 # (B, 1, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor,
                teacher_forcing_ratio: float = 1.0) -> torch.Tensor:
        """Training pass with full teacher forcing → logits (B, T, V)."""
        return self.decode(tgt_in, self.encode(src))


Seq2Seq = Seq2SeqLSTM | TransformerNMT
ARCHS: dict[str, type[Seq2Seq]] = {"lstm": Seq2SeqLSTM, "transformer": TransformerNMT}


def build_model(arch: str, **config: object) -> Seq2Seq:
    """``ARCHS[arch](**config)``.

    Raises:
        ValueError: an unknown architecture.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](**config)  # type: ignore[arg-type]
