"""Content fingerprints of ECG records: which test records a model has seen.

A pretrained model keeps the fingerprints of the records it was pretrained
on; a downstream run compares its test records with them. The fingerprint
depends on the ECG, not on how it is stored: PTB-XL's records as WFDB
`.dat` at 100 Hz (`records100`) or 500 Hz (`records500`), and the copies of
the same records in the PhysioNet/CinC Challenge 2021 (`HR*.mat`, 500 Hz)
match.

**Definition** (version 1). The 12 standard leads (I, II, III, aVR, aVL,
aVF, V1-V6, matched by name), in mV, resampled to 100 Hz with the loaders'
resampler (`scipy.signal.resample_poly`); the mean of each 0.5 s block from
0.5 s to 9.5 s (18 blocks x 12 leads, in uV; blocks past the end of a
shorter record are 0). Two records match when their fingerprints, scaled to
unit length, are within `MATCH_DISTANCE` (0.1) of each other.

Why not a hash of rounded samples: PTB-XL's `records100` are not a
resampling of `records500` that any rounding undoes. They were low-pass
filtered and decimated by PTB-XL itself, about 1 ms later than
`resample_poly` would place them: the same ECG differs by up to 0.3 mV in
single samples (at the QRS) between `records100` and `records500` resampled
to 100 Hz, so whatever quantum a hash rounds to, some of a record's 12,000
samples fall on both sides of a rounding boundary. Block means over 0.5 s
average that away (measured on the 434 PTB-XL records of this repository's
data at both rates: at most 0.031 apart, unit-scaled), while different
records stay far apart (closest 0.48 among 1,744 PTB-XL and 156 CinC
records). The first and last 0.5 s are left out: there the two decodings
differ by filter edge effects.

Records that are flat, or shorter than 1.5 s, have no usable fingerprint and
never match. Identical copies match whatever their amplitude scale (a copy
saved with another gain is still the same ECG).
"""

import math
import os

import numpy as np

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.leads import lead_key

FINGERPRINT_VERSION = 1
FINGERPRINT_RATE = 100  # Hz
SPAN_SECONDS = 10.0  # only the first 10 s of a record count
EDGE_SECONDS = 0.5  # left out at both ends of the span (filter edge effects)
BLOCK_SECONDS = 0.5
NUM_BLOCKS = int(round((SPAN_SECONDS - 2 * EDGE_SECONDS) / BLOCK_SECONDS))
# Unit-scaled distance below which two fingerprints are the same ECG: 3x the
# largest distance of one ECG in two decodings, a fifth of the smallest
# distance of two different ECGs (both measured; see the module docstring).
MATCH_DISTANCE = 0.1
DEFINITION = (
    f"keras-ecg record fingerprint v{FINGERPRINT_VERSION}: the 12 standard leads "
    f"at {FINGERPRINT_RATE} Hz (scipy resample_poly), mean of each "
    f"{BLOCK_SECONDS:g} s block from {EDGE_SECONDS:g} s to "
    f"{SPAN_SECONDS - EDGE_SECONDS:g} s in uV; records match when the "
    f"unit-scaled fingerprints are within {MATCH_DISTANCE:g}"
)
# A model's fingerprints are stored next to it: `pretrained.keras` ->
# `pretrained.fingerprints.npz`; in a preset folder as this file.
SIDECAR_SUFFIX = ".fingerprints.npz"
PRESET_FILE = "record_fingerprints.npz"
# The sets a fingerprints file may hold: the records a model was pretrained
# on, and those a classifier was trained and validated on.
SETS = ("pretraining", "training")

# A copy may be a sample shorter at 100 Hz (rounding of the resampled
# length): its last block may reach this many samples into the end margin.
_SLACK_SAMPLES = 2
_FLOAT16_MAX_UV = 65000.0


def record_fingerprint(signal, sampling_rate, lead_names=STANDARD_LEADS):
    """The fingerprint of one record (see the module docstring).

    Args:
        signal: `(num_timesteps, num_leads)` array in mV.
        sampling_rate: its samples per second.
        lead_names: names of its leads; the 12 standard leads must be among
            them (any order, any spelling `lead_key` matches).

    Returns:
        A `(NUM_BLOCKS, 12)` float32 array of block means in uV.

    Raises:
        ValueError: a standard lead is missing.

    Example:

    ```python
    data = keras_ecg.data.load_ptbxl("ptbxl/", sampling_rate=500)
    fingerprint = record_fingerprint(data.signals[0], 500, data.lead_names)
    ```
    """
    return _fingerprint(
        _span(signal, sampling_rate, _lead_columns(lead_names)), sampling_rate
    )


def _span(signal, sampling_rate, columns):
    """The first 10 s of the standard leads. Resampling a longer record whole
    changes the samples within 0.1 s of the cut only (the resampling
    filter's half length), which the 0.5 s edge leaves out."""
    length = int(math.ceil(SPAN_SECONDS * float(sampling_rate)))
    return np.asarray(signal)[:length, columns]


