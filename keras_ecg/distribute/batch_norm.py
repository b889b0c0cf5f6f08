"""Synchronised BatchNorm: global-batch statistics in data-parallel steps."""

import keras

from keras_ecg.distribute import torch_backend


def synchronize_batch_norm(model, synchronized=True):
    """Makes every `BatchNormalization` of `model` use global-batch statistics.

    TensorFlow computes BatchNorm statistics per replica unless the layer is
    `synchronized` (Keras then all-reduces the moments across the replicas of
    a `MirroredStrategy` / `MultiWorkerMirroredStrategy` step). Torch computes
    them per process; Keras' `synchronized` is TensorFlow-only there, so the
    layers' moments are computed by keras-ecg instead, from the per-channel
    sum, sum of squares and count all-reduced over the processes of a
    data-parallel step (as usual outside one). Under JAX `DataParallel` the
    statistics are global already, so this changes nothing there.

    Args:
        model: a built or unbuilt Keras layer or model.
        synchronized: whether to synchronise (False: leaves `model` as is).

    Returns:
        Whether the layers were switched (False under JAX).

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.layers.BatchNormalization()])
    >>> switched = synchronize_batch_norm(model)
    >>> switched == (keras.backend.backend() != "jax")
    True
    """
    backend = keras.backend.backend()
    if not synchronized or backend not in ("tensorflow", "torch"):
        return False
    for layer in model._flatten_layers(include_self=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            if backend == "tensorflow":
                layer.synchronized = True
            else:
                torch_backend.synchronize_batch_norm(layer)
    return True


def batch_norm_is_synchronized(layer):
    """Whether `layer` was switched by `synchronize_batch_norm`."""
    return bool(
        getattr(layer, "synchronized", False)
        or getattr(layer, "_keras_ecg_synchronized", False)
    )
