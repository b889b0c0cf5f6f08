"""Small run-level utilities."""

import os

import keras


def enable_determinism(seed):
    """Seeds every RNG and asks the backend for deterministic kernels (opt-in).

    What holds on CPU (checked by `tests/long_run_test.py`): two runs in one
    process with the same seed give identical losses and weights on
    TensorFlow, JAX and PyTorch. On GPU, TensorFlow and PyTorch need the
    deterministic-kernel switches set here (slower); JAX needs
    `XLA_FLAGS=--xla_gpu_deterministic_ops=true`, which only takes effect if
    set before JAX initialises its backend (this function appends it to
    `XLA_FLAGS` for that case).

    Args:
        seed: integer seed for Python, NumPy and the backend.

    Example:
    >>> enable_determinism(0)
    """
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    backend = keras.backend.backend()
    # tf.data runs under every backend in this project, so TF is made
    # deterministic whenever it is installed.
    try:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    except ImportError:  # pragma: no cover
        pass
    if backend == "torch":
        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif backend == "jax":
        flag = "--xla_gpu_deterministic_ops=true"
        flags = os.environ.get("XLA_FLAGS", "")
        if flag not in flags:
            os.environ["XLA_FLAGS"] = (flags + " " + flag).strip()
