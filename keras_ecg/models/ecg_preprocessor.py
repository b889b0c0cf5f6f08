"""The preprocessing a trained classifier needs, serialized with it."""

import dataclasses
import logging
import math
import os
import pathlib
import re

import keras
import numpy as np
import pandas as pd
from keras import ops

from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import FailureLog
from keras_ecg.data.errors import check_on_error
from keras_ecg.data.leads import lead_key
from keras_ecg.data.wfdb_folder import resample_signal
from keras_ecg.data.wfdb_folder import resolve_leads

logger = logging.getLogger(__name__)

AGGREGATIONS = ("mean", "max")

# PTB-XL record names: `00001_lr` (records100) and `00001_hr` (records500).
_PTBXL_RECORD_NAME = re.compile(r"^(\d+)_(?:lr|hr)$")


@keras.saving.register_keras_serializable(package="keras_ecg")
class ECGPreprocessor(keras.layers.Layer):
    """Turns raw ECG records into the input of a trained classifier.

    It holds everything a classifier's training assumed about its input: the
    sampling rate, the lead order, the per-lead standardisation statistics
    fitted on the training split, the sliding windows used at evaluation and
    how window probabilities are aggregated per record. Saved inside an
    `ECGClassifier`, it lets `ECGClassifier.predict_records` run on raw WFDB
    records, clinical ECG exports (GE MUSE XML, Philips Sierra XML, HL7 aECG,
    DICOM waveform, EDF/EDF+, SCP-ECG; the `formats` extra) or an
    `ECGDataset` at any rate and lead order, with no other setup.

    Everything user-facing is in seconds; the sample counts derive from the
    rate (`window_length`, `stride`, rounded to the nearest sample, halves
    up). The defaults, 2.5 s windows with a 1.25 s stride, are the paper's
    250 / 125 samples at 100 Hz.

    Called on a `(..., leads)` tensor it applies `(x - mean) / std` with
    `keras.ops` (the identity without statistics), so the same mapping can sit
    inside a model. `prepare` does the record-level work in numpy: reading,
    lead selection, resampling, validation and standardisation.

    Args:
        sampling_rate: samples per second the model expects.
        lead_names: lead names in the order the model expects (matched by
            `keras_ecg.data.leads.lead_key`: `"aVR"` matches `"AVR"` and
            `"Lead aVR"`).
        mean: optional per-lead means (one per lead), e.g. from a fitted
            `LeadStandardizer`; pass `std` with it.
        std: optional per-lead standard deviations (positive).
        window_seconds: duration of the sliding windows.
        stride_seconds: step between window starts.
        aggregation: `"mean"` (the paper's) or `"max"` of the window
            probabilities of a record.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    ```python
    standardizer = keras_ecg.data.LeadStandardizer().fit(train)
    preprocessor = ECGPreprocessor.from_standardizer(standardizer, sampling_rate=100)
    preprocessor.window_length, preprocessor.stride  # (250, 125)
    # Any rate and lead order in, the model's rate, order and scale out.
    ready = preprocessor.prepare("cinc2021/")  # an ECGDataset at 100 Hz
    ```
    """

    def __init__(
        self,
        sampling_rate=100,
        lead_names=STANDARD_LEADS,
        mean=None,
        std=None,
        window_seconds=2.5,
        stride_seconds=1.25,
        aggregation="mean",
        **kwargs,
    ):
        super().__init__(**kwargs)
        rate = float(sampling_rate)
        if isinstance(sampling_rate, bool) or not (math.isfinite(rate) and rate > 0):
            raise ValueError(
                f"ECGPreprocessor: sampling_rate must be a positive number, got "
                f"{sampling_rate!r}."
            )
        # Integral rates stay ints: `ECGDataset.sampling_rate` is an int.
        self.sampling_rate = int(rate) if rate.is_integer() else rate
        if isinstance(lead_names, str) or not lead_names:
            raise ValueError(
                "ECGPreprocessor: lead_names must be a non-empty sequence of lead "
                f"names, got {lead_names!r}."
            )
        self.lead_names = tuple(str(name) for name in lead_names)
        lowered = [lead_key(name) for name in self.lead_names]
        if len(set(lowered)) != len(lowered):
            raise ValueError(
                f"ECGPreprocessor: lead_names has duplicates: {list(self.lead_names)}."
            )
        self.mean, self.std = _check_statistics(mean, std, len(self.lead_names))
        self.window_seconds = float(window_seconds)
        self.stride_seconds = float(stride_seconds)
        # Refuses durations shorter than one sample at this rate.
        seconds_to_samples(self.window_seconds, self.sampling_rate, "window_seconds")
        seconds_to_samples(self.stride_seconds, self.sampling_rate, "stride_seconds")
        if aggregation not in AGGREGATIONS:
            raise ValueError(
                f"ECGPreprocessor: aggregation must be one of {AGGREGATIONS}, got "
                f"{aggregation!r}."
            )
        self.aggregation = aggregation
        # No weights: nothing to build, and nothing for `.keras` loading to
        # report as unbuilt.
        self.built = True

    @property
    def num_leads(self):
        return len(self.lead_names)

    @property
    def window_length(self):
        """Samples per window: `window_seconds * sampling_rate`, rounded."""
        return seconds_to_samples(self.window_seconds, self.sampling_rate)

    @property
    def stride(self):
        """Samples between window starts: `stride_seconds * sampling_rate`, rounded."""
        return seconds_to_samples(self.stride_seconds, self.sampling_rate)

    @property
    def standardizes(self):
        """Whether standardisation statistics are set."""
        return self.mean is not None

    def call(self, inputs):
        x = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        if self.mean is None:
            return x
        mean = ops.convert_to_tensor(np.asarray(self.mean), dtype=x.dtype)
        std = ops.convert_to_tensor(np.asarray(self.std), dtype=x.dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def standardize(self, signal):
        """`(signal - mean) / std` in float64, returned as float32 (numpy)."""
        signal = np.asarray(signal, dtype=np.float64)
        if self.mean is not None:
            signal = (signal - np.asarray(self.mean)) / np.asarray(self.std)
        return signal.astype(np.float32)

    def prepare(self, records, on_error="raise", recursive=True, standardize=True):
        """Reads and converts records to the model's rate, leads and scale.

        Every record is brought to `sampling_rate` (anti-aliased polyphase
        resampling, `keras_ecg.data.wfdb_folder.resample_signal`), its leads
        selected and reordered by name to `lead_names`, checked, and
        standardised with `mean` / `std`.

        Args:
            records: raw (not yet standardised) records, in mV, as one of
                - an `ECGDataset`, at any sampling rate that can be resampled
                  and in any lead order (matched by name);
                - a folder: every `*.hea` in it and every clinical export
                  ecgdatakit recognises from its content (see `recursive` and
                  `keras_ecg.data.ecg_formats.list_record_files`). A PTB-XL
                  folder (it holds `ptbxl_database.csv`) is read from the
                  `records100/` or `records500/` subfolder at `sampling_rate`
                  if there is one, else from `records500/` (or `records100/`)
                  resampled; record ids are then the `ecg_id`s as `str`;
                - a `.hea` path (a path without suffix names the record), a
                  clinical export (GE MUSE XML, Philips Sierra XML, HL7 aECG,
                  DICOM waveform, EDF/EDF+, SCP-ECG, recognised from its
                  content; limb leads it does not store are derived from I
                  and II), or a list of them.
            on_error: `"raise"` raises the first `ECGDataError`; `"skip"`
                drops bad records and emits one `ECGDataWarning` with their
                count and first messages.
            recursive: also read the `.hea` files of sub-folders of a folder.
            standardize: apply `mean` / `std` here. `False` leaves the
                records in mV, for a pipeline that standardises on the fly
                (`standardizer=preprocessor`); records of an `ECGDataset`
                already at `sampling_rate`, in `lead_names` order and
                float32 are then returned as they are (no copy, e.g. views
                of a memory-mapped cache).

        Returns:
            An `ECGDataset` at `sampling_rate` with `lead_names`, float32
            signals, standardised when statistics are set and
            `standardize`. Labels, folds and
            metadata of an input `ECGDataset` are kept for the kept records;
            records read from files get `metadata` with their `path`,
            `original_sampling_rate`, `original_length`, `format` (`"WFDB"`
            or the clinical format) and `derived_leads` (the limb leads
            computed from two stored ones, `[]` for none).

        Raises:
            ECGDataError: (naming the record and the problem) a missing lead
                that cannot be derived, a wrong number of leads, NaN/inf
                samples, a record shorter than one window, an unreadable,
                unrecognised or corrupt file or an unsupported rate; or no
                record left to return (`FormatsExtraMissingError` for a
                clinical export without the `formats` extra).
        """
        check_on_error(on_error)
        log = FailureLog(on_error)
        if isinstance(records, ECGDataset):
            prepared = self._prepare_dataset(records, log, standardize)
            source = "ECGDataset"
        else:
            sources, source = self._list_records(records, recursive)
            prepared = self._prepare_files(sources, log, standardize)
        log.warn(source, stacklevel=3)
        if not len(prepared):
            raise ECGDataError(source, "no readable records")
        return prepared

    def _prepare_dataset(self, data, log, standardize=True):
        kept, signals = [], []
        for i, (record_id, signal) in enumerate(
            zip(data.record_ids, data.signals, strict=True)
        ):
            try:
                signal = np.asarray(signal)
                if signal.ndim != 2 or signal.shape[1] != data.num_leads:
                    raise ECGDataError(
                        record_id,
                        f"wrong lead count: signal of shape {signal.shape} for the "
                        f"{data.num_leads} leads {list(data.lead_names)}",
                    )
                indices = resolve_leads(self.lead_names, data.lead_names, record_id)
                if list(indices) != list(range(signal.shape[1])):
                    # Indexing copies; records already in order stay views.
                    signal = signal[:, indices]
                bad = ~np.isfinite(signal)
                if bad.any():
                    raise ECGDataError(
                        record_id,
                        f"{int(bad.sum())} non-finite (NaN/inf) sample(s)",
                    )
                signal = resample_signal(
                    signal, data.sampling_rate, self.sampling_rate, record_id
                )
                signals.append(self._finish(signal, record_id, None, standardize))
            except ECGDataError as error:
                log.record(error)
                continue
            kept.append(i)
        if not kept:
            return []
        return dataclasses.replace(
            data.subset(kept),
            signals=signals,
            sampling_rate=self.sampling_rate,
            lead_names=self.lead_names,
        )

    def _prepare_files(self, sources, log, standardize=True):
        from keras_ecg.data.ecg_formats import read_record

        signals, record_ids, rows = [], [], []
        for record_id, header_path in sources:
            try:
                record = read_record(
                    header_path,
                    record_id,
                    leads=self.lead_names,
                    sampling_rate=self.sampling_rate,
                )
                signal = self._finish(
                    record.signal, record_id, header_path, standardize
                )
            except ECGDataError as error:
                log.record(error)
                continue
            signals.append(signal)
            record_ids.append(record_id)
            rows.append(
                {
                    "record_id": record_id,
                    "path": str(header_path),
                    "original_sampling_rate": record.original_sampling_rate,
                    "original_length": record.original_length,
                    "format": record.source_format,
                    "derived_leads": list(record.derived_leads),
                }
            )
            if record.derived_leads:
                logger.info(
                    "%s: %s derived from %s (Einthoven/Goldberger)",
                    record_id,
                    ", ".join(record.derived_leads),
                    " and ".join(record.derived_from),
                )
        if not signals:
            return []
        return ECGDataset(
            signals=signals,
            record_ids=record_ids,
            sampling_rate=self.sampling_rate,
            lead_names=self.lead_names,
            metadata=pd.DataFrame(rows).set_index("record_id"),
        )

    def _finish(self, signal, record_id, path=None, standardize=True):
        """Length check and standardisation of a resampled, reordered record."""
        length = len(signal)
        if length < self.window_length:
            raise ECGDataError(
                record_id,
                f"too short: {length} samples ({length / self.sampling_rate:g} s) "
                f"at {self.sampling_rate} Hz, shorter than one "
                f"{self.window_seconds:g} s window ({self.window_length} samples)",
                path,
            )
        if not standardize:
            return np.asarray(signal, dtype=np.float32)
        return self.standardize(signal)

    def _list_records(self, records, recursive):
        """`[(record_id, file)]` and a source name for messages."""
        from keras_ecg.data.ecg_formats import record_source

        if isinstance(records, (str, os.PathLike)):
            path = pathlib.Path(records).expanduser()
            if path.is_dir():
                return self._list_folder(path, recursive), str(path)
            record_id, file = record_source(path)
            if not file.exists():
                raise ECGDataError(
                    record_id,
                    "no such folder or WFDB header (.hea) file, nor ECG file",
                    path,
                )
            return [(record_id, file)], str(path)
        if isinstance(records, (list, tuple)) and all(
            isinstance(r, (str, os.PathLike)) for r in records
        ):
            if not records:
                raise ValueError("ECGPreprocessor.prepare: no records given.")
            return [record_source(pathlib.Path(r).expanduser()) for r in records], ""
        raise TypeError(
            "ECGPreprocessor.prepare: `records` must be an ECGDataset, a folder, a "
            "record file (`.hea` or a clinical export) or a list of them; got "
            f"{type(records).__name__}. Wrap arrays in an ECGDataset to state "
            "their sampling rate and leads."
        )

    def _list_folder(self, root, recursive):
        from keras_ecg.data.ecg_formats import list_record_files

        if (root / "ptbxl_database.csv").is_file():
            return self._list_ptbxl(root)
        sources = list_record_files(root, recursive)
        if not sources:
            raise ECGDataError(
                root,
                "no ECG records found (no .hea files, no recognised clinical exports)",
                root,
            )
        return sources

    def _list_ptbxl(self, root):
        # The subfolder at the model's rate if present; otherwise resample the
        # 500 Hz records, which hold more of the signal than the 100 Hz ones.
        names = ["records500", "records100"]
        own = f"records{self.sampling_rate}"
        if own in names:
            names.insert(0, own)
        for name in names:
            headers = sorted((root / name).glob("**/*.hea"))
            if headers:
                break
        else:
            raise ECGDataError(
                root, "PTB-XL folder with no records in records100/ or records500/"
            )
        sources = []
        for header in headers:
            match = _PTBXL_RECORD_NAME.match(header.stem)
            record_id = (
                str(int(match.group(1)))
                if match
                else header.relative_to(root).with_suffix("").as_posix()
            )
            sources.append((record_id, header))
        return sources

    @classmethod
    def from_data(
        cls,
        data,
        window_seconds=2.5,
        stride_seconds=1.25,
        aggregation="mean",
        **kwargs,
    ):
        """A preprocessor fitted on training records (in mV, not standardised).

        Takes the data's sampling rate and lead order and fits the per-lead
        statistics on its records (`keras_ecg.data.LeadStandardizer`).

        Args:
            data: the training `ECGDataset`.
            window_seconds, stride_seconds, aggregation, **kwargs: as for the
                constructor.

        Example:

        ```python
        preprocessor = ECGPreprocessor.from_data(train)
        train, val = preprocessor.prepare(train), preprocessor.prepare(val)
        ```
        """
        from keras_ecg.data.lead_standardizer import LeadStandardizer

        if not isinstance(data, ECGDataset):
            raise TypeError(
                f"ECGPreprocessor.from_data needs an ECGDataset, got "
                f"{type(data).__name__}."
            )
        return cls.from_standardizer(
            LeadStandardizer().fit(data),
            sampling_rate=data.sampling_rate,
            lead_names=list(data.lead_names),
            window_seconds=window_seconds,
            stride_seconds=stride_seconds,
            aggregation=aggregation,
            **kwargs,
        )

    @classmethod
    def from_standardizer(
        cls,
        standardizer,
        sampling_rate,
        lead_names=None,
        window_seconds=2.5,
        stride_seconds=1.25,
        aggregation="mean",
        **kwargs,
    ):
        """A preprocessor with the statistics of a fitted `LeadStandardizer`.

        Args:
            standardizer: a fitted `keras_ecg.data.LeadStandardizer`.
            sampling_rate: samples per second the statistics were fitted at
                (the model's rate).
            lead_names: the lead order; defaults to the standardizer's
                `lead_names`, else the 12 standard leads when it has 12.
            window_seconds, stride_seconds, aggregation: as for the
                constructor.
            **kwargs: further constructor arguments (`name`, ...).

        Returns:
            An `ECGPreprocessor`.
        """
        if not getattr(standardizer, "fitted", False):
            raise ValueError(
                "ECGPreprocessor.from_standardizer needs a fitted LeadStandardizer."
            )
        if lead_names is None:
            lead_names = standardizer.lead_names
        if lead_names is None:
            if len(standardizer.mean) != len(STANDARD_LEADS):
                raise ValueError(
                    f"The standardizer has {len(standardizer.mean)} leads and no "
                    "lead names; pass `lead_names`."
                )
            lead_names = STANDARD_LEADS
        return cls(
            sampling_rate=sampling_rate,
            lead_names=lead_names,
            mean=standardizer.mean,
            std=standardizer.std,
            window_seconds=window_seconds,
            stride_seconds=stride_seconds,
            aggregation=aggregation,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sampling_rate": self.sampling_rate,
                "lead_names": list(self.lead_names),
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std),
                "window_seconds": self.window_seconds,
                "stride_seconds": self.stride_seconds,
                "aggregation": self.aggregation,
            }
        )
        return config


