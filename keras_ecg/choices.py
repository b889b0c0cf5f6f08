"""The choices of the CLI's flags and of the jobs' settings.

Imports nothing: the CLI reads them before the Keras backend is chosen.
"""

METHODS = ("simclr", "byol", "swav", "cpc", "jepa")
# keras_ecg.models.method_factory.ENCODERS (not imported here: it would import
# Keras before --backend is applied; a test checks that they agree).
ENCODERS = ("xresnet1d", "lstm", "transformer", "s4")
BACKENDS = ("tensorflow", "jax", "torch")
# keras_ecg.evaluation.downstream.DOWNSTREAM_MODES (a test checks that they
# agree): linear probe, MLP head on frozen features, LP-FT, from scratch.
PROTOCOLS = ("linear", "frozen", "finetune", "scratch")
SPLITS = ("train", "val", "test", "all")
SIZES = ("paper", "small", "tiny")
PROBES = ("knn", "logistic", "none")
KEEP = ("last", "best-probe")
DISTRIBUTED = ("none", "auto", "multi-process")
BACKBONE_BATCH_NORM = ("train", "frozen")
EMBED_PLOTS = ("pca", "tsne")
TUNERS = ("random", "bayesian", "hyperband")
