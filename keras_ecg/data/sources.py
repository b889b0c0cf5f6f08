"""One entry point for "the data at this path": PTB-XL, a folder of records (WFDB
and clinical exports), one record file, or synthetic."""

import collections
import os

from keras_ecg.data.ptbxl import TEST_FOLDS
from keras_ecg.data.ptbxl import TRAIN_FOLDS
from keras_ecg.data.ptbxl import VAL_FOLDS
from keras_ecg.data.splits import check_disjoint_folds
from keras_ecg.data.splits import check_fractions
from keras_ecg.data.splits import split_by_fractions

SYNTHETIC = "synthetic"


def detect_source(path):
    """`"synthetic"`, `"ptbxl"`, `"wfdb"` (a folder) or `"file"` for `--data`.

    A `"wfdb"` folder may also hold clinical exports, and a `"file"` is one
    record: a WFDB `.hea` or a clinical export (see
    `keras_ecg.data.ecg_formats`); their formats are recognised when read.
    """
    if path == SYNTHETIC:
        return SYNTHETIC
    if os.path.isfile(path):
        return "file"
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"--data {path!r} is neither 'synthetic' nor an existing folder or file."
        )
    if os.path.exists(os.path.join(path, "ptbxl_database.csv")):
        return "ptbxl"
    return "wfdb"


def load_source(
    path,
    sampling_rate=100,
    label_set="all",
    num_synthetic_records=1200,
    cache_dir=None,
    on_error="raise",
    seed=0,
    progress=False,
):
    """Loads `path` as an `ECGDataset` (see `detect_source`).

    Args:
        path: `"synthetic"`, a PTB-XL folder (with `ptbxl_database.csv`), a
            folder of WFDB records (PhysioNet/CinC layout) and clinical ECG
            exports, or one record file (see `detect_source`).
        sampling_rate: target sampling rate in Hz.
        label_set: for PTB-XL one of `keras_ecg.data.LABEL_SETS` (`"all"`,
            `"diagnostic"`, ...); for a WFDB folder one of `WFDB_LABEL_SETS`
            (`"all"` SNOMED codes found, or the Challenge 2021's `"scored"`
            classes); `"all"` for synthetic data (its classes).
        num_synthetic_records: size of the synthetic dataset.
        cache_dir: where decoded signals are cached (real data only):
            `None` for `keras_ecg.data.signal_cache.default_cache_dir()`, a
            folder, or `False` / `"none"` to decode into RAM.
        on_error: `"raise"` or `"skip"` for bad records.
        seed: seed of the synthetic generator.
        progress: print reading progress of real records.
    """
    source = detect_source(path)
    if source == SYNTHETIC:
        if label_set != "all":
            raise ValueError(
                f"label_set {label_set!r} does not apply to the synthetic data, "
                "which has one label set ('all', its classes)."
            )
        from keras_ecg.data.synthetic import make_synthetic_ecg

        return make_synthetic_ecg(
            num_records=num_synthetic_records, sampling_rate=sampling_rate, seed=seed
        )
    if source == "ptbxl":
        from keras_ecg.data.ptbxl import load_ptbxl

        return load_ptbxl(
            path,
            sampling_rate=sampling_rate,
            label_set=label_set,
            cache_dir=cache_dir,
            on_error=on_error,
            progress=progress,
        )
    from keras_ecg.data.wfdb_folder import load_wfdb_folder

    return load_wfdb_folder(
        path,
        sampling_rate=sampling_rate,
        cache_dir=cache_dir,
        on_error=on_error,
        label_set=label_set,
        progress=progress,
    )


def split_dataset(
    data,
    train_folds=TRAIN_FOLDS,
    val_folds=VAL_FOLDS,
    test_folds=TEST_FOLDS,
    val_fraction=0.1,
    test_fraction=0.1,
    seed=0,
):
    """Splits into `(train, val, test)`.

    With folds (PTB-XL, synthetic) the fold lists decide; a split whose folds are
    absent comes back empty (the PTB-XL subset here has no fold 10). Without
    folds (a plain WFDB folder), records are split at random under `seed`,
    whole patients at a time where the data carries patient ids
    (`keras_ecg.data.splits.split_by_fractions`).

    Raises:
        ValueError: two fold lists share a fold, or the fractions are not in
            [0, 1) or add up to 1 or more (`keras_ecg.data.splits`); checked
            whether or not the data has folds.
    """
    check_disjoint_folds(
        {"train_folds": train_folds, "val_folds": val_folds, "test_folds": test_folds}
    )
    check_fractions(val_fraction, test_fraction)
    if data.folds is not None:
        return tuple(
            data.select_folds(folds) for folds in (train_folds, val_folds, test_folds)
        )
    val, test, train = split_by_fractions(data, (val_fraction, test_fraction), seed)
    return data.subset(train), data.subset(val), data.subset(test)


class Splits(
    collections.namedtuple(
        "Splits", ["train", "val", "test", "standardizer", "raw_test"]
    )
):
    """Train/val/test splits, the standardiser and the raw test set.

    The splits are standardised copies, or (`load_splits(standardize=False)`)
    the records in mV, for pipelines that apply `standardizer` on the fly.
    `raw_test` keeps the test records in mV, for experiments (noise robustness)
    whose corruption is defined in physical units before standardisation.
    """


def load_splits(
    path,
    sampling_rate=100,
    label_set="all",
    num_synthetic_records=1200,
    cache_dir=None,
    on_error="raise",
    seed=0,
    standardizer=None,
    test_falls_back_to_val=False,
    standardize=True,
):
    """Loads `path`, splits it and standardises every lead on the train split.

    Args:
        path, sampling_rate, label_set, num_synthetic_records, cache_dir,
            on_error, seed: as in `load_source`.
        standardizer: a fitted `LeadStandardizer` to reuse (e.g. the one saved
            with a pretrained model); `None` fits one on the train split.
        test_falls_back_to_val: when the data has no test records (the PTB-XL
            subset without fold 10), use the validation records as test and
            say so.
        standardize: return standardised copies of the splits. `False`
            returns them in mV with the fitted `standardizer`, to pass as
            `standardizer=` to the pipelines and `train_downstream` /
            `evaluate_records` / `extract_embeddings`: no standardised copy
            of the data is made (it may be a memory-mapped cache).

    Returns:
        A `Splits` named tuple.
    """
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    data = load_source(
        path,
        sampling_rate=sampling_rate,
        label_set=label_set,
        num_synthetic_records=num_synthetic_records,
        cache_dir=cache_dir,
        on_error=on_error,
        seed=seed,
    )
    train, val, test = split_dataset(data, seed=seed)
    if len(test) == 0 and test_falls_back_to_val:
        print("No test records (e.g. fold 10 missing): the validation split stands in.")
        test = val
    if standardizer is None:
        standardizer = LeadStandardizer().fit(train)
    if not standardize:
        return Splits(train, val, test, standardizer, test)
    return Splits(
        *(standardizer.transform(d) for d in (train, val, test)), standardizer, test
    )
