"""Per-lead standardisation fitted on training records (the paper's --normalize)."""

import dataclasses
import json
import mmap

import numpy as np

from keras_ecg.data.ecg_dataset import ECGDataset


def _as_signal_list(data):
    """Records of `data` as a list of 2D arrays (timesteps, leads)."""
    if isinstance(data, ECGDataset):
        return list(data.signals)
    if isinstance(data, np.ndarray) or hasattr(data, "shape"):
        array = np.asarray(data)
        if array.ndim == 2:
            return [array]
        if array.ndim == 3:
            return list(array)
        raise ValueError(
            "Expected (timesteps, leads) or (batch, timesteps, leads) data, got "
            f"shape {array.shape}."
        )
    return [np.asarray(s) for s in data]


class _PageRelease:
    """Drops the pages of memory-mapped records from this process's RSS.

    `fit` reads every record once, record by record (memory bounded by one
    record). Records that are views of a memmap (a reader's cache) would still
    leave every page they touched mapped, so resident memory would grow to the
    size of the cache; every `every_bytes` read, the mapping is told that the
    pages are not needed (`MADV_DONTNEED`: the clean file pages stay in the
    page cache, they only leave this process's RSS).
    """

    def __init__(self, every_bytes=256 * 1024**2):
        self.every_bytes = every_bytes
        self.pending = 0
        self.maps = {}

    def after(self, signal):
        root = signal
        while isinstance(getattr(root, "base", None), np.ndarray):
            root = root.base
        mapping = getattr(root, "_mmap", None)  # numpy's memmap keeps it there
        # Read-only maps only: on a copy-on-write map ("c") MADV_DONTNEED would
        # discard the process's own changes.
        if getattr(root, "mode", None) != "r" or not hasattr(mapping, "madvise"):
            return
        self.maps[id(mapping)] = mapping
        self.pending += getattr(signal, "nbytes", 0)
        if self.pending >= self.every_bytes:
            self.release()

    def release(self):
        for mapping in self.maps.values():
            try:
                mapping.madvise(mmap.MADV_DONTNEED)
            except (AttributeError, OSError, ValueError):
                pass  # a platform without madvise: the kernel reclaims them
        self.pending = 0


