"""Input gradients of a Keras model's outputs, on every backend.

`keras.ops` has no gradient op: each backend differentiates its own way
(`tf.GradientTape`, `jax.grad`, `torch.autograd`), as Keras' own trainers do
in `keras/src/backend/<name>/trainer.py`. This module is the one place in
keras-ecg that dispatches on the backend for gradients.
"""

import weakref

import keras
import numpy as np

TARGETS = ("logit", "probability")

# One compiled gradient function per (model, target): JAX and TensorFlow trace
# once per input shape instead of once per call. The functions hold the model
# weakly, so that a cached entry does not keep its own key alive.
_COMPILED = weakref.WeakKeyDictionary()


def output_gradients(model, inputs, output_indices, target="logit"):
    """Gradients of one output per example with respect to the example.

    For every example `b`, differentiates `y[b, output_indices[b]]`, where
    `y = model(inputs, training=False)` are logits and `target="probability"`
    takes their sigmoid first. Examples do not interact in inference mode
    (BatchNorm uses its moving statistics), so one backward pass of the sum
    of the picked outputs gives every example its own gradient.

    Args:
        model: a Keras model mapping `(batch, ...)` inputs to `(batch,
            num_outputs)` logits.
        inputs: float array `(batch, ...)`.
        output_indices: int array `(batch,)`, the output differentiated for
            each example.
        target: `"logit"` (the raw output) or `"probability"` (its sigmoid).

    Returns:
        `(values, gradients)` as float32 numpy arrays: the differentiated
        outputs `(batch,)` and their gradients, shaped like `inputs`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> values, grads = output_gradients(model, np.ones((4, 3)), np.zeros(4, int))
    >>> grads.shape
    (4, 3)
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    inputs = np.asarray(inputs, dtype=np.float32)
    output_indices = np.asarray(output_indices, dtype=np.int32)
    if output_indices.shape != inputs.shape[:1]:
        raise ValueError(
            f"output_indices must hold one index per example ({inputs.shape[0]}), "
            f"got shape {output_indices.shape}."
        )
    per_model = _COMPILED.setdefault(model, {})
    if target not in per_model:
        backend = keras.backend.backend()
        if backend not in _BUILDERS:
            raise NotImplementedError(
                "keras_ecg.explain needs a backend with gradients (tensorflow, "
                f"jax or torch), not {backend!r}."
            )
        per_model[target] = _BUILDERS[backend](weakref.ref(model), target)
    values, gradients = per_model[target](inputs, output_indices)
    return (
        np.asarray(keras.ops.convert_to_numpy(values), dtype=np.float32),
        np.asarray(keras.ops.convert_to_numpy(gradients), dtype=np.float32),
    )


def _picked(outputs, indices, target):
    """`outputs[b, indices[b]]` in float32, through the sigmoid if asked."""
    ops = keras.ops
    outputs = ops.cast(outputs, "float32")
    if len(outputs.shape) != 2:
        raise ValueError(
            "the model must return (batch, num_outputs), got shape "
            f"{tuple(outputs.shape)}."
        )
    picked = ops.take_along_axis(outputs, ops.expand_dims(indices, -1), axis=1)[:, 0]
    return ops.sigmoid(picked) if target == "probability" else picked


def _tensorflow(model_ref, target):
    import tensorflow as tf

    # reduce_retracing: the last batch of a record is usually smaller.
    @tf.function(reduce_retracing=True)
    def step(inputs, indices):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = model_ref()(inputs, training=False)
            values = _picked(outputs, indices, target)
            total = tf.reduce_sum(values)
        # Zeros, not None, for an output that does not depend on the input.
        gradients = tape.gradient(
            total, inputs, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return values, gradients

    return lambda inputs, indices: step(
        tf.convert_to_tensor(inputs), tf.convert_to_tensor(indices)
    )


def _jax(model_ref, target):
    import jax

    def total(inputs, trainable, non_trainable, indices):
        # stateless_call: the variables enter as arguments, not as captured
        # constants, so the compiled function stays valid if weights change.
        outputs, _ = model_ref().stateless_call(
            trainable, non_trainable, inputs, training=False
        )
        values = _picked(outputs, indices, target)
        return values.sum(), values

    step = jax.jit(jax.grad(total, has_aux=True))

    def run(inputs, indices):
        model = model_ref()
        gradients, values = step(
            inputs,
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            indices,
        )
        return values, gradients

    return run


def _torch(model_ref, target):
    import torch

    def run(inputs, indices):
        tensor = keras.ops.convert_to_tensor(inputs)
        tensor.requires_grad_(True)
        with torch.enable_grad():
            values = _picked(
                model_ref()(tensor, training=False),
                keras.ops.convert_to_tensor(indices),
                target,
            )
            if not values.requires_grad:  # no path from the input
                return values.detach(), torch.zeros_like(tensor)
            (gradients,) = torch.autograd.grad(values.sum(), tensor, allow_unused=True)
        if gradients is None:
            gradients = torch.zeros_like(tensor)
        return values.detach(), gradients

    return run


_BUILDERS = {"tensorflow": _tensorflow, "jax": _jax, "torch": _torch}
