"""The in-memory container every reader returns and every pipeline consumes."""

import dataclasses

import numpy as np

STANDARD_LEADS = (
    "I",
    "II",
    "III",
    "aVR",
    "aVL",
    "aVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)

# Names of the code systems `ECGDataset.classes` can be in. PTB-XL's statement
# level label sets (and the synthetic generator) use SCP-ECG statement codes;
# its aggregated sets use PTB-XL's own diagnostic sub/superclass names, which
# are not statements (the subclass "AMI" groups every anterior infarct).
SCP = "scp"
SCP_SUBDIAGNOSTIC = "scp_subdiagnostic"
SCP_SUPERDIAGNOSTIC = "scp_superdiagnostic"
SNOMED = "snomed"
LABEL_VOCABULARIES = (SCP, SCP_SUBDIAGNOSTIC, SCP_SUPERDIAGNOSTIC, SNOMED)


@dataclasses.dataclass
class ECGDataset:
    """A set of ECG records with optional multi-hot labels.

    Records may differ in length, so `signals` is a sequence of
    `(num_timesteps_i, num_leads)` float32 arrays (views into one memmap when the
    reader's cache is used). `labels` rows align with `signals`.

    Args:
        signals: sequence of `(num_timesteps_i, num_leads)` float32 arrays, mV.
        record_ids: one identifier per record (e.g. the PTB-XL `ecg_id` or the
            WFDB record name), used in error messages and to aggregate windows.
        sampling_rate: samples per second of every record.
        lead_names: names of the lead axis, in order.
        labels: optional `(num_records, num_classes)` float32 multi-hot array.
        classes: class names for the label columns.
        folds: optional `(num_records,)` int array (PTB-XL `strat_fold`).
        metadata: optional `pandas.DataFrame` with one row per record.
        class_descriptions: optional list aligned with `classes` of
            human-readable names (e.g. "atrial fibrillation"); an entry is
            `None` where the source table has none.
        label_vocabulary: the code system of `classes`, one of
            `LABEL_VOCABULARIES` (`"scp"` for PTB-XL statements, `"snomed"`
            for SNOMED-CT codes of CinC folders), or `None` when unknown.
    """

    signals: "list[np.ndarray] | np.ndarray"
    record_ids: list
    sampling_rate: int
    lead_names: tuple = STANDARD_LEADS
    labels: "np.ndarray | None" = None
    classes: list = dataclasses.field(default_factory=list)
    folds: "np.ndarray | None" = None
    metadata: object = None
    class_descriptions: "list | None" = None
    label_vocabulary: "str | None" = None

    def __post_init__(self):
        if len(self.signals) != len(self.record_ids):
            raise ValueError(
                f"{len(self.signals)} signals but {len(self.record_ids)} record ids."
            )
        if self.labels is not None and len(self.labels) != len(self.signals):
            raise ValueError(
                f"{len(self.labels)} label rows but {len(self.signals)} signals."
            )
        if self.folds is not None and len(self.folds) != len(self.signals):
            raise ValueError(
                f"{len(self.folds)} folds but {len(self.signals)} signals."
            )
        if self.class_descriptions is not None and len(self.class_descriptions) != len(
            self.classes
        ):
            raise ValueError(
                f"{len(self.class_descriptions)} class descriptions but "
                f"{len(self.classes)} classes."
            )
        if (
            self.label_vocabulary is not None
            and self.label_vocabulary not in LABEL_VOCABULARIES
        ):
            raise ValueError(
                f"label_vocabulary must be one of {LABEL_VOCABULARIES} or None, "
                f"got {self.label_vocabulary!r}."
            )

    def __len__(self):
        return len(self.signals)

    @property
    def num_leads(self):
        return len(self.lead_names)

    @property
    def num_classes(self):
        return len(self.classes)

    def subset(self, indices):
        """Returns a new `ECGDataset` holding the records at `indices`."""
        indices = np.asarray(indices, dtype=np.int64)
        metadata = self.metadata
        if metadata is not None and hasattr(metadata, "iloc"):
            metadata = metadata.iloc[indices]
        return ECGDataset(
            signals=[self.signals[i] for i in indices],
            record_ids=[self.record_ids[i] for i in indices],
            sampling_rate=self.sampling_rate,
            lead_names=tuple(self.lead_names),
            labels=None if self.labels is None else self.labels[indices],
            classes=list(self.classes),
            folds=None if self.folds is None else self.folds[indices],
            metadata=metadata,
            class_descriptions=None
            if self.class_descriptions is None
            else list(self.class_descriptions),
            label_vocabulary=self.label_vocabulary,
        )

    def select_folds(self, folds):
        """Returns the records whose `folds` value is in `folds`."""
        if self.folds is None:
            raise ValueError("This dataset has no fold assignment.")
        return self.subset(np.flatnonzero(np.isin(self.folds, list(folds))))

    def to_array(self):
        """Stacks equal-length records into `(num_records, timesteps, leads)`."""
        lengths = {len(s) for s in self.signals}
        if len(lengths) > 1:
            raise ValueError(
                f"Records differ in length ({sorted(lengths)[:5]}...); crop or "
                "window them with `keras_ecg.data.pipelines` instead."
            )
        return np.stack([np.asarray(s, dtype=np.float32) for s in self.signals])
