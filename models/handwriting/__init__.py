"""Multi-letter handwriting recognition: OpenCV segmentation + a CNN letter classifier.

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
    predictor   HandwritingPredictor (what the service loads)

Letter images everywhere follow the shared dataset's convention: uint8, ink bright (up to
255) on a black background, upright, the letter centred in a square with ~7.5 % margin.
"""
