"""Skip-gram word2vec with negative sampling and subsampling (Mikolov et al. 2013) on PTB."""