class LeadStandardizer:
    """Per-lead z-scoring with statistics fitted on training records.

    `fit` computes one mean and one standard deviation per lead over every
    sample of every record (records weighted by their length, population
    std), as the paper's `--normalize` does with the training-set statistics.
    It streams: one record at a time is converted to float64 and merged into
    running statistics, so fitting on a memory-mapped cache larger than RAM
    needs memory for one record only. To standardise without a copy, pass the
    fitted standardizer to the pipelines (`make_pretraining_dataset(...,
    standardizer=...)`), which apply the same mapping to every crop.
    `transform` returns `(x - mean) / std` as new float32 data. A constant lead
    (std 0, e.g. a flat channel) gets std 1 instead, so it is only centred and
    never divided by zero.

    Args:
        mean: optional per-lead means (already fitted statistics).
        std: optional per-lead standard deviations.
        lead_names: optional lead names the statistics belong to; checked
            against the datasets passed to `transform`.

    Example:

    ```python
    train = keras_ecg.data.load_ptbxl("ptbxl/", folds=keras_ecg.data.TRAIN_FOLDS)
    standardizer = LeadStandardizer().fit(train)
    train = standardizer.transform(train)
    standardizer.save("standardizer.json")
    layer = standardizer.as_keras_layer()  # the same mapping inside a model
    ```
    """

    def __init__(self, mean=None, std=None, lead_names=None):
        if (mean is None) != (std is None):
            raise ValueError("Pass both `mean` and `std`, or neither.")
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)
        if self.mean is not None:
            if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
                raise ValueError(
                    f"mean {self.mean.shape} and std {self.std.shape} must be 1D "
                    "and of equal length."
                )
            if np.any(self.std <= 0) or not np.all(np.isfinite(self.std)):
                raise ValueError(f"std must be positive and finite, got {self.std}.")
        self.lead_names = None if lead_names is None else tuple(lead_names)

    @property
    def fitted(self):
        return self.mean is not None

    def fit(self, data):
        """Fits the statistics.

        Args:
            data: an `ECGDataset`, a `(batch, timesteps, leads)` or
                `(timesteps, leads)` array, or a list of `(timesteps_i, leads)`
                arrays.

        Returns:
            `self`.
        """
        signals = _as_signal_list(data)
        if not signals:
            raise ValueError("Cannot fit a LeadStandardizer on no records.")
        num_leads = np.shape(signals[0])[-1]
        count = 0
        mean = np.zeros(num_leads, dtype=np.float64)
        m2 = np.zeros(num_leads, dtype=np.float64)
        pages = _PageRelease()
        for signal in signals:
            pages.after(signal)
            signal = np.asarray(signal, dtype=np.float64)
            if signal.ndim != 2 or signal.shape[1] != num_leads:
                raise ValueError(
                    f"Expected (timesteps, {num_leads}) records, got {signal.shape}."
                )
            n = signal.shape[0]
            if n == 0:
                continue
            if not np.all(np.isfinite(signal)):
                raise ValueError("Cannot fit on non-finite (NaN/inf) samples.")
            # Chan et al. pairwise merge: stable for long recordings, where a
            # running sum of squares would lose precision.
            record_mean = signal.mean(axis=0)
            record_m2 = ((signal - record_mean) ** 2).sum(axis=0)
            total = count + n
            delta = record_mean - mean
            mean = mean + delta * n / total
            m2 = m2 + record_m2 + delta**2 * count * n / total
            count = total
        pages.release()
        if count == 0:
            raise ValueError("Cannot fit a LeadStandardizer on empty records.")
        std = np.sqrt(m2 / count)
        # Constant leads: centre only (std 1) rather than divide by zero.
        std = np.where(std > 1e-8, std, 1.0)
        self.mean, self.std = mean, std
        if isinstance(data, ECGDataset):
            self.lead_names = tuple(data.lead_names)
        return self

    def _check(self, num_leads, lead_names=None):
        if not self.fitted:
            raise ValueError("This LeadStandardizer is not fitted; call fit() first.")
        if num_leads != len(self.mean):
            raise ValueError(
                f"Fitted on {len(self.mean)} leads but the data has {num_leads}."
            )
        if (
            lead_names is not None
            and self.lead_names is not None
            and [n.lower() for n in lead_names] != [n.lower() for n in self.lead_names]
        ):
            raise ValueError(
                f"Fitted on leads {list(self.lead_names)} but the data has "
                f"{list(lead_names)}."
            )

    def _apply(self, signal):
        signal = np.asarray(signal, dtype=np.float64)
        return ((signal - self.mean) / self.std).astype(np.float32)

    def transform(self, data):
        """Standardises `data`; the input is left unchanged.

        Args:
            data: as for `fit`.

        Returns:
            The same kind as `data`: an `ECGDataset` (new signals, all else
            shared), a float32 array, or a list of float32 arrays.
        """
        if isinstance(data, ECGDataset):
            self._check(data.num_leads, data.lead_names)
            return dataclasses.replace(
                data, signals=[self._apply(s) for s in data.signals]
            )
        if isinstance(data, np.ndarray) or hasattr(data, "shape"):
            array = np.asarray(data)
            if array.ndim not in (2, 3):
                raise ValueError(
                    "Expected (timesteps, leads) or (batch, timesteps, leads) data,"
                    f" got shape {array.shape}."
                )
            self._check(array.shape[-1])
            return self._apply(array)
        signals = _as_signal_list(data)
        for signal in signals:
            self._check(np.shape(signal)[-1])
        return [self._apply(s) for s in signals]

    def fit_transform(self, data):
        return self.fit(data).transform(data)

    def get_config(self):
        return {
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
            "lead_names": None if self.lead_names is None else list(self.lead_names),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def save(self, path):
        """Writes the statistics as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.get_config(), f, indent=2)

    @classmethod
    def load(cls, path):
        """Reads a standardizer written by `save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_config(json.load(f))

    def as_keras_layer(self, name="lead_standardizer"):
        """The same mapping as a `keras.layers.Normalization(axis=-1)` layer."""
        # Imported here: `keras_ecg.data` (e.g. `keras-ecg cache`/`download`)
        # must not import Keras, which would load a framework.
        import keras

        self._check(len(self.mean) if self.fitted else 0)
        return keras.layers.Normalization(
            axis=-1,
            mean=self.mean.astype(np.float32).tolist(),
            variance=(self.std**2).astype(np.float32).tolist(),
            name=name,
        )
