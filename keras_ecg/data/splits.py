"""Leakage guards of the splits: disjoint folds and fractions, patient groups.

Two checks run before any data is read or anything is written:

- `check_disjoint_folds`: no fold may be in two of train / val / test (a
  model would select epochs on, or be scored on, records it trained on);
- `check_fractions`: the val and test fractions of a folder without folds
  must leave training records.

And the random splits of records (`split_by_fractions`, the val / test
fractions of a folder without folds, and `nested_fraction_indices`, the
label-efficiency subsets) keep every patient whole where the data carries
patient ids (PTB-XL's `patient_id`): no patient has records in two parts.
PTB-XL's official `strat_fold`s are patient-disjoint already (Wagner et al.
2020: all records of a patient are in one fold).
"""

import numpy as np

PATIENT_COLUMN = "patient_id"


def check_disjoint_folds(folds):
    """Raises `ValueError` when two splits share a fold.

    Args:
        folds: dict from a split's name (the flag or argument the user set,
            e.g. `"--val-folds"`) to its fold numbers, in train, val, test
            order.

    Raises:
        ValueError: one line naming both splits and their shared folds, e.g.
            `--val-folds 9 and --test-folds 9 share fold 9`.

    Example:

    >>> check_disjoint_folds({"train_folds": [1, 2], "val_folds": [3]})
    >>> check_disjoint_folds({"train_folds": [1, 2], "val_folds": [2, 3]})
    Traceback (most recent call last):
        ...
    ValueError: train_folds 1-2 and val_folds 2-3 share fold 2: ...
    """
    names = list(folds)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sorted(set(folds[first]) & set(folds[second]))
            if shared:
                noun = "fold" if len(shared) == 1 else "folds"
                raise ValueError(
                    f"{first} {format_folds(folds[first])} and {second} "
                    f"{format_folds(folds[second])} share {noun} "
                    f"{format_folds(shared)}: their records would be "
                    f"{_overlap_consequence(first, second)}; choose disjoint folds."
                )


def _overlap_consequence(first, second):
    """What sharing records between two splits does, for the message."""
    kinds = {_split_kind(first), _split_kind(second)}
    if kinds == {"train", "val"}:
        return "trained on and then select the epochs"
    if kinds == {"train", "test"}:
        return "trained on and then scored"
    return "used to select the epochs and then scored"


def _split_kind(name):
    for kind in ("train", "val", "test"):
        if kind in name:
            return kind
    return name


