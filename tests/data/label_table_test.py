import numpy as np
import pytest

from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.label_table import apply_label_table
from keras_ecg.data.label_table import read_label_table
from keras_ecg.data.label_table import table_vocabulary

pytestmark = pytest.mark.backend_agnostic


def _write(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_codes_column_gives_one_class_per_code(tmp_path):
    path = _write(
        tmp_path,
        'record_id,labels\na.xml,"NORM"\nb.scp,IMI; AFIB\nsub/c.dcm,\nd,1AVB,AFIB\n',
    )
    # Unquoted "d,1AVB,AFIB" has a third field: an error on one line.
    with pytest.raises(ECGDataError, match=r"unreadable label table.* line 5") as e:
        read_label_table(path)
    assert "\n" not in str(e.value)
    path = _write(
        tmp_path,
        'record_id,labels\na.xml,"NORM"\nb.scp,IMI; AFIB\nsub/c.dcm,\nd,"1AVB,AFIB"\n',
    )
    ids, classes, labels = read_label_table(path)
    assert ids == ["a.xml", "b.scp", "sub/c.dcm", "d"]
    assert classes == ["1AVB", "AFIB", "IMI", "NORM"]
    expected = [[0, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]]
    np.testing.assert_array_equal(labels, expected)


def test_class_columns_hold_zero_or_one(tmp_path):
    path = _write(tmp_path, "record_id,NORM,MI\na,1,0\nb,0,1.0\n")
    ids, classes, labels = read_label_table(path)
    assert (ids, classes) == (["a", "b"], ["NORM", "MI"])
    np.testing.assert_array_equal(labels, [[1, 0], [0, 1]])
    bad = _write(tmp_path, "record_id,NORM,MI\na,1,0\nb,yes,1\n", "bad.csv")
    with pytest.raises(ECGDataError, match=r"bad\.csv.*'NORM' holds 'yes'.*'b'"):
        read_label_table(bad)
    for text, problem in (
        ("file,NORM\na,1\n", "no 'record_id' column"),
        ("record_id,labels,NORM\na,MI,1\n", r"other columns \['NORM'\]"),
        ("record_id,NORM\na,1\na,0\n", r"\['a'\] more than once"),
        ("record_id,labels\na,\n", "names no class"),
    ):
        with pytest.raises(ECGDataError, match=problem):
            read_label_table(_write(tmp_path, text, "t.csv"))


def test_vocabulary_snomed_codes_are_digits():
    assert table_vocabulary(["164889003", "426783006|427393009"], "scp") == "snomed"
    assert table_vocabulary(["1AVB", "NORM"], "scp") == "scp"
    assert table_vocabulary(["MI", "NORM"], "scp_superdiagnostic") == (
        "scp_superdiagnostic"
    )
    # SCP statements for a SNOMED model: mapped through the packaged table.
    assert table_vocabulary(["AFIB"], "snomed") == "scp"


def test_apply_label_table_follows_the_record_order(tmp_path):
    data = ECGDataset(
        signals=[np.zeros((10, 12), "float32")] * 3,
        record_ids=["c.xml", "a", "b.scp"],
        sampling_rate=100,
    )
    path = _write(tmp_path, "record_id,labels\na,164889003\nb.scp,\nc.xml,164889003\n")
    labelled, unused = apply_label_table(data, path, "scp")
    assert labelled.classes == ["164889003"] and unused == []
    assert labelled.label_vocabulary == "snomed"
    assert labelled.class_descriptions == ["atrial fibrillation"]
    np.testing.assert_array_equal(labelled.labels, [[1], [1], [0]])
    extra = _write(tmp_path, "record_id,NORM\na,1\nb.scp,0\nc.xml,0\nz,1\n", "x.csv")
    labelled, unused = apply_label_table(data, extra, "scp")
    assert unused == ["z"]
    np.testing.assert_array_equal(labelled.labels, [[0], [1], [0]])
    short = _write(tmp_path, "record_id,NORM\na,1\n", "short.csv")
    with pytest.raises(ECGDataError, match=r"no row for 2 of the 3.*'c\.xml'"):
        apply_label_table(data, short, "scp")
