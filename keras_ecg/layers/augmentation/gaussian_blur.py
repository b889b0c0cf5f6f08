"""Gaussian smoothing along time."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_range


@keras.saving.register_keras_serializable(package="keras_ecg")
class GaussianBlur(ECGAugmentation):
    """Smooths every lead with a normalised Gaussian kernel along time.

    Per example, `sigma ~ U(sigma_range)` (in samples) and the kernel is
    `w_j = exp(-j^2 / (2 sigma^2)) / sum`, `j = -r..r`, `r = kernel_size // 2`.
    Edges are padded by repeating the first/last sample, so a constant signal
    stays constant. The reference `GaussianBlur1d` uses the fixed 5-tap kernel
    `[0.1, 0.2, 0.4, 0.2, 0.1]` with zero padding; its tap ratios match
    Gaussians with sigma between about 0.85 (inner taps) and 1.2 (outer taps),
    hence the defaults `kernel_size=5`, `sigma_range=(0.8, 1.2)`.

    Args:
        kernel_size: odd kernel length in samples. Defaults to `5`.
        sigma_range: `(low, high)` standard deviation in samples, > 0. Defaults
            to `(0.8, 1.2)`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.random.normal(size=(4, 250, 12)).astype("float32")
    y = keras_ecg.layers.GaussianBlur(kernel_size=5, seed=1)(x)
    ```
    """

    def __init__(
        self,
        kernel_size=5,
        sigma_range=(0.8, 1.2),
        probability=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(probability=probability, seed=seed, **kwargs)
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size < 1
            or kernel_size % 2 == 0
        ):
            raise ValueError(
                f"{type(self).__name__}: `kernel_size` must be an odd positive "
                f"integer. Received: {kernel_size!r}"
            )
        self.kernel_size = kernel_size
        self.sigma_range = check_range(type(self).__name__, "sigma_range", sigma_range)
        if self.sigma_range[0] <= 0:
            raise ValueError(
                f"{type(self).__name__}: `sigma_range` must be > 0. "
                f"Received: {sigma_range!r}"
            )

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        low, high = self.sigma_range
        return {"sigma": self._uniform((batch_size,), low, high, seed)}

    def _transform(self, x, parameters):
        ops = self.backend.numpy
        radius = self.kernel_size // 2
        if radius == 0:
            return x
        timesteps = x.shape[1]
        offsets = ops.arange(-radius, radius + 1, dtype=self.compute_dtype)
        sigma = parameters["sigma"][:, None]
        kernel = ops.exp(-(offsets[None, :] ** 2) / (2.0 * sigma**2))
        kernel = kernel / ops.sum(kernel, axis=1, keepdims=True)
        padded = ops.concatenate(
            [
                ops.repeat(x[:, :1, :], radius, axis=1),
                x,
                ops.repeat(x[:, -1:, :], radius, axis=1),
            ],
            axis=1,
        )
        # A short static loop over taps; every tap is vectorised over the batch.
        outputs = None
        for j in range(self.kernel_size):
            term = kernel[:, j][:, None, None] * padded[:, j : j + timesteps, :]
            outputs = term if outputs is None else outputs + term
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {"kernel_size": self.kernel_size, "sigma_range": list(self.sigma_range)}
        )
        return config
