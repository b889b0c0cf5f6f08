"""Integrated gradients (Sundararajan, Taly & Yan, ICML 2017) of model outputs."""

import numpy as np

from keras_ecg.explain.gradients import output_gradients

DEFAULT_STEPS = 32


def integrated_gradients(
    model,
    inputs,
    output_indices,
    baselines=None,
    steps=DEFAULT_STEPS,
    target="logit",
    batch_size=256,
):
    """Integrated-gradients attributions of one output per example.

    For an input `x`, a baseline `b` and an output `F`, the attribution of
    feature `i` is `(x_i - b_i) * integral_0^1 dF/dx_i(b + a (x - b)) da`.
    The attributions of all features add up to `F(x) - F(b)`
    ("completeness"); the integral is approximated by the midpoint rule with
    `steps` points (`a = (s + 0.5) / steps`), which is exact for a model
    linear in its input and has an error falling as `1 / steps**2` for a
    smooth one. The gradients come from `keras_ecg.explain.gradients`, so this
    runs on the TensorFlow, JAX and PyTorch backends.

    Args:
        model: a Keras model mapping `(batch, ...)` inputs to `(batch,
            num_outputs)` logits, in the input space it was trained on
            (e.g. standardised ECG windows).
        inputs: float array `(num_examples, ...)`.
        output_indices: an int or an int array `(num_examples,)`: the output
            explained for each example.
        baselines: array broadcastable to `inputs`, the reference input(s);
            default zeros (in standardised space: each lead at its training
            mean).
        steps: number of points on the path from baseline to input.
        target: `"logit"` or `"probability"` (the sigmoid of the logit).
        batch_size: path points per gradient call.

    Returns:
        A float32 array shaped like `inputs`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> x = np.ones((1, 3), "float32")
    >>> a = integrated_gradients(model, x, 0, steps=4)
    >>> bool(np.allclose(a[0], model.get_weights()[0][:, 0], atol=1e-6))
    True
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim < 2:
        raise ValueError(
            f"inputs must be a batch (num_examples, ...), got shape {inputs.shape}."
        )
    num = inputs.shape[0]
    indices = np.broadcast_to(np.asarray(output_indices, dtype=np.int64), (num,))
    if baselines is None:
        baselines = np.zeros_like(inputs)
    baselines = np.broadcast_to(np.asarray(baselines, dtype=np.float32), inputs.shape)
    steps, batch_size = int(steps), int(batch_size)
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    # Every (example, alpha) pair is one row; batches mix examples freely.
    example_of = np.repeat(np.arange(num), steps)
    alpha_of = np.tile(alphas, num)
    shape = (-1,) + (1,) * (inputs.ndim - 1)
    summed = np.zeros(inputs.shape, dtype=np.float64)
    for start in range(0, num * steps, batch_size):
        rows = slice(start, start + batch_size)
        examples = example_of[rows]
        base = baselines[examples]
        points = base + alpha_of[rows].reshape(shape) * (inputs[examples] - base)
        count = len(examples)
        _, gradients = output_gradients(
            model,
            pad_batch(points, batch_size),
            pad_batch(indices[examples], batch_size),
            target,
        )
        gradients = gradients[:count]
        # Rows are grouped by example: one sum per example in the batch.
        firsts = np.flatnonzero(np.r_[True, examples[1:] != examples[:-1]])
        summed[examples[firsts]] += np.add.reduceat(gradients, firsts, axis=0)
    return ((inputs - baselines) * (summed / steps)).astype(np.float32)


def pad_batch(batch, batch_size):
    """`batch` with its last row repeated up to a power of two <= `batch_size`.

    JAX and TensorFlow compile once per batch shape: padded, the short last
    batches of records of other lengths reuse a few shapes instead of one
    each, for at most twice the rows.
    """
    count = len(batch)
    padded = min(batch_size, 1 << (count - 1).bit_length())
    if padded <= count:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], padded - count, axis=0)])
