import numpy as np
import pytest

from keras_ecg.data.sources import detect_source
from keras_ecg.data.sources import load_source
from keras_ecg.data.sources import load_splits
from keras_ecg.data.sources import split_dataset
from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.data.wfdb_folder import read_wfdb_record

pytestmark = pytest.mark.backend_agnostic


def test_detect_source(ptbxl_dir, cinc_dir, tmp_path):
    assert detect_source("synthetic") == "synthetic"
    assert detect_source(str(ptbxl_dir)) == "ptbxl"
    assert detect_source(str(cinc_dir)) == "wfdb"
    with pytest.raises(FileNotFoundError, match="neither"):
        detect_source(str(tmp_path / "missing"))


def test_one_file_is_a_source(cinc_dir):
    # One record (a .hea here; a clinical export alike): a dataset of one.
    header = cinc_dir / "A0689.hea"
    assert detect_source(str(header)) == "file"
    data = load_source(str(header), sampling_rate=100)
    assert data.record_ids == ["A0689"]
    expected = read_wfdb_record(header, sampling_rate=100).signal
    np.testing.assert_array_equal(data.signals[0], expected)


def test_fold_split_and_standardisation_fitted_on_train_only():
    splits = load_splits("synthetic", num_synthetic_records=100, seed=1)
    data = make_synthetic_ecg(num_records=100, seed=1)
    raw_train, _, raw_test = split_dataset(data)
    assert len(splits.train) == len(raw_train) and len(splits.test) == len(raw_test)
    stacked = np.concatenate([np.asarray(s) for s in raw_train.signals])
    mean, std = stacked.mean(0), stacked.std(0)
    expected = (np.asarray(raw_test.signals[0]) - mean) / std
    np.testing.assert_allclose(splits.test.signals[0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(splits.raw_test.signals[0], raw_test.signals[0])
    assert set(splits.train.folds) == set(range(1, 9))
    assert set(splits.test.folds) == {10}


def test_splits_in_mv_with_the_standardizer_make_no_copy(monkeypatch):
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    standardised = load_splits("synthetic", num_synthetic_records=100, seed=1)

    def refuse(self, data):
        raise AssertionError("LeadStandardizer.transform copied the data")

    monkeypatch.setattr(LeadStandardizer, "transform", refuse)
    raw = load_splits("synthetic", num_synthetic_records=100, seed=1, standardize=False)
    data = make_synthetic_ecg(num_records=100, seed=1)
    for ours, theirs in zip(raw[:3], split_dataset(data), strict=True):
        assert ours.record_ids == theirs.record_ids
        for a, b in zip(ours.signals, theirs.signals, strict=True):
            np.testing.assert_array_equal(a, b)
    assert raw.raw_test is raw.test
    np.testing.assert_array_equal(raw.standardizer.mean, standardised.standardizer.mean)
    np.testing.assert_array_equal(raw.standardizer.std, standardised.standardizer.std)
    # Applied later (as the pipelines do), the statistics give the copies.
    np.testing.assert_array_equal(
        raw.standardizer._apply(raw.val.signals[0]), standardised.val.signals[0]
    )


def test_missing_test_fold_falls_back_to_val_when_asked(ptbxl_dir):
    splits = load_splits(str(ptbxl_dir), test_falls_back_to_val=True)
    assert set(splits.test.folds) == {9}
    assert splits.test.record_ids == splits.val.record_ids
    no_fallback = load_splits(str(ptbxl_dir))
    assert len(no_fallback.test) == 0


def test_random_split_without_folds_is_disjoint_and_seeded(cinc_dir):
    from keras_ecg.data.wfdb_folder import load_wfdb_folder

    data = load_wfdb_folder(str(cinc_dir))
    train, val, test = split_dataset(data, seed=3)
    ids = [set(d.record_ids) for d in (train, val, test)]
    assert sum(len(i) for i in ids) == len(data) == len(set().union(*ids))
    assert split_dataset(data, seed=3)[1].record_ids == val.record_ids


def test_wfdb_folders_get_the_label_set(cinc_dir, tmp_path):
    from keras_ecg.data.sources import load_source

    folder = tmp_path / "cinc"
    folder.mkdir()
    for name in ("A1041", "E00271"):
        for suffix in (".hea", ".mat"):
            (folder / f"{name}{suffix}").symlink_to(cinc_dir / f"{name}{suffix}")
    scored = load_source(str(folder), label_set="scored")
    assert len(scored.classes) == 26 and scored.label_vocabulary == "snomed"
    # A1041: 164889003,164909002; E00271: 59118001 (RBBB, scored with CRBBB).
    positives = [
        {c for c, v in zip(scored.classes, row, strict=True) if v}
        for row in scored.labels
    ]
    assert positives == [
        {"164889003", "733534002|164909002"},
        {"713427006|59118001"},
    ]
    with pytest.raises(ValueError, match="apply to PTB-XL folders"):
        load_splits(str(folder), label_set="superdiagnostic")
