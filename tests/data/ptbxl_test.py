import ast
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import wfdb

from keras_ecg.data import ptbxl
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.ptbxl import LABEL_SETS
from keras_ecg.data.ptbxl import TEST_FOLDS
from keras_ecg.data.ptbxl import TRAIN_FOLDS
from keras_ecg.data.ptbxl import VAL_FOLDS
from keras_ecg.data.ptbxl import load_ptbxl
from keras_ecg.data.ptbxl import ptbxl_label_map
from keras_ecg.data.ptbxl import split_ptbxl

pytestmark = pytest.mark.backend_agnostic


def _load_with_warnings(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_ptbxl(*args, **kwargs)
    return dataset, [w for w in caught if issubclass(w.category, ECGDataWarning)]


@pytest.fixture(scope="module")
def csv(ptbxl_dir):
    database = pd.read_csv(ptbxl_dir / "ptbxl_database.csv", index_col="ecg_id")
    statements = pd.read_csv(ptbxl_dir / "scp_statements.csv", index_col=0)
    return database, statements


@pytest.fixture(scope="module")
def fold1(ptbxl_dir):
    return _load_with_warnings(ptbxl_dir, folds=[1])


def _on_disk(ptbxl_dir, database, column="filename_lr"):
    return database[
        [(ptbxl_dir / f"{name}.hea").is_file() for name in database[column]]
    ]


def test_label_set_class_counts(csv):
    _, statements = csv
    counts = {s: len(ptbxl_label_map(statements, s)[0]) for s in LABEL_SETS}
    assert counts == {
        "all": 71,
        "diagnostic": 44,
        "subdiagnostic": 23,
        "superdiagnostic": 5,
        "form": 19,
        "rhythm": 12,
    }
    classes, mapping = ptbxl_label_map(statements, "superdiagnostic")
    assert classes == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert mapping["IMI"] == "MI" and "SR" not in mapping  # rhythm is not diagnostic
    assert ptbxl_label_map(statements, "rhythm")[0] == sorted(
        statements.index[statements["rhythm"] == 1]
    )
    with pytest.raises(ValueError, match="label_set"):
        ptbxl_label_map(statements, "diag")


def test_fold1_records_labels_and_missing_warning(fold1, csv, ptbxl_dir):
    dataset, caught = fold1
    database, statements = csv
    expected_rows = _on_disk(ptbxl_dir, database[database["strat_fold"] == 1])
    assert dataset.record_ids == [str(i) for i in expected_rows.index]
    assert np.all(dataset.folds == 1)
    assert dataset.classes == sorted(statements.index)
    assert dataset.labels.shape == (len(dataset), 71)
    assert dataset.labels.dtype == np.float32
    # Independent parse of scp_codes: every key counts, whatever its likelihood.
    for i in (0, 1, len(dataset) // 2, len(dataset) - 1):
        ecg_id = int(dataset.record_ids[i])
        codes = ast.literal_eval(database.loc[ecg_id, "scp_codes"])
        positives = {
            c for c, v in zip(dataset.classes, dataset.labels[i], strict=True) if v
        }
        assert positives == set(codes), ecg_id
    pd.testing.assert_frame_equal(dataset.metadata, expected_rows)
    # The subset lacks most records: one warning, with the count.
    assert len(caught) == 1
    num_missing = int((database["strat_fold"] == 1).sum()) - len(expected_rows)
    assert f"{num_missing} of {(database['strat_fold'] == 1).sum()}" in str(
        caught[0].message
    )
    assert dataset.metadata.attrs["num_missing"] == num_missing


def test_signals_are_float32_mv_equal_to_wfdb(fold1, ptbxl_dir):
    dataset, _ = fold1
    assert dataset.lead_names == STANDARD_LEADS
    assert all(s.shape == (1000, 12) and s.dtype == np.float32 for s in dataset.signals)
    for i in (0, len(dataset) - 1):
        name = dataset.metadata["filename_lr"].iloc[i]
        raw, fields = wfdb.rdsamp(str(ptbxl_dir / name))
        assert [n.lower() for n in fields["sig_name"]] == [
            n.lower() for n in STANDARD_LEADS
        ]
        np.testing.assert_allclose(dataset.signals[i], raw, atol=1e-6)
    amplitude = np.abs(np.stack(dataset.signals[:20]))
    assert 0.5 < amplitude.max() < 30.0  # mV, not µV or ADC counts


def test_superdiagnostic_labels_and_unlabelled_drop(ptbxl_dir, csv):
    database, statements = csv
    dataset, _ = _load_with_warnings(ptbxl_dir, label_set="superdiagnostic", folds=[2])
    diagnostic = statements[statements["diagnostic"] == 1]
    rows = _on_disk(ptbxl_dir, database[database["strat_fold"] == 2])
    expected = {}
    for ecg_id, text in rows["scp_codes"].items():
        classes = {
            diagnostic.loc[c, "diagnostic_class"]
            for c in ast.literal_eval(text)
            if c in diagnostic.index
        }
        expected[str(ecg_id)] = classes
    kept = [i for i, c in expected.items() if c]
    assert dataset.record_ids == kept
    assert dataset.metadata.attrs["num_unlabelled_dropped"] == len(expected) - len(kept)
    assert len(expected) > len(kept)  # the subset has records without diagnosis
    for row, ecg_id in enumerate(dataset.record_ids):
        positives = {
            c for c, v in zip(dataset.classes, dataset.labels[row], strict=True) if v
        }
        assert positives == expected[ecg_id]
    kept_all, _ = _load_with_warnings(
        ptbxl_dir, label_set="superdiagnostic", folds=[2], drop_unlabelled=False
    )
    assert len(kept_all) == len(expected)
    assert int((kept_all.labels.sum(axis=1) == 0).sum()) == len(expected) - len(kept)


def test_500_hz_and_lead_selection(ptbxl_dir):
    full, _ = _load_with_warnings(ptbxl_dir, sampling_rate=500, folds=[3])
    assert len(full) > 0
    assert all(s.shape == (5000, 12) for s in full.signals)
    raw = wfdb.rdsamp(str(ptbxl_dir / full.metadata["filename_hr"].iloc[0]))[0]
    np.testing.assert_allclose(full.signals[0], raw, atol=1e-6)
    picked, _ = _load_with_warnings(
        ptbxl_dir, sampling_rate=500, folds=[3], leads=["v1", "AVR", "II"]
    )
    assert picked.lead_names == ("V1", "aVR", "II")
    np.testing.assert_array_equal(picked.signals[0], full.signals[0][:, [6, 3, 1]])


def test_split_constants_and_helper(fold1):
    assert TRAIN_FOLDS == tuple(range(1, 9)) and VAL_FOLDS == (9,)
    assert TEST_FOLDS == (10,)
    dataset, _ = fold1
    train, val, test = split_ptbxl(dataset)
    assert len(train) == len(dataset) and len(val) == 0 and len(test) == 0


def test_bad_arguments(ptbxl_dir, tmp_path):
    with pytest.raises(ECGDataError, match=r"unsupported sampling rate 250"):
        load_ptbxl(ptbxl_dir, sampling_rate=250)
    with pytest.raises(ValueError, match="label_set"):
        load_ptbxl(ptbxl_dir, label_set="diag")
    with pytest.raises(ValueError, match="unknown lead name 'V7'"):
        load_ptbxl(ptbxl_dir, leads=["I", "V7"])
    with pytest.raises(ECGDataError, match="ptbxl_database.csv not found"):
        load_ptbxl(tmp_path)


GOOD_IDS = (1, 2, 3)


def _write_row(rows, template, ecg_id, scp_codes=None):
    row = template.copy()
    row["filename_lr"] = f"records100/00000/{ecg_id:05d}_lr"
    if scp_codes is not None:
        row["scp_codes"] = scp_codes
    rows[ecg_id] = row


@pytest.fixture
def fake_ptbxl(tmp_path, ptbxl_dir, csv):
    """A tiny PTB-XL layout: three real records plus one per failure mode."""
    database, _ = csv
    root = tmp_path / "ptbxl"
    records = root / "records100" / "00000"
    records.mkdir(parents=True)
    os.symlink(ptbxl_dir / "scp_statements.csv", root / "scp_statements.csv")
    real = ptbxl_dir / "records100" / "00000"
    rows = {i: database.loc[i].copy() for i in GOOD_IDS}
    for i in GOOD_IDS:
        for suffix in (".hea", ".dat"):
            os.symlink(real / f"{i:05d}_lr{suffix}", records / f"{i:05d}_lr{suffix}")
    template = database.loc[1]
    header = (real / "00001_lr.hea").read_text()
    data = (real / "00001_lr.dat").read_bytes()

    def copy_record(ecg_id, header_text=header, payload=data):
        (records / f"{ecg_id:05d}_lr.hea").write_text(
            header_text.replace("00001_lr", f"{ecg_id:05d}_lr")
        )
        if payload is not None:
            (records / f"{ecg_id:05d}_lr.dat").write_bytes(payload)

    rng = np.random.default_rng(0)
    bad = {}
    copy_record(90001, payload=data[: len(data) // 3])
    bad[90001] = "truncated"
    nan_signal = rng.normal(size=(1000, 12)) * 0.1
    nan_signal[5, 0] = np.nan
    for ecg_id, signal, leads in (
        (90002, nan_signal, STANDARD_LEADS),
        (90003, rng.normal(size=(1000, 11)) * 0.1, STANDARD_LEADS[:11]),
    ):
        wfdb.wrsamp(
            f"{ecg_id:05d}_lr",
            fs=100,
            units=["mV"] * len(leads),
            sig_name=list(leads),
            p_signal=signal,
            fmt=["16"] * len(leads),
            write_dir=str(records),
        )
    bad[90002] = r"1 non-finite \(NaN"
    bad[90003] = r"lead\(s\) \['V6'\] not found: the record has 11"
    copy_record(90004)
    bad[90004] = r"unknown label\(s\) \['XYZ'\]"
    copy_record(90005, header_text=header.replace("00001_lr 12 100", "00001_lr 12 500"))
    bad[90005] = "unsupported sampling rate: header says 500 Hz"
    copy_record(90006, payload=None)
    bad[90006] = "signal file 90006_lr.dat not found"
    for ecg_id in bad:
        codes = "{'XYZ': 100.0}" if ecg_id == 90004 else None
        _write_row(rows, template, ecg_id, codes)
    _write_row(rows, template, 90007)  # listed but absent: warned, not an error

    def write_csv(ids):
        table = pd.DataFrame([rows[i] for i in ids], index=pd.Index(ids, name="ecg_id"))
        table.to_csv(root / "ptbxl_database.csv")

    write_csv(list(rows))
    return root, bad, write_csv


def test_each_bad_record_raises_one_clear_error(fake_ptbxl):
    root, bad, write_csv = fake_ptbxl
    for ecg_id, problem in bad.items():
        write_csv([*GOOD_IDS, ecg_id])
        with pytest.raises(ECGDataError, match=rf"^record {ecg_id}\b.*: {problem}"):
            load_ptbxl(root)


def test_skip_mode_keeps_good_records(fake_ptbxl, ptbxl_dir):
    root, bad, _ = fake_ptbxl
    dataset, caught = _load_with_warnings(root, on_error="skip")
    assert dataset.record_ids == [str(i) for i in GOOD_IDS]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "1 of 10 PTB-XL record(s)" in messages[0] and "90007" in messages[0]
    assert f"skipped {len(bad)} unreadable record(s)" in messages[1]
    raw = wfdb.rdsamp(str(ptbxl_dir / "records100" / "00000" / "00002_lr"))[0]
    np.testing.assert_allclose(dataset.signals[1], raw, atol=1e-6)
    assert dataset.metadata.attrs["num_failed"] == len(bad)


def test_cache_hit_skips_decoding(fake_ptbxl, tmp_path, monkeypatch):
    root, _, write_csv = fake_ptbxl
    write_csv(list(GOOD_IDS))
    first = load_ptbxl(root, cache_dir=tmp_path / "cache")

    def fail(*args, **kwargs):
        raise AssertionError("WFDB decoded despite a cache hit")

    monkeypatch.setattr(ptbxl, "read_wfdb_record", fail)
    second = load_ptbxl(root, cache_dir=tmp_path / "cache")
    assert second.record_ids == first.record_ids
    np.testing.assert_array_equal(second.labels, first.labels)
    pd.testing.assert_frame_equal(second.metadata, first.metadata)
    for a, b in zip(second.signals, first.signals, strict=True):
        assert isinstance(a, np.memmap)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="despite a cache hit"):
        load_ptbxl(root, cache_dir=tmp_path / "cache", leads=["I"])


def test_class_descriptions_and_vocabulary(fold1, csv, ptbxl_dir):
    dataset, _ = fold1
    _, statements = csv
    assert dataset.label_vocabulary == "scp"
    assert dataset.class_descriptions == [
        statements.loc[c, "description"] for c in dataset.classes
    ]
    assert dict(zip(dataset.classes, dataset.class_descriptions))["AFIB"] == (
        "atrial fibrillation"
    )
    assert dataset.subset([0]).class_descriptions == dataset.class_descriptions
    superdiagnostic, _ = _load_with_warnings(
        ptbxl_dir, label_set="superdiagnostic", folds=[2]
    )
    assert superdiagnostic.label_vocabulary == "scp_superdiagnostic"
    assert superdiagnostic.class_descriptions == [
        "conduction disturbance",
        "hypertrophy",
        "myocardial infarction",
        "normal ECG",
        "ST/T change",
    ]


def test_subdiagnostic_descriptions(csv):
    _, statements = csv
    classes, mapping = ptbxl_label_map(statements, "subdiagnostic")
    described = dict(
        zip(
            classes,
            ptbxl.ptbxl_class_descriptions(
                statements, "subdiagnostic", classes, mapping
            ),
            strict=True,
        )
    )
    # A subclass that is also a statement takes its description; "_AVB" is not
    # one and lists its three statements in the table's order.
    assert described["LVH"] == "left ventricular hypertrophy"
    assert described["_AVB"] == (
        "first degree AV block; third degree AV block; second degree AV block"
    )
    assert all(described.values())


def _write_metadata(root, drop_database=(), drop_statements=()):
    """Minimal valid PTB-XL csv files (one record), less the given columns."""
    root.mkdir(exist_ok=True)
    database = pd.DataFrame(
        {
            "ecg_id": [1],
            "patient_id": [7.0],
            "scp_codes": ["{'AFIB': 100.0}"],
            "strat_fold": [1],
            "filename_lr": ["records100/00000/00001_lr"],
            "filename_hr": ["records500/00000/00001_hr"],
        }
    )
    statements = pd.DataFrame(
        {
            "description": ["atrial fibrillation"],
            "diagnostic": [np.nan],
            "form": [np.nan],
            "rhythm": [1.0],
            "diagnostic_class": [np.nan],
            "diagnostic_subclass": [np.nan],
        },
        index=["AFIB"],
    )
    database.drop(columns=list(drop_database)).to_csv(
        root / "ptbxl_database.csv", index=False
    )
    statements.drop(columns=list(drop_statements)).to_csv(root / "scp_statements.csv")
    return root


@pytest.mark.parametrize(
    "drop_database, drop_statements, kwargs, message",
    [
        (
            (),
            ("diagnostic_class",),
            {"label_set": "superdiagnostic"},
            "column 'diagnostic_class' missing (needed by label_set='superdiagnostic')",
        ),
        (
            (),
            ("diagnostic", "diagnostic_subclass"),
            {"label_set": "subdiagnostic"},
            "columns 'diagnostic', 'diagnostic_subclass' "
            "missing (needed by label_set='subdiagnostic')",
        ),
        (
            (),
            ("rhythm",),
            {"label_set": "rhythm"},
            "column 'rhythm' missing (needed by label_set='rhythm')",
        ),
        (
            ("ecg_id",),
            (),
            {},
            "column 'ecg_id' missing (needed by the record ids)",
        ),
        (
            ("scp_codes", "strat_fold"),
            (),
            {},
            "column 'scp_codes' missing (needed by the "
            "labels); column 'strat_fold' missing (needed by the folds)",
        ),
        (
            ("filename_lr",),
            (),
            {},
            "column 'filename_lr' missing (needed by sampling_rate=100)",
        ),
        (
            ("filename_hr",),
            (),
            {"sampling_rate": 500},
            "column 'filename_hr' missing (needed by sampling_rate=500)",
        ),
    ],
)
def test_missing_metadata_column_names_file_column_and_need(
    tmp_path, drop_database, drop_statements, kwargs, message
):
    root = _write_metadata(tmp_path / "ptbxl", drop_database, drop_statements)
    with pytest.raises(ECGDataError) as caught:
        load_ptbxl(root, **kwargs)
    bad_file = "scp_statements.csv" if drop_statements else "ptbxl_database.csv"
    # The file's path, then the problem, e.g. "/data/ptbxl/scp_statements.csv:
    # column 'diagnostic_class' missing (needed by label_set='superdiagnostic')".
    assert str(caught.value) == f"{root / bad_file}: {message}"
    assert caught.value.record is None


def test_columns_a_call_does_not_need_may_be_absent(tmp_path):
    # Without filename_hr or the diagnostic columns, 100 Hz rhythm labels load.
    root = _write_metadata(
        tmp_path / "ptbxl",
        drop_database=("filename_hr",),
        drop_statements=("diagnostic", "diagnostic_class", "diagnostic_subclass"),
    )
    dataset, caught = _load_with_warnings(root, label_set="rhythm")
    assert len(dataset) == 0 and dataset.classes == ["AFIB"]
    assert "1 of 1 PTB-XL record(s)" in str(caught[0].message)


def test_label_map_names_the_missing_statement_column(csv):
    _, statements = csv
    with pytest.raises(ECGDataError, match=r"^scp_statements.csv: column 'form'"):
        ptbxl_label_map(statements.drop(columns="form"), "form")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"ecg_id,scp_codes,strat_fold,filename_lr\n", "has a header but no rows"),
        (
            b"ecg_id,scp_codes\n1,\"{'AFIB': 100.0}\n2,x\n",
            "unreadable csv: ParserError",
        ),
        (
            b"ecg_id,scp_codes\n1,\xff\xfe\n",
            "unreadable csv: UnicodeDecodeError",
        ),
    ],
)
def test_unreadable_or_empty_csv(tmp_path, content, message):
    root = _write_metadata(tmp_path / "ptbxl")
    (root / "ptbxl_database.csv").write_bytes(content)
    with pytest.raises(ECGDataError, match=re.escape(message)) as caught:
        load_ptbxl(root)
    assert str(caught.value).startswith(f"{root / 'ptbxl_database.csv'}: ")
