"""Handwriting recognition: OpenCV contour segmentation + a CNN letter classifier
(``pipeline=contours``), and text lines read whole by a CRNN + CTC (``pipeline=lines``).

Modules:
    data        loaders for the shared ``handwriting/*.npz`` sets and for EMNIST (IDX/gzip)
    augment     photo-like augmentation of 64x64 letter images (training only)
    model       the seed tutorial's CNN (baseline) and the served CNN
    train       ``modelzoo train handwriting``
    evaluate    per-set accuracy, confusions, whole-image CER
    preprocess  decode an uploaded image → ink map (ink bright on black, float32 in [0, 1])
    segment     ink map → lines → words → letter boxes, and crops prepared like the training data
    synth       multi-letter evaluation images composed from held-out letters
    metrics     character error rate and word accuracy
    predictor   HandwritingPredictor (what the service loads; pipeline auto|lines|contours)
    lines       page layout: ink map → text lines (deskewed) → 32-px line crops
    crnn        the CRNN line recognizer (conv features → BiLSTM → per-column characters)
    ctc         CTC greedy and prefix beam search decoding with LM shallow fusion
    charlm      character n-gram language model (interpolated Kneser-Ney)
    linesynth   training lines composed from real letter crops and handwriting fonts
    train_crnn  ``modelzoo train handwriting --arch crnn``
    linereader  LineReader: lines → CRNN → decoded text with line, word and letter boxes

Letter images everywhere follow the shared dataset's convention: uint8, ink bright (up to
255) on a black background, upright, the letter centred in a square with ~7.5 % margin.
"""
