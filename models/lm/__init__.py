"""LSTM language model on Penn Treebank (Zaremba et al. 2014; the seed's RNN-LM tutorial)."""
