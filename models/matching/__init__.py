"""Text-pair matching: DSSM, MV-LSTM, MatchPyramid and ESIM on Quora and WikiQA."""