def _block_means(x):
    """`(NUM_BLOCKS, ...)` means in uV of the 100 Hz `x` (time first); blocks
    past the end are 0."""
    start = int(round(EDGE_SECONDS * FINGERPRINT_RATE))
    block = int(round(BLOCK_SECONDS * FINGERPRINT_RATE))
    end = min(len(x), int(round(SPAN_SECONDS * FINGERPRINT_RATE))) - start
    count = int(np.clip((end + _SLACK_SAMPLES - start) // block, 0, NUM_BLOCKS))
    out = np.zeros((NUM_BLOCKS,) + x.shape[1:], dtype=np.float64)
    if count:
        blocks = np.asarray(x[start : start + count * block], dtype=np.float64)
        out[:count] = blocks.reshape((count, block) + x.shape[1:]).mean(axis=1) * 1e3
    return out


def _fingerprint(span, sampling_rate):
    from keras_ecg.data.wfdb_folder import resample_signal

    x = resample_signal(
        np.asarray(span, dtype=np.float64), float(sampling_rate), FINGERPRINT_RATE
    )
    return np.clip(_block_means(x), -_FLOAT16_MAX_UV, _FLOAT16_MAX_UV).astype(
        np.float32
    )


def _lead_columns(lead_names):
    keys = [lead_key(name) for name in lead_names]
    missing = [name for name in STANDARD_LEADS if lead_key(name) not in keys]
    if missing:
        raise ValueError(
            f"record fingerprints need the 12 standard leads; missing {missing} "
            f"among {list(lead_names)}."
        )
    return [keys.index(lead_key(name)) for name in STANDARD_LEADS]


def fingerprint_distance(a, b):
    """The unit-scaled distance of two fingerprints (0: the same ECG; they
    match below `MATCH_DISTANCE`); `inf` when either is flat."""
    a, b = (np.asarray(v, dtype=np.float64).ravel() for v in (a, b))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return math.inf
    return float(np.linalg.norm(a / na - b / nb))


class RecordFingerprints:
    """The fingerprints of a set of records, e.g. those a model was
    pretrained on.

    Args:
        values: `(num_records, NUM_BLOCKS, 12)` block means in uV (see
            `record_fingerprint`); stored as float16.
        record_ids: one id per record, to name the matches.
        complete: False when the model also saw records that have no
            fingerprints here (it started from a model without them): a
            count of matches is then a lower bound.

    Example:

    ```python
    seen = RecordFingerprints.from_dataset(pretraining_data)
    test = RecordFingerprints.from_dataset(test_data)
    matches = seen.find(test)  # per test record: index in `seen`, or -1
    print(f"{(matches >= 0).sum()} of {len(test)} test records were seen")
    ```
    """

    def __init__(self, values, record_ids, complete=True):
        values = np.asarray(values, dtype=np.float16)
        if values.ndim != 3 or values.shape[1:] != (NUM_BLOCKS, len(STANDARD_LEADS)):
            values = values.reshape(-1, NUM_BLOCKS, len(STANDARD_LEADS))
        self.values = values
        self.record_ids = [str(r) for r in record_ids]
        if len(self.record_ids) != len(values):
            raise ValueError(
                f"{len(values)} fingerprints but {len(self.record_ids)} record ids."
            )
        self.complete = bool(complete)

    def __len__(self):
        return len(self.values)

    @classmethod
    def from_dataset(cls, data):
        """The fingerprints of every record of an `ECGDataset` in mV, or
        None when it lacks one of the 12 standard leads."""
        try:
            columns = _lead_columns(data.lead_names)
        except ValueError:
            return None
        values = np.zeros((len(data), NUM_BLOCKS, len(STANDARD_LEADS)), np.float16)
        for i, signal in enumerate(data.signals):
            span = _span(signal, data.sampling_rate, columns)
            values[i] = _fingerprint(span, data.sampling_rate)
        return cls(values, data.record_ids)

    @classmethod
    def empty(cls):
        """No records (a randomly initialised model saw none)."""
        return cls(np.zeros((0, NUM_BLOCKS, len(STANDARD_LEADS))), [])

    def concatenate(self, other):
        """The records of both sets (complete only if both are)."""
        return RecordFingerprints(
            np.concatenate([self.values, other.values]),
            self.record_ids + other.record_ids,
            complete=self.complete and other.complete,
        )

    def find(self, query, chunk=1024):
        """For each record of `query`, the index of a record of this set it
        matches, or -1.

        Args:
            query: a `RecordFingerprints`.
            chunk: query records compared at a time (bounds the memory to
                `chunk` x 8 `chunk` similarities).

        Returns:
            A `(len(query),)` int64 array.
        """
        found = np.full(len(query), -1, dtype=np.int64)
        if not len(self) or not len(query):
            return found
        # Flat records are zero rows: similarity 0, never a match.
        ours, theirs = _unit_rows(self.values), _unit_rows(query.values)
        # |a - b|^2 = 2 - 2 a.b for unit vectors.
        threshold = 1.0 - MATCH_DISTANCE**2 / 2.0
        best = np.full(len(query), -np.inf, dtype=np.float32)
        step = 8 * chunk
        for r in range(0, len(self), step):
            reference = ours[r : r + step].T
            for q in range(0, len(query), chunk):
                similarity = theirs[q : q + chunk] @ reference
                index = similarity.argmax(axis=1)
                value = similarity[np.arange(len(index)), index]
                better = value > best[q : q + chunk]
                best[q : q + chunk][better] = value[better]
                found[q : q + chunk][better] = index[better] + r
        found[best < threshold] = -1
        return found


def _unit_rows(values):
    """The fingerprints as unit-length float32 rows (zero rows stay zero)."""
    flat = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)


def sidecar_path(model_path):
    """Where the fingerprints of the model at `model_path` are kept:
    `runs/x/pretrained.keras` -> `runs/x/pretrained.fingerprints.npz`."""
    root, _ = os.path.splitext(os.fspath(model_path))
    return root + SIDECAR_SUFFIX


def save_fingerprints(path, sets):
    """Writes fingerprint sets to one `.npz` file (atomically).

    Args:
        path: the file.
        sets: dict from a name of `SETS` to a `RecordFingerprints`; a set that
            is not known is left out (a reader then says "unknown").
    """
    arrays = {
        "version": np.asarray(FINGERPRINT_VERSION),
        "definition": np.asarray(DEFINITION),
    }
    for name, fingerprints in sets.items():
        if name not in SETS:
            raise ValueError(f"unknown fingerprint set {name!r}; expected {SETS}.")
        arrays[f"{name}_values"] = fingerprints.values.astype(np.float16)
        arrays[f"{name}_record_ids"] = np.asarray(fingerprints.record_ids, dtype=str)
        arrays[f"{name}_complete"] = np.asarray(fingerprints.complete)
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    return path


def load_fingerprints(path):
    """The fingerprint sets of a file written by `save_fingerprints`.

    Returns:
        A dict from set name to `RecordFingerprints` (absent sets are unknown).

    Raises:
        ValueError: the file is unreadable, or of another fingerprint version
            (the message names the file).
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable record fingerprints ({error}).") from None
    version = int(arrays.get("version", -1))
    if version != FINGERPRINT_VERSION:
        raise ValueError(
            f"{path}: record fingerprints of version {version}; this keras-ecg "
            f"reads version {FINGERPRINT_VERSION}."
        )
    sets = {}
    for name in SETS:
        if f"{name}_values" in arrays:
            sets[name] = RecordFingerprints(
                arrays[f"{name}_values"],
                arrays[f"{name}_record_ids"].tolist(),
                complete=bool(arrays[f"{name}_complete"]),
            )
    return sets


def overlap(reference, query, examples=5):
    """How many records of `query` are in `reference`, for a report.

    Args:
        reference: the `RecordFingerprints` a model saw, or None (unknown).
        query: the `RecordFingerprints` of the records scored, or None (they
            could not be fingerprinted).
        examples: matched pairs to name.

    Returns:
        A dict: `records` (of `query`), `seen` (int, or None when unknown),
        `at_least` (True when `reference` is incomplete: `seen` is a lower
        bound) and `examples` (`[query_id, reference_id]` pairs).
    """
    if reference is None or query is None:
        return {"records": None if query is None else len(query), "seen": None}
    found = reference.find(query)
    matched = np.flatnonzero(found >= 0)
    return {
        "records": len(query),
        "seen": int(len(matched)),
        "at_least": not reference.complete,
        "examples": [
            [query.record_ids[i], reference.record_ids[found[i]]]
            for i in matched[:examples]
        ],
    }


def seen_by(sets):
    """Every record a model's weights were fitted to: the union of its sets.

    Args:
        sets: dict from set name to `RecordFingerprints` (`load_fingerprints`),
            or None (unknown).

    Returns:
        A `RecordFingerprints`, incomplete (`complete=False`) when the
        pretraining set is unknown or incomplete; None when nothing is known.
    """
    if not sets:
        return None
    union = None
    for name in SETS:
        if name in sets:
            union = sets[name] if union is None else union.concatenate(sets[name])
    if "pretraining" not in sets:
        union = RecordFingerprints(union.values, union.record_ids, complete=False)
    return union


def model_fingerprints(model_path):
    """The fingerprint sets kept beside a `.keras` model (`sidecar_path`), or
    None when it has none (saved by an older keras-ecg or elsewhere).

    Raises:
        ValueError: the file exists but cannot be read (names the file).
    """
    path = sidecar_path(model_path)
    return load_fingerprints(path) if os.path.isfile(path) else None


def preset_fingerprints(preset_dir):
    """The fingerprint sets of a preset folder (`PRESET_FILE`), or None."""
    path = os.path.join(os.fspath(preset_dir), PRESET_FILE)
    return load_fingerprints(path) if os.path.isfile(path) else None
