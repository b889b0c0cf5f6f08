"""Leakage guards of the splits: disjoint folds and fractions, whole patients."""

import numpy as np
import pandas as pd
import pytest

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.sources import split_dataset
from keras_ecg.data.splits import check_disjoint_folds
from keras_ecg.data.splits import check_fractions
from keras_ecg.data.splits import format_folds
from keras_ecg.data.splits import nested_fraction_indices
from keras_ecg.data.splits import patient_ids
from keras_ecg.data.splits import split_by_fractions
from keras_ecg.data.splits import split_summary
from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.evaluation.experiments import label_fraction_subset

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture(scope="module")
def ptbxl_rows(ptbxl_dir):
    """Every row of the real ptbxl_database.csv as a dataset (1-sample
    signals: the splits read only the metadata), without its folds."""
    database = pd.read_csv(ptbxl_dir / "ptbxl_database.csv", index_col="ecg_id")
    signal = np.zeros((1, 12), dtype=np.float32)
    return ECGDataset(
        signals=[signal] * len(database),
        record_ids=[str(i) for i in database.index],
        sampling_rate=100,
        metadata=database,
    )


def _patients(part):
    return set(part.metadata["patient_id"])


def test_shared_folds_name_both_flags_and_the_folds():
    check_disjoint_folds({"--train-folds": range(1, 9), "--val-folds": [9]})
    check_disjoint_folds({"a": [], "b": [], "c": []})
    scored = "their records would be used to select the epochs and then scored"
    cases = [
        (
            {"--val-folds": [9], "--test-folds": [9]},
            f"--val-folds 9 and --test-folds 9 share fold 9: {scored}",
        ),
        (
            {"--train-folds": range(1, 9), "--val-folds": [8]},
            "--train-folds 1-8 and --val-folds 8 share fold 8: their records "
            "would be trained on and then select the epochs",
        ),
        (
            {"train_folds": [1, 2, 3, 5], "val_folds": [6], "test_folds": [2, 3, 7]},
            "train_folds 1-3,5 and test_folds 2-3,7 share folds 2-3: their "
            "records would be trained on and then scored",
        ),
    ]
    for folds, message in cases:
        with pytest.raises(ValueError) as caught:
            check_disjoint_folds(folds)
        assert str(caught.value).startswith(message), str(caught.value)
        assert "\n" not in str(caught.value)
    assert format_folds([10, 1, 2, 3, 7, 8]) == "1-3,7-8,10"


def test_fractions_must_leave_training_records():
    check_fractions(0.1, 0.1)
    check_fractions(0.0, 0.0)
    with pytest.raises(ValueError) as caught:
        check_fractions(0.6, 0.5, names=("--val-fraction", "--test-fraction"))
    assert str(caught.value).startswith(
        "--val-fraction 0.6 and --test-fraction 0.5 add up to 1.1: the val and "
        "test records would overlap"
    )
    with pytest.raises(ValueError, match="add up to 1"):
        check_fractions(0.5, 0.5)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"expected a share in \[0, 1\)"):
            check_fractions(bad, 0.1)


def test_split_dataset_refuses_shared_folds_through_the_python_api():
    data = make_synthetic_ecg(num_records=20, duration_s=2.0, seed=0)
    with pytest.raises(ValueError, match="^val_folds 9 and test_folds 9 share fold 9"):
        split_dataset(data, val_folds=[9], test_folds=[9])
    with pytest.raises(ValueError, match="val_fraction 0.7 and test_fraction 0.4"):
        split_dataset(data, val_fraction=0.7, test_fraction=0.4)


def test_official_ptbxl_folds_are_patient_disjoint(ptbxl_rows):
    folds = ptbxl_rows.metadata["strat_fold"].groupby(ptbxl_rows.metadata["patient_id"])
    assert folds.nunique().max() == 1
    data = ECGDataset(
        signals=ptbxl_rows.signals,
        record_ids=ptbxl_rows.record_ids,
        sampling_rate=100,
        folds=ptbxl_rows.metadata["strat_fold"].to_numpy(),
        metadata=ptbxl_rows.metadata,
    )
    parts = split_dataset(data)
    summary = split_summary(data, parts)
    assert summary["by"] == "folds" and summary["patient_ids"]
    assert summary["patients_in_two_parts"] == 0
    assert summary["records"]["test"] == (data.folds == 10).sum()


def test_fraction_splits_keep_patients_whole_on_the_ptbxl_metadata(ptbxl_rows):
    n = len(ptbxl_rows)
    largest = ptbxl_rows.metadata.groupby("patient_id").size().max()
    train, val, test = split_dataset(ptbxl_rows, seed=3)
    parts = (train, val, test)
    assert sum(len(p) for p in parts) == n
    assert len(set().union(*(p.record_ids for p in parts))) == n
    for first, second in ((train, val), (train, test), (val, test)):
        assert not _patients(first) & _patients(second)
    # Each held-out part: its share, plus at most its last patient's records.
    for part in (val, test):
        assert round(0.1 * n) <= len(part) < round(0.1 * n) + largest
    assert split_summary(ptbxl_rows, parts)["patients_in_two_parts"] == 0
    assert split_dataset(ptbxl_rows, seed=3)[1].record_ids == val.record_ids
    assert split_dataset(ptbxl_rows, seed=4)[1].record_ids != val.record_ids
    # The same records split one by one would put patients in two parts.
    anonymous = ptbxl_rows.subset(np.arange(n))
    anonymous.metadata = None
    val_ids, test_ids, _ = split_by_fractions(anonymous, (0.1, 0.1), seed=3)
    anonymous_val = ptbxl_rows.subset(val_ids)
    anonymous_rest = ptbxl_rows.subset(np.setdiff1d(np.arange(n), val_ids))
    assert _patients(anonymous_val) & _patients(anonymous_rest)


def test_label_fractions_take_whole_patients_and_stay_nested(ptbxl_rows):
    data = ptbxl_rows.subset(np.flatnonzero(ptbxl_rows.metadata["strat_fold"] <= 8))
    counts = data.metadata.groupby("patient_id").size()
    subsets = {}
    for fraction in (0.01, 0.1, 0.5):
        subset = label_fraction_subset(data, fraction, seed=1)
        kept = subset.metadata.groupby("patient_id").size()
        # Every patient of the subset brings all of its records.
        assert (kept == counts[kept.index]).all()
        target = round(fraction * len(data))
        assert target <= len(subset) < target + counts.max()
        subsets[fraction] = set(subset.record_ids)
    assert subsets[0.01] < subsets[0.1] < subsets[0.5]


def test_without_patient_ids_splits_are_the_per_record_ones():
    # Data without patient ids splits as before the splits were grouped.
    data = make_synthetic_ecg(num_records=50, duration_s=2.0, seed=0)
    data.folds = None
    assert patient_ids(data) is None
    order = np.random.default_rng(7).permutation(50)
    train, val, test = split_dataset(data, val_fraction=0.2, test_fraction=0.1, seed=7)
    assert val.record_ids == [data.record_ids[i] for i in np.sort(order[:10])]
    assert test.record_ids == [data.record_ids[i] for i in np.sort(order[10:15])]
    assert len(train) == 35
    np.testing.assert_array_equal(
        nested_fraction_indices(data, 0.3, seed=2),
        np.sort(np.random.default_rng(2).permutation(50)[:15]),
    )
    assert split_summary(data, (train, val, test)) == {
        "by": "fractions",
        "records": {"train": 35, "val": 10, "test": 5},
        "patient_ids": False,
    }
