"""Small run-level utilities."""

import os

import keras


def enable_determinism(seed):
    """Seeds every RNG and switches off the known run-to-run variations (opt-in).

    Call it once, before building and training models: graph functions are
    optimised (TensorFlow) when they first run, under the settings of that
    moment. `keras_ecg.jobs.pretrain.pretrain_model` calls it.

    What holds on CPU: two runs of the same seeded training on the same data
    give bit-identical losses and weights, on TensorFlow, JAX and PyTorch,
    in one process (`tests/long_run_test.py`) or in two separate processes
    (`tests/models/cpc_test.py`), on the same machine with the same library
    versions and thread count.

    What it does:

    - Seeds Python's `random`, NumPy and the backend
      (`keras.utils.set_random_seed`). This also fixes the initial weights
      and every `keras.random.SeedGenerator` created afterwards with
      `seed=None`, which draws its seed from Python's `random` (e.g. CPC's
      negative sampler).
    - TensorFlow (whenever it is installed: `tf.data` is the input pipeline
      under every backend): `tf.config.experimental.enable_op_determinism()`,
      and Grappler, TensorFlow's graph optimiser, switched off. Its memory
      optimiser rewrites large gradient sums (`AddN`, e.g. the three
      gradient paths through a BatchNormalization) into accumulations in the
      order in which the terms happen to be ready, which differs between
      processes: the gradients then differ in the last bits at every step,
      and op determinism does not cover it. The public API can only switch
      Grappler off as a whole (CPC and SimCLR training steps showed no
      slowdown we could measure on a shared 2-core CPU).
    - PyTorch: deterministic algorithms (warnings only where none exists),
      no cuDNN autotuning, `CUBLAS_WORKSPACE_CONFIG` for CUDA.
    - JAX: appends `--xla_gpu_deterministic_ops=true` to `XLA_FLAGS`, which
      only takes effect if set before JAX initialises its backend.
    - Sets `PYTHONHASHSEED` for subprocesses (the running interpreter's hash
      seed is fixed when it starts).

    What it does not cover:

    - GPUs: the switches above are those the frameworks document for GPU
      determinism, but bit-identical GPU runs are not tested here (and
      without Grappler, GPU training is likely slower).
    - Kernels that compute wrong results because of a thread race, which op
      determinism does not prevent: TensorFlow 2.21's oneDNN CPU kernel for
      the input gradient of a strided convolution with asymmetric "same"
      padding is one. The encoders of keras-ecg never hand TensorFlow such a
      convolution (they pad explicitly); for other models, set
      `TF_ENABLE_ONEDNN_OPTS=0` before TensorFlow is imported.
    - Identical numbers across backends, machines, CPU instruction sets,
      thread counts or library versions.

    Args:
        seed: integer seed for Python, NumPy and the backend.

    Example:
    >>> enable_determinism(0)
    """
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    backend = keras.backend.backend()
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        pass
    else:
        tf.config.experimental.enable_op_determinism()
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
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


def is_eager_torch_tensor(x):
    """Whether `x` is a real torch tensor computed eagerly (torch backend).

    The torch fast paths (`XResNet1D`, BYOL's target update) run plain torch
    ops on the layers' variables; they must not run on symbolic "meta"
    tensors (shape inference) or inside a Keras stateless scope, where
    variables are swapped for given values.
    """
    if keras.backend.backend() != "torch":
        return False
    import torch

    # Private Keras API, imported in this one place only.
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    return (
        isinstance(x, torch.Tensor)
        and x.device.type != "meta"
        and not in_stateless_scope()
    )


def fresh_initializer(initializer):
    """A new instance of a Keras initializer, for one more weight.

    An unseeded `keras.initializers.RandomNormal` instance fixes its seed when
    it is created, so sharing one instance between layers gives
    equally-shaped kernels identical values. A new instance per weight
    (rebuilt from the config) draws its own seed, unless the given
    initializer was seeded explicitly.

    Args:
        initializer: a Keras initializer, its identifier or its config.

    Returns:
        A new `keras.initializers.Initializer`.

    Example:

    >>> import keras
    >>> shared = keras.initializers.RandomNormal(stddev=0.02)
    >>> a, b = fresh_initializer(shared), fresh_initializer(shared)
    >>> a is not shared and a.get_config() == shared.get_config()
    True
    """
    return keras.initializers.get(
        keras.initializers.serialize(keras.initializers.get(initializer))
    )
