"""Base class of the ECG augmentation layers.

This is the ONLY module of keras-ecg that touches Keras' private API
(`keras.src.layers.preprocessing.data_layer.DataLayer`): a Keras release that
moves it should require changes here only.
"""

import math

import keras
import numpy as np

# Private Keras API, isolated here on purpose: `DataLayer` switches the layer to
# TensorFlow ops inside `tf.data` pipelines, whatever the Keras backend is.
from keras.src.layers.preprocessing.data_layer import DataLayer

from keras_ecg.distribute import replica_seed


@keras.saving.register_keras_serializable(package="keras_ecg")
class ECGAugmentation(DataLayer):
    """Base class of random ECG augmentations (channels-last signals).

    Accepts one record `(timesteps, leads)` or a batch
    `(batch, timesteps, leads)`. Random parameters are drawn per example; each
    example is augmented with probability `probability`, otherwise passed
    through unchanged. The layer runs inside `tf.data.Dataset.map` under every
    Keras backend (it then computes with TensorFlow ops) and eagerly or inside a
    model on the active backend. Inside a model called with `training=False` it
    is the identity; called without a `training` argument (e.g. in `tf.data`)
    it always augments.

    Subclasses implement two hooks, which keeps every transform checkable
    against an independent re-statement of its formula:

    - `_sample_parameters(batch_size, timesteps, leads, seed)`: a dict of
      per-example random tensors (the only source of randomness);
    - `_transform(x, parameters)`: the deterministic transform of a batch
      `(batch, timesteps, leads)` given those parameters.

    The public `get_random_transformation()` / `transform()` pair exposes them:
    `layer(x)` equals `layer.transform(x, layer.get_random_transformation(
    x.shape))` for a batch `x` and a layer in the same seed state.

    The number of timesteps and leads must be static (known when the pipeline
    or model is traced); the batch size may be dynamic.

    Args:
        probability: float in `[0, 1]`, probability to augment each example
            (the paper's `p`). Defaults to `1.0`.
        sampling_rate: sampling rate in Hz, for transforms whose formula depends
            on physical time (only stored in the config of those). Defaults to
            `None`.
        seed: optional integer seed, for reproducible augmentation.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:

    ```python
    class Scale(ECGAugmentation):
        def _sample_parameters(self, batch_size, timesteps, leads, seed):
            return {"factor": self._uniform((batch_size,), 0.5, 2.0, seed)}

        def _transform(self, x, parameters):
            return x * parameters["factor"][:, None, None]
    ```
    """

    # Subclasses whose formula uses physical time set this to True.
    _REQUIRES_SAMPLING_RATE = False

    def __init__(self, probability=1.0, sampling_rate=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise TypeError(
                f"{type(self).__name__}: `probability` must be a float in [0, 1]. "
                f"Received: probability={probability!r}"
            )
        if not 0.0 <= probability <= 1.0:
            raise ValueError(
                f"{type(self).__name__}: `probability` must be in [0, 1]. "
                f"Received: probability={probability}"
            )
        if self._REQUIRES_SAMPLING_RATE:
            if sampling_rate is None:
                raise ValueError(
                    f"{type(self).__name__} needs the `sampling_rate` (Hz) of its "
                    "input."
                )
            if not (
                isinstance(sampling_rate, (int, float))
                and math.isfinite(sampling_rate)
                and sampling_rate > 0
            ):
                raise ValueError(
                    f"{type(self).__name__}: `sampling_rate` must be a positive "
                    f"number of Hz. Received: sampling_rate={sampling_rate!r}"
                )
            sampling_rate = float(sampling_rate)
        self.probability = float(probability)
        self.sampling_rate = sampling_rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    # ------------------------------------------------------------------ hooks
    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `_sample_parameters()`."
        )

    def _transform(self, x, parameters):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `_transform()`."
        )

    # ------------------------------------------------------------- public API
    def get_random_transformation(self, input_shape, seed=None):
        """Draws the per-example random parameters for a batch.

        Args:
            input_shape: `(batch, timesteps, leads)`; `batch` may be a scalar
                tensor (dynamic), `timesteps` and `leads` must be integers.
            seed: a `keras.random.SeedGenerator` (or seed tensor); defaults to
                the layer's own generator.

        Returns:
            A dict of tensors with a leading batch axis. When `probability < 1`
            it holds an `"apply"` boolean `(batch,)` mask.
        """
        batch_size, timesteps, leads = self._check_shape(input_shape)
        if seed is None:
            # Per-replica streams inside a tf.distribute replica step.
            seed = replica_seed(self._get_seed_generator(self.backend._backend))
        parameters = dict(self._sample_parameters(batch_size, timesteps, leads, seed))
        if self.probability < 1.0:
            draw = self._uniform((batch_size,), 0.0, 1.0, seed)
            parameters["apply"] = self.backend.numpy.less(draw, self.probability)
        return parameters

    def transform(self, x, transformation):
        """Applies drawn parameters to a batch `(batch, timesteps, leads)`."""
        x = self.backend.cast(self.backend.convert_to_tensor(x), self.compute_dtype)
        # Parameters may come back as numpy arrays (e.g. after inspection).
        transformation = {
            key: self.backend.convert_to_tensor(value)
            for key, value in transformation.items()
        }
        outputs = self._transform(x, transformation)
        if "apply" in transformation:
            apply = transformation["apply"][:, None, None]
            outputs = self.backend.numpy.where(apply, outputs, x)
        return outputs

    def call(self, inputs, training=True, return_parameters=False):
        """Augments `inputs` (identity when `training=False`).

        Args:
            inputs: `(timesteps, leads)` or `(batch, timesteps, leads)`.
            training: augment when truthy (default, as in `tf.data`).
            return_parameters: also return the dict of per-example parameters
                that were drawn (with a batch axis of 1 for a single record),
                for inspection and tests. Defaults to `False`.
        """
        x = self.backend.cast(
            self.backend.convert_to_tensor(inputs), self.compute_dtype
        )
        rank = len(x.shape)
        if rank not in (2, 3):
            raise ValueError(
                f"{type(self).__name__} expects ECG of shape (timesteps, leads) "
                f"or (batch, timesteps, leads). Received shape {tuple(x.shape)}."
            )
        if training is False or self.probability == 0.0:
            return (x, {}) if return_parameters else x
        if rank == 2:
            x = self.backend.numpy.expand_dims(x, axis=0)
        outputs, parameters = self._augment_batch(x)
        if rank == 2:
            outputs = self.backend.numpy.squeeze(outputs, axis=0)
        return (outputs, parameters) if return_parameters else outputs

    def _augment_batch(self, x):
        transformation = self.get_random_transformation(self.backend.shape(x))
        return self.transform(x, transformation), transformation

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"probability": self.probability, "seed": self.seed})
        if self._REQUIRES_SAMPLING_RATE:
            config["sampling_rate"] = self.sampling_rate
        return config

    # --------------------------------------------------------------- helpers
    def _check_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__}: expected a batch shape "
                f"(batch, timesteps, leads). Received {tuple(input_shape)}."
            )
        batch_size, timesteps, leads = input_shape
        for name, value in (("timesteps", timesteps), ("leads", leads)):
            if not isinstance(value, (int, np.integer)):
                raise ValueError(
                    f"{type(self).__name__} needs a static number of {name}; "
                    f"got {value!r}. Give the input pipeline a fixed window length."
                )
        if timesteps < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 timesteps. "
                f"Received input shape {tuple(input_shape)}."
            )
        return batch_size, int(timesteps), int(leads)

    def _uniform(self, shape, minval, maxval, seed):
        return self._draw("uniform", shape, seed, minval=minval, maxval=maxval)

    def _normal(self, shape, mean, stddev, seed):
        return self._draw("normal", shape, seed, mean=mean, stddev=stddev)

    def _draw(self, distribution, shape, seed, **kwargs):
        sample = getattr(self.backend.random, distribution)
        if len(shape) > 1 and all(isinstance(d, (int, np.integer)) for d in shape):
            # Draw flat, then reshape: with JAX's default partitionable
            # threefry, compiling a multi-dimensional draw takes ~10x longer
            # on CPU than a flat one of the same size.
            flat = sample(
                (int(np.prod(shape)),), dtype=self.compute_dtype, seed=seed, **kwargs
            )
            return self.backend.numpy.reshape(flat, tuple(int(d) for d in shape))
        return sample(shape, dtype=self.compute_dtype, seed=seed, **kwargs)

    def _random_sign(self, shape, seed):
        draw = self._uniform(shape, 0.0, 1.0, seed)
        negative = self.backend.cast(draw < 0.5, self.compute_dtype)
        return 1.0 - 2.0 * negative

    def _constant(self, value):
        return self.backend.convert_to_tensor(
            np.asarray(value), dtype=self.compute_dtype
        )

    def _resample(self, x, positions):
        """Linear interpolation of `x` `(B, T, C)` at float `positions` `(B, T')`.

        Vectorised over the batch with gathers, so every example can have its
        own time grid.
        """
        ops = self.backend.numpy
        timesteps = x.shape[1]
        leads = x.shape[2]
        positions = ops.clip(positions, 0.0, float(timesteps - 1))
        left = ops.clip(ops.floor(positions), 0.0, float(timesteps - 2))
        weight = (positions - left)[:, :, None]
        # One flat row gather (fast on every backend) instead of a batched
        # take_along_axis: row b * T + i of the (B * T, C) view is x[b, i].
        shape = self.backend.shape(positions)
        offsets = ops.arange(shape[0], dtype="int32")[:, None] * timesteps
        rows = ops.reshape(self.backend.cast(left, "int32") + offsets, (-1,))
        flat = ops.reshape(x, (-1, leads))
        x_left = ops.reshape(ops.take(flat, rows, axis=0), (shape[0], shape[1], leads))
        x_right = ops.reshape(
            ops.take(flat, rows + 1, axis=0), (shape[0], shape[1], leads)
        )
        return x_left + weight * (x_right - x_left)


def check_range(layer_name, name, value, lower=None, upper=None):
    """Validates a `(low, high)` range argument and returns it as a float tuple."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{layer_name}: `{name}` must be a pair (low, high). Received: {value!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(
            f"{layer_name}: `{name}` must satisfy low <= high. Received: {value!r}"
        )
    if (lower is not None and low < lower) or (upper is not None and high > upper):
        raise ValueError(
            f"{layer_name}: `{name}` must lie within [{lower}, {upper}]. "
            f"Received: {value!r}"
        )
    return (low, high)


def check_non_negative(layer_name, name, value):
    """Validates a finite non-negative float argument."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"{layer_name}: `{name}` must be a finite number >= 0. Received: {value!r}"
        )
    return float(value)
