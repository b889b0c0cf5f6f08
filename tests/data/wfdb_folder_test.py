import os
import warnings

import numpy as np
import pytest
import wfdb
from scipy import signal as scipy_signal

from keras_ecg.data import wfdb_folder
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.wfdb_folder import load_wfdb_folder
from keras_ecg.data.wfdb_folder import read_wfdb_record
from keras_ecg.data.wfdb_folder import resample_ratio
from tests.models.record_helpers import write_record

pytestmark = pytest.mark.backend_agnostic

RECORDS = ("A0689", "E00271", "HR03961", "JS01048")


def _link_records(source, target, names=RECORDS):
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        for suffix in (".hea", ".mat"):
            os.symlink(source / f"{name}{suffix}", target / f"{name}{suffix}")
    return target


def _write_record(folder, name, signal, fs=500, leads=STANDARD_LEADS, dx=None):
    comments = [] if dx is None else ["Age: 50", "Sex: Male", f"Dx: {dx}"]
    write_record(folder, name, signal, fs=fs, leads=leads, comments=comments)


def _header_dx(path):
    for line in path.read_text().splitlines():
        if line.startswith("#Dx:"):
            # JS20005 has an empty entry ("427084000,,427172004").
            return [c.strip() for c in line.split(":", 1)[1].split(",") if c.strip()]
    return []


