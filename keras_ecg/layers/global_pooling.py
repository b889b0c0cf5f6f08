"""Global pooling of a `(batch, timesteps, channels)` sequence to a vector."""

import keras
from keras import ops

POOLING_MODES = ("avg", "max", "last", "concat", "concat_last")


@keras.saving.register_keras_serializable(package="keras_ecg")
class GlobalPooling1D(keras.layers.Layer):
    """Pools a sequence over time with one of several reductions.

    `"concat"` is fastai's `AdaptiveConcatPool1d` (global max then global
    average), the representation used by Mehari & Strodthoff (2022) for the
    xresnet1d encoders; `"concat_last"` additionally appends the last time step,
    the CPC downstream head's pooling of the (unidirectional) LSTM outputs.

    Args:
        mode: one of `"avg"`, `"max"`, `"last"`, `"concat"` (max, avg),
            `"concat_last"` (max, avg, last).
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> pool = GlobalPooling1D("concat")
    >>> pool(np.ones((2, 10, 8), "float32")).shape
    (2, 16)
    """

    def __init__(self, mode="concat", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(
                f"GlobalPooling1D: unknown mode {mode!r}; expected one of "
                f"{POOLING_MODES}."
            )
        self.mode = mode
        self.input_spec = keras.layers.InputSpec(ndim=3)

    @property
    def multiplier(self):
        """How many times the channel dimension the output is."""
        return {"concat": 2, "concat_last": 3}.get(self.mode, 1)

    def call(self, inputs):
        pooled = {
            "avg": lambda: ops.mean(inputs, axis=1),
            "max": lambda: ops.max(inputs, axis=1),
            "last": lambda: inputs[:, -1, :],
        }
        if self.mode in pooled:
            return pooled[self.mode]()
        parts = [pooled["max"](), pooled["avg"]()]
        if self.mode == "concat_last":
            parts.append(pooled["last"]())
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        if channels is not None:
            channels = channels * self.multiplier
        return (input_shape[0], channels)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
