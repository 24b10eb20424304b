"""German→English translation on Multi30k: SentencePiece subwords, the seed tutorial's LSTM
encoder–decoder (baseline) and a Transformer (served), greedy and beam-search decoding."""
