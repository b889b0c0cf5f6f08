"""Durations in seconds, converted to samples with the data's sampling rate."""

import math


def nearest_sample(seconds, sampling_rate):
    """`seconds * sampling_rate` rounded to an int, halves up, unchecked.

    The product is first rounded to 6 decimals so that float noise
    (`0.1 * 3 * 100 = 30.000000000000004`) cannot flip a half. Used by
    `seconds_to_samples` and by layers that clamp the result themselves.
    """
    return int(math.floor(round(float(seconds) * float(sampling_rate), 6) + 0.5))


def seconds_to_samples(seconds, sampling_rate, name="duration"):
    """`seconds * sampling_rate` rounded to the nearest sample (halves up).

    Every user-facing length in keras-ecg (crops, windows, strides) is given in
    seconds and converted here, so a 2.5 s window is 250 samples at 100 Hz and
    1250 at 500 Hz. Halves round up, not to even as Python's `round` does
    (1.25 s at 250 Hz is 313 samples), after rounding the product to 6
    decimals so that float noise (`0.1 * 3 * 100 = 30.000000000000004`)
    cannot flip it.

    Args:
        seconds: a positive, finite duration in seconds.
        sampling_rate: samples per second of the data.
        name: what the duration is, for the error message.

    Returns:
        A positive int.

    Example:

    >>> seconds_to_samples(2.5, 500)
    1250
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {seconds!r}.")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds}.")
    if not (sampling_rate and math.isfinite(sampling_rate) and sampling_rate > 0):
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}.")
    samples = nearest_sample(seconds, sampling_rate)
    if samples < 1:
        raise ValueError(
            f"{name} of {seconds} s is shorter than one sample at {sampling_rate} Hz."
        )
    return samples


def drop_short_records(data, min_length, what="crop"):
    """Drops the records shorter than `min_length` samples, with one warning.

    A crop or window cannot come from a record shorter than itself. Rather
    than shrink every crop to the shortest record (which silently changes the
    input of the whole run), such records are left out and counted.

    Args:
        data: an `ECGDataset`.
        min_length: the crop / window length in samples.
        what: what needs the length, for the warning (e.g. `"2.5 s crop"`).

    Returns:
        `data` itself when no record is short, else the subset of long enough
        records.

    Raises:
        ValueError: every record is too short.
    """
    import warnings

    import numpy as np

    from keras_ecg.data.errors import ECGDataWarning

    lengths = np.array([len(s) for s in data.signals], dtype=np.int64)
    short = np.flatnonzero(lengths < min_length)
    if len(short) == 0:
        return data
    rate = data.sampling_rate
    examples = ", ".join(
        f"{data.record_ids[i]} ({lengths[i] / rate:g} s)" for i in short[:5]
    )
    if len(short) == len(data):
        raise ValueError(
            f"Every record is shorter than the {what} ({min_length} samples at "
            f"{rate} Hz), e.g. {examples}."
        )
    warnings.warn(
        f"skipped {len(short)} of {len(data)} record(s) shorter than the {what} "
        f"({min_length} samples at {rate} Hz): {examples}"
        f"{' ...' if len(short) > 5 else ''}",
        ECGDataWarning,
        stacklevel=2,
    )
    return data.subset(np.flatnonzero(lengths >= min_length))
