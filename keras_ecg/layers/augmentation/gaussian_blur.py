"""Gaussian smoothing along time."""

import keras

from keras_ecg.data.durations import nearest_sample
from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_range


@keras.saving.register_keras_serializable(package="keras_ecg")
class GaussianBlur(ECGAugmentation):
    """Smooths every lead with a normalised Gaussian kernel along time.

    Durations are in seconds and converted with `sampling_rate`: the kernel
    spans `kernel_seconds` (rounded to an odd number of samples, at least 1)
    and, per example, `sigma ~ U(sigma_seconds_range)`. The kernel is
    `w_j = exp(-(j / fs)^2 / (2 sigma^2)) / sum`, `j = -r..r`, `r` the kernel
    radius in samples. Edges are padded by repeating the first/last sample, so
    a constant signal stays constant. The reference `GaussianBlur1d` uses the
    fixed 5-tap kernel `[0.1, 0.2, 0.4, 0.2, 0.1]` at 100 Hz with zero
    padding; its tap ratios match Gaussians with sigma between about 0.85
    (inner taps) and 1.2 (outer taps) samples, hence the defaults
    `kernel_seconds=0.05` (5 samples at 100 Hz) and
    `sigma_seconds_range=(0.008, 0.012)`; at 500 Hz the same blur spans 25
    samples.

    Args:
        kernel_seconds: kernel duration in seconds. Defaults to `0.05`.
        sigma_seconds_range: `(low, high)` standard deviation in seconds, > 0.
            Defaults to `(0.008, 0.012)`.
        sampling_rate: sampling rate of the input (Hz). Defaults to `100`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.random.normal(size=(4, 1250, 12)).astype("float32")
    y = keras_ecg.layers.GaussianBlur(sampling_rate=500, seed=1)(x)
    ```
    """

    _REQUIRES_SAMPLING_RATE = True

    def __init__(
        self,
        kernel_seconds=0.05,
        sigma_seconds_range=(0.008, 0.012),
        sampling_rate=100,
        probability=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            probability=probability, sampling_rate=sampling_rate, seed=seed, **kwargs
        )
        name = type(self).__name__
        if (
            isinstance(kernel_seconds, bool)
            or not isinstance(kernel_seconds, (int, float))
            or not kernel_seconds > 0
        ):
            raise ValueError(
                f"{name}: `kernel_seconds` must be a positive number of seconds. "
                f"Received: {kernel_seconds!r}"
            )
        self.kernel_seconds = float(kernel_seconds)
        self.sigma_seconds_range = check_range(
            name, "sigma_seconds_range", sigma_seconds_range
        )
        if self.sigma_seconds_range[0] <= 0:
            raise ValueError(
                f"{name}: `sigma_seconds_range` must be > 0. "
                f"Received: {sigma_seconds_range!r}"
            )
        # An odd number of taps, so the kernel is centred on a sample.
        samples = nearest_sample(self.kernel_seconds, self.sampling_rate)
        self.kernel_size = max(1, samples if samples % 2 else samples - 1)

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        low, high = self.sigma_seconds_range
        sigma = self._uniform((batch_size,), low, high, seed)
        return {"sigma": sigma * self.sampling_rate}  # in samples

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
            {
                "kernel_seconds": self.kernel_seconds,
                "sigma_seconds_range": list(self.sigma_seconds_range),
            }
        )
        return config