@pytest.fixture(scope="module")
def cinc_100(cinc_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean folder loads without warnings
        return load_wfdb_folder(cinc_dir, sampling_rate=100)


def test_cinc_labels_match_header_dx(cinc_100, cinc_dir):
    assert len(cinc_100) == 156
    every_code = set()
    for header in cinc_dir.glob("*.hea"):
        every_code.update(_header_dx(header))
    assert cinc_100.classes == sorted(every_code, key=int)
    assert cinc_100.labels.dtype == np.float32
    for name in ("E00271", "JS01048", "A0689"):
        row = cinc_100.record_ids.index(name)
        expected = set(_header_dx(cinc_dir / f"{name}.hea"))
        positives = {
            c for c, v in zip(cinc_100.classes, cinc_100.labels[row], strict=True) if v
        }
        assert positives == expected
        assert cinc_100.metadata.loc[name, "dx"] == _header_dx(cinc_dir / f"{name}.hea")
    header = (cinc_dir / "A0689.hea").read_text()
    assert "#Age: 80" in header and "#Sex: Male" in header
    assert cinc_100.metadata.loc["A0689", "age"] == 80.0
    assert cinc_100.metadata.loc["A0689", "sex"] == "Male"


def test_cinc_resampled_to_100_hz_equals_polyphase_of_wfdb(cinc_100, cinc_dir):
    row = cinc_100.record_ids.index("E00271")
    signal = cinc_100.signals[row]
    assert signal.shape == (1000, 12) and signal.dtype == np.float32
    raw, fields = wfdb.rdsamp(str(cinc_dir / "E00271"))
    assert fields["fs"] == 500
    expected = scipy_signal.resample_poly(raw, 1, 5, axis=0)
    np.testing.assert_allclose(signal, expected, atol=1e-5)
    # Longer records keep their duration.
    lengths = cinc_100.metadata["original_length"].to_numpy()
    assert [len(s) for s in cinc_100.signals] == [int(n) // 5 for n in lengths]


def test_native_rate_equals_wfdb_rdsamp_in_mv(cinc_dir):
    record = read_wfdb_record(cinc_dir / "HR03961.hea")  # units spelled "mv"
    raw, fields = wfdb.rdsamp(str(cinc_dir / "HR03961"))
    np.testing.assert_allclose(record.signal, raw, atol=1e-6)
    assert record.sampling_rate == 500
    assert 0.05 < np.abs(record.signal).max() < 20.0  # mV, not µV or ADC units
    assert record.lead_names == tuple(fields["sig_name"])


def test_resampling_a_known_sine_is_anti_aliased(tmp_path):
    t = np.arange(5000) / 500.0
    slow = np.sin(2 * np.pi * 3.0 * t)
    fast = 0.5 * np.sin(2 * np.pi * 120.0 * t)  # above the 50 Hz target Nyquist
    signal = np.stack([slow + fast] + [slow] * 11, axis=1)
    _write_record(tmp_path, "sine", signal, dx="1")
    record = read_wfdb_record(tmp_path / "sine.hea", sampling_rate=100)
    assert record.signal.shape == (1000, 12)
    t_new = np.arange(1000) / 100.0
    interior = slice(50, 950)  # away from the filter's edge transients
    expected = np.sin(2 * np.pi * 3.0 * t_new)
    np.testing.assert_allclose(
        record.signal[interior, 1], expected[interior], atol=2e-3
    )
    # The 120 Hz part would alias to 20 Hz without the low-pass filter.
    np.testing.assert_allclose(
        record.signal[interior, 0], expected[interior], atol=2e-2
    )


def test_resample_ratio():
    assert resample_ratio(500, 100) == (1, 5)
    assert resample_ratio(257, 100) == (100, 257)
    assert resample_ratio(360, 250) == (25, 36)
    with pytest.raises(ECGDataError, match="unsupported sampling rate"):
        resample_ratio(333.3331, 100, record="r")


def test_both_header_forms(tmp_path, cinc_dir):
    text = (cinc_dir / "E00271.hea").read_text()
    assert text.startswith("E00271 12 500 5000")
    (tmp_path / "E00271.hea").write_text(text.replace("E00271 12", "E00271.mat 12", 1))
    os.symlink(cinc_dir / "E00271.mat", tmp_path / "E00271.mat")
    with pytest.raises(Exception):  # noqa: B017 - wfdb itself rejects this form
        wfdb.rdheader(str(tmp_path / "E00271"))
    original = read_wfdb_record(cinc_dir / "E00271.hea")
    georgia = read_wfdb_record(tmp_path / "E00271.hea")
    np.testing.assert_array_equal(georgia.signal, original.signal)
    dataset = load_wfdb_folder(tmp_path, sampling_rate=100)
    assert dataset.record_ids == ["E00271"]
    assert dataset.classes == _header_dx(cinc_dir / "E00271.hea")


def test_georgia_form_with_a_wfdb_decoded_format(tmp_path):
    signal = np.random.default_rng(0).normal(size=(300, 12))
    wfdb.wrsamp(
        "G1",
        fs=500,
        units=["mV"] * 12,
        sig_name=list(STANDARD_LEADS),
        p_signal=signal,
        fmt=["212"] * 12,
        write_dir=str(tmp_path),
    )
    reference = wfdb.rdsamp(str(tmp_path / "G1"))[0]
    header = tmp_path / "G1.hea"
    header.write_text(header.read_text().replace("G1 12", "G1.dat 12", 1))
    record = read_wfdb_record(header)
    np.testing.assert_allclose(record.signal, reference, atol=1e-6)


def test_leads_are_selected_by_name_case_insensitively(cinc_dir):
    full = read_wfdb_record(cinc_dir / "A0689.hea")
    picked = read_wfdb_record(cinc_dir / "A0689.hea", leads=("V6", "AVR", "i"))
    np.testing.assert_array_equal(picked.signal, full.signal[:, [11, 3, 0]])
    assert picked.lead_names == ("V6", "aVR", "I")


def test_classes_and_unknown_labels(tmp_path, cinc_dir):
    folder = _link_records(cinc_dir, tmp_path / "cinc", ("E00271", "A0689"))
    dx_e = _header_dx(cinc_dir / "E00271.hea")
    dx_a = _header_dx(cinc_dir / "A0689.hea")
    classes = [dx_a[0], "999"]
    dataset = load_wfdb_folder(folder, classes=classes)
    assert dataset.classes == classes
    expected = np.array(
        [[c in dx for c in classes] for dx in (dx_a, dx_e)], dtype=np.float32
    )
    np.testing.assert_array_equal(dataset.labels, expected)
    unknown = sorted(set(dx_e) - set(classes))
    assert unknown
    with pytest.raises(ECGDataError, match=r"record E00271 .*unknown label"):
        load_wfdb_folder(folder, classes=classes, unknown_labels="error")
    unlabelled = load_wfdb_folder(folder, classes=[])
    assert unlabelled.labels is None and unlabelled.classes == []
    assert len(unlabelled) == 2


SCORED_RECORDS = {
    # Hand-read from the #Dx lines; the Challenge scores 164909002 (LBBB) with
    # 733534002, 59118001 (RBBB) with 713427006, 284470004 (PAC) with 63593006,
    # 17338001 (VPB) and 427172004 (PVC) together; 55930002 is unscored.
    "A1041": {"164889003", "733534002|164909002"},  # 164889003,164909002
    "A5215": {"713427006|59118001", "284470004|63593006"},  # 59118001,284470004
    "E07548": {"427172004|17338001", "427084000"},  # 17338001,427084000
    "JS14622": {"164890007", "427172004|17338001"},  # 164890007,55930002,427172004
}


def test_scored_label_set_merges_the_challenge_equivalent_codes(tmp_path, cinc_dir):
    folder = _link_records(cinc_dir, tmp_path / "cinc", tuple(SCORED_RECORDS))
    dataset = load_wfdb_folder(folder, label_set="scored")
    assert len(dataset.classes) == 26 and "59118001" not in dataset.classes
    assert dataset.label_vocabulary == "snomed"
    for row, name in enumerate(dataset.record_ids):
        positives = {
            c for c, v in zip(dataset.classes, dataset.labels[row], strict=True) if v
        }
        assert positives == SCORED_RECORDS[name], name
    described = dict(zip(dataset.classes, dataset.class_descriptions, strict=True))
    assert described["164889003"] == "atrial fibrillation"
    assert described["733534002|164909002"] == (
        "complete left bundle branch block | left bundle branch block"
    )
    with pytest.raises(ECGDataError, match=r"record JS14622 .*\['55930002'\]"):
        load_wfdb_folder(folder, label_set="scored", unknown_labels="error")


def test_all_label_set_descriptions(cinc_100):
    assert cinc_100.label_vocabulary == "snomed"
    described = dict(zip(cinc_100.classes, cinc_100.class_descriptions, strict=True))
    assert described["426783006"] == "sinus rhythm"
    assert described["251238007"] is None  # in neither Challenge table


def test_label_set_errors(cinc_dir):
    with pytest.raises(ValueError) as caught:
        load_wfdb_folder(cinc_dir, label_set="diagnostic")
    message = str(caught.value)
    assert "('all', 'scored')" in message and "'diagnostic'" in message
    assert "PTB-XL folders" in message
    with pytest.raises(ValueError, match="either `classes` or label_set='scored'"):
        load_wfdb_folder(cinc_dir, classes=["164889003"], label_set="scored")


def test_min_duration_drops_short_records(tmp_path):
    rng = np.random.default_rng(1)
    _write_record(tmp_path, "long", rng.normal(size=(1000, 12)) * 0.1, fs=250)
    _write_record(tmp_path, "short", rng.normal(size=(400, 12)) * 0.1, fs=250)
    with pytest.warns(ECGDataWarning, match="dropped 1 record"):
        dataset = load_wfdb_folder(tmp_path, min_duration_s=3.0)
    assert dataset.record_ids == ["long"]
    assert dataset.signals[0].shape == (400, 12)  # 4 s at 100 Hz


def _bad_folder(tmp_path, cinc_dir):
    """Two good records plus one record per failure mode."""
    folder = _link_records(cinc_dir, tmp_path / "bad", ("A0689", "JS01048"))
    rng = np.random.default_rng(2)
    # Truncated copy of a real .mat.
    (folder / "T1.hea").write_text(
        (cinc_dir / "E00271.hea").read_text().replace("E00271", "T1")
    )
    data = (cinc_dir / "E00271.mat").read_bytes()
    (folder / "T1.mat").write_bytes(data[: len(data) // 2])
    # NaN samples.
    with_nan = rng.normal(size=(500, 12)) * 0.1
    with_nan[100, 2] = np.nan
    _write_record(folder, "N1", with_nan)
    # 11 leads.
    _write_record(
        folder, "L11", rng.normal(size=(500, 11)) * 0.1, leads=STANDARD_LEADS[:11]
    )
    # An unknown lead name instead of V6.
    _write_record(
        folder,
        "X1",
        rng.normal(size=(500, 12)) * 0.1,
        leads=STANDARD_LEADS[:11] + ("X",),
    )
    # A sampling rate that cannot be resampled to 100 Hz.
    _write_record(folder, "F1", rng.normal(size=(500, 12)) * 0.1)
    header = folder / "F1.hea"
    header.write_text(header.read_text().replace("F1 12 500", "F1 12 333.3331", 1))
    # Missing signal file.
    _write_record(folder, "M1", rng.normal(size=(500, 12)) * 0.1)
    (folder / "M1.dat").unlink()
    return folder


BAD_CASES = {
    "T1": "truncated",
    "N1": r"1 non-finite \(NaN/inf",
    "L11": r"lead\(s\) \['V6'\] not found: the record has 11 lead",
    "X1": r"lead\(s\) \['V6'\] not found",
    "F1": "unsupported sampling rate",
    "M1": "signal file M1.dat not found",
}


def test_each_bad_record_raises_one_clear_error(tmp_path, cinc_dir):
    folder = _bad_folder(tmp_path, cinc_dir)
    for name, problem in BAD_CASES.items():
        with pytest.raises(
            ECGDataError, match=rf"record {name} \(.*{name}\..*\): {problem}"
        ):
            read_wfdb_record(folder / f"{name}.hea", sampling_rate=100)
    with pytest.raises(ECGDataError, match="record F1"):
        load_wfdb_folder(folder)  # the first bad record in sorted order


def test_skip_mode_warns_once_and_keeps_good_records(tmp_path, cinc_dir):
    folder = _bad_folder(tmp_path, cinc_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_wfdb_folder(folder, on_error="skip")
    ours = [w for w in caught if issubclass(w.category, ECGDataWarning)]
    assert len(ours) == 1
    assert f"skipped {len(BAD_CASES)} unreadable record(s)" in str(ours[0].message)
    assert dataset.record_ids == ["A0689", "JS01048"]
    reference = read_wfdb_record(cinc_dir / "A0689.hea", sampling_rate=100).signal
    np.testing.assert_array_equal(dataset.signals[0], reference)


def test_bad_arguments(tmp_path, cinc_dir):
    with pytest.raises(ECGDataError, match="unsupported sampling rate"):
        load_wfdb_folder(cinc_dir, sampling_rate=0)
    with pytest.raises(ECGDataError, match="folder not found"):
        load_wfdb_folder(tmp_path / "nope")
    with pytest.raises(ECGDataError, match="no .hea files"):
        load_wfdb_folder(tmp_path)
    with pytest.raises(ValueError, match="unknown_labels"):
        load_wfdb_folder(cinc_dir, unknown_labels="drop")


def test_cache_hit_skips_decoding_and_returns_identical_arrays(
    tmp_path, cinc_dir, monkeypatch
):
    folder = _link_records(cinc_dir, tmp_path / "cinc")
    cache_dir = tmp_path / "cache"
    first = load_wfdb_folder(folder, cache_dir=cache_dir)

    def fail(*args, **kwargs):
        raise AssertionError("WFDB decoded despite a cache hit")

    monkeypatch.setattr(wfdb_folder, "read_wfdb_record", fail)
    second = load_wfdb_folder(folder, cache_dir=cache_dir)
    assert second.record_ids == first.record_ids
    assert second.classes == first.classes
    np.testing.assert_array_equal(second.labels, first.labels)
    for a, b in zip(second.signals, first.signals, strict=True):
        assert isinstance(a, np.memmap)
        np.testing.assert_array_equal(a, b)
    assert list(second.metadata["dx"]) == list(first.metadata["dx"])
    assert second.class_descriptions == first.class_descriptions
    assert second.label_vocabulary == "snomed"
    # Other settings are another cache entry, so they decode again.
    with pytest.raises(AssertionError, match="despite a cache hit"):
        load_wfdb_folder(folder, cache_dir=cache_dir, sampling_rate=250)