def _check_statistics(mean, std, num_leads):
    """Validated `(mean, std)` as tuples of Python floats, or `(None, None)`."""
    if (mean is None) != (std is None):
        raise ValueError("ECGPreprocessor: pass both `mean` and `std`, or neither.")
    if mean is None:
        return None, None
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if mean.shape != (num_leads,) or std.shape != (num_leads,):
        raise ValueError(
            f"ECGPreprocessor: mean {mean.shape} and std {std.shape} must hold one "
            f"value per lead ({num_leads})."
        )
    if not np.all(np.isfinite(mean)):
        raise ValueError(f"ECGPreprocessor: mean must be finite, got {mean}.")
    if not (np.all(np.isfinite(std)) and np.all(std > 0)):
        raise ValueError(
            f"ECGPreprocessor: std must be positive and finite, got {std}."
        )
    # Plain floats keep the config JSON-serializable.
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class PreprocessorAttribute:
    """Mixin: a `preprocessor` attribute kept out of Keras' layer tracking.

    A preprocessor holds no weights, and a trained (built) model must accept
    one afterwards (`model.preprocessor = ...`), which Keras refuses for a
    tracked sub-layer. The model's `get_config` serializes it instead.
    """

    def __setattr__(self, name, value):
        if name == "preprocessor":
            if isinstance(value, dict):
                value = keras.saving.deserialize_keras_object(value)
            if value is not None and not isinstance(value, ECGPreprocessor):
                raise ValueError(
                    f"{type(self).__name__}: preprocessor must be an "
                    f"ECGPreprocessor, got {type(value).__name__}."
                )
            object.__setattr__(self, name, value)
            return
        super().__setattr__(name, value)