def format_folds(folds):
    """`[1, 2, 3, 5]` -> `"1-3,5"`, as the fold flags are written."""
    values = sorted({int(f) for f in folds})
    parts, start = [], None
    for i, value in enumerate(values):
        if start is None:
            start = value
        if i + 1 == len(values) or values[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


def check_fractions(val_fraction, test_fraction, names=None):
    """Raises `ValueError` unless both fractions are in [0, 1) and leave
    training records (`val_fraction + test_fraction < 1`).

    Args:
        val_fraction: share of the records that validate.
        test_fraction: share of the records that test.
        names: how the user named them, for the message (default
            `("val_fraction", "test_fraction")`).
    """
    val_name, test_name = names or ("val_fraction", "test_fraction")
    for name, value in ((val_name, val_fraction), (test_name, test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} {value:g}: expected a share in [0, 1).")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"{val_name} {val_fraction:g} and {test_name} {test_fraction:g} add up "
            f"to {val_fraction + test_fraction:g}: the val and test records would "
            "overlap or leave no training records; their sum must be below 1."
        )


def patient_ids(data):
    """The patient of each record of `data`, or None where it has none.

    Read from the `patient_id` column of `data.metadata` (PTB-XL's
    `ptbxl_database.csv` has it). A record with a missing id is a patient of
    its own.

    Returns:
        A `(num_records,)` object array of group keys, or None.
    """
    metadata = getattr(data, "metadata", None)
    columns = getattr(metadata, "columns", ())
    if metadata is None or PATIENT_COLUMN not in columns:
        return None
    values = metadata[PATIENT_COLUMN].to_numpy()
    if len(values) != len(data):
        return None
    keys = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        missing = value is None or (isinstance(value, float) and np.isnan(value))
        keys[i] = ("record", i) if missing else ("patient", str(value))
    return keys


def _group_order(num_records, groups, seed):
    """Record indices in a seeded order of their groups, and the number of
    records after each group (`(order, ends)`).

    Without groups every record is its own group, in
    `np.random.default_rng(seed).permutation(num_records)` order (the order
    the splits had before they were grouped, so such data splits as before).
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(num_records)
        return order, np.arange(1, num_records + 1)
    # Groups in order of first appearance, so the result does not depend on
    # how the keys sort.
    first = {}
    codes = np.empty(num_records, dtype=np.int64)
    for i, key in enumerate(groups):
        codes[i] = first.setdefault(key, len(first))
    members = [[] for _ in range(len(first))]
    for i, code in enumerate(codes):
        members[code].append(i)
    permuted = [members[g] for g in rng.permutation(len(members))]
    order = np.asarray([i for group in permuted for i in group], dtype=np.int64)
    ends = np.cumsum([len(group) for group in permuted])
    return order, ends


def _cut(ends, count):
    """Records in the shortest prefix of groups holding at least `count`."""
    if count <= 0:
        return 0
    position = int(np.searchsorted(ends, count, side="left"))
    return int(ends[min(position, len(ends) - 1)])


def split_by_fractions(data, fractions, seed=0):
    """Seeded random parts of `data` that never split a patient.

    The patients (`patient_ids`; every record its own where there are none)
    are shuffled under `seed`, and part after part takes whole patients until
    it holds at least its share of the records; the last part takes the rest.
    A part may hence hold a few records more than its share (at most the
    records of its last patient). scikit-learn's `GroupShuffleSplit` sizes
    parts by the number of patients, not records, hence this.

    Args:
        data: an `ECGDataset`.
        fractions: the shares of all parts but the last, e.g. `(0.1, 0.1)`
            for `(val, test, train)`.
        seed: seeds the order of the patients.

    Returns:
        A list of `len(fractions) + 1` sorted index arrays.

    Example:

    ```python
    val, test, train = split_by_fractions(data, (0.1, 0.1), seed=0)
    ```
    """
    n = len(data)
    order, ends = _group_order(n, patient_ids(data), seed)
    parts, start, target = [], 0, 0
    for fraction in fractions:
        target += int(round(fraction * n))
        stop = max(start, _cut(ends, target))
        parts.append(np.sort(order[start:stop]))
        start = stop
    parts.append(np.sort(order[start:]))
    return parts


def nested_fraction_indices(data, fraction, seed=0):
    """Indices of a seeded subset holding `fraction` of the records (at least
    one), whole patients only.

    The same `seed` and a larger fraction give a superset (nested subsets);
    a patient's records are all in or all out. Without patient ids every
    record is its own patient, and exactly `round(fraction * n)` records are
    kept.

    Args:
        data: an `ECGDataset`.
        fraction: in (0, 1].
        seed: seeds the order of the patients.

    Returns:
        A sorted index array.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    n = len(data)
    order, ends = _group_order(n, patient_ids(data), seed)
    count = max(1, int(round(fraction * n)))
    return np.sort(order[: _cut(ends, count)])


def split_summary(data, parts, names=("train", "val", "test")):
    """What the results record about a split: records, and where the data
    carries patient ids, patients per part and patients in two parts.

    Args:
        data: an `ECGDataset` whose `metadata` may hold `patient_id`.
        parts: the split `ECGDataset`s.
        names: their names.
    """
    summary = {
        "by": "folds" if getattr(data, "folds", None) is not None else "fractions",
        "records": {name: len(part) for name, part in zip(names, parts)},
        "patient_ids": patient_ids(data) is not None,
    }
    if not summary["patient_ids"]:
        return summary
    sets = {}
    for name, part in zip(names, parts):
        keys = patient_ids(part)
        sets[name] = set() if keys is None else set(keys)
    summary["patients"] = {name: len(keys) for name, keys in sets.items()}
    shared = set()
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared |= sets[first] & sets[second]
    summary["patients_in_two_parts"] = len(shared)
    return summary
