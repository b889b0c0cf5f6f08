"""Record fingerprints: one ECG matches itself in any format, rate and copy,
and no other ECG."""

import numpy as np
import pytest
import scipy.io

from keras_ecg.data import fingerprints
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.fingerprints import MATCH_DISTANCE
from keras_ecg.data.fingerprints import RecordFingerprints
from keras_ecg.data.fingerprints import fingerprint_distance
from keras_ecg.data.fingerprints import record_fingerprint
from keras_ecg.data.wfdb_folder import load_wfdb_folder
from keras_ecg.data.wfdb_folder import read_wfdb_record
from keras_ecg.presets.preset_files import RECORD_FINGERPRINTS_FILE
from tests.data.cinc_layout import cinc_header
from tests.data.cinc_layout import write_cinc_copy

pytestmark = pytest.mark.backend_agnostic

# PTB-XL v1.0.1 records that are one ECG twice (v1.0.3 dropped the first of
# each pair); 140/1370 and 145/463 are in different folds, under different
# patient ids.
PTBXL_DUPLICATES = [
    (137, 138), (140, 1370), (143, 144), (145, 463), (456, 457), (459, 460)
]  # fmt: skip


def _ptbxl(ptbxl_dir, ids, rate):
    """PTB-XL records read one by one (at their own rate: 100 Hz from
    records100, 500 Hz from records500)."""
    folder, suffix = ("records100", "lr") if rate == 100 else ("records500", "hr")
    signals = [
        read_wfdb_record(
            ptbxl_dir / folder / f"{i // 1000 * 1000:05d}" / f"{i:05d}_{suffix}.hea"
        ).signal
        for i in ids
    ]
    return ECGDataset(signals, [str(i) for i in ids], rate)


def _ids_at_both_rates(ptbxl_dir, count):
    """The first `count` ecg_ids of the subset in records500 (and records100)."""
    headers = sorted((ptbxl_dir / "records500").glob("*/*_hr.hea"))
    return [int(p.stem[:5]) for p in headers[:count]]


def test_the_cinc_writer_writes_what_the_challenge_distributes(cinc_dir, tmp_path):
    # The layout the tests copy PTB-XL into, checked on a real Challenge copy
    # of a PTB-XL record (HR03961 is PTB-XL's ecg_id 3961).
    digital = scipy.io.loadmat(cinc_dir / "HR03961.mat")["val"].T
    scipy.io.savemat(tmp_path / "HR03961.mat", {"val": digital.T}, format="4")
    written = (tmp_path / "HR03961.mat").read_bytes()
    assert written == (cinc_dir / "HR03961.mat").read_bytes()
    real = (cinc_dir / "HR03961.hea").read_text().splitlines()
    ours = cinc_header("HR03961", digital, 500, STANDARD_LEADS, "-", []).splitlines()
    assert ours[1:] == real[1:13]


def test_a_cinc_copy_of_ptbxl_matches_its_original_at_any_rate(ptbxl_dir, tmp_path):
    ids = _ids_at_both_rates(ptbxl_dir, 12)
    copied = ids[:4]
    for ecg_id in copied:
        write_cinc_copy(ptbxl_dir, ecg_id, tmp_path / "cinc")
    copy = {
        rate: RecordFingerprints.from_dataset(
            load_wfdb_folder(tmp_path / "cinc", sampling_rate=rate, workers=1)
        )
        for rate in (100, 500)
    }
    assert copy[100].record_ids == [f"HR{i:05d}" for i in copied]
    original = {
        rate: RecordFingerprints.from_dataset(_ptbxl(ptbxl_dir, ids, rate))
        for rate in (100, 500)
    }
    # The Challenge's .mat holds the .dat's samples: equal at 500 Hz.
    np.testing.assert_array_equal(copy[500].values, original[500].values[:4])
    for i in range(len(copied)):
        # records100 is PTB-XL's own filtered decimation, not a resampling of
        # records500: close, not equal.
        for ours in (copy[100].values[i], copy[500].values[i]):
            assert fingerprint_distance(ours, original[100].values[i]) < 0.02
            assert not np.array_equal(ours, original[100].values[i])
        others = original[100].values[4:]
        gaps = [fingerprint_distance(copy[100].values[i], v) for v in others]
        assert min(gaps) > 4 * MATCH_DISTANCE
    for rate in (100, 500):
        for reference in (copy[100], copy[500]):
            result = fingerprints.overlap(reference, original[rate])
            assert result["seen"] == 4 and not result["at_least"]
            assert result["examples"][:2] == [["1", "HR00001"], ["2", "HR00002"]]
            np.testing.assert_array_equal(reference.find(original[rate])[4:], -1)


def test_one_ecg_matches_itself_and_no_other_on_real_records(ptbxl_dir, cinc_dir):
    # PTB-XL at both rates (ids 1-100 that are at 500 Hz), PTB-XL's
    # duplicates and the real Challenge records.
    ids = _ids_at_both_rates(ptbxl_dir, 100)
    low = RecordFingerprints.from_dataset(_ptbxl(ptbxl_dir, ids, 100))
    high = RecordFingerprints.from_dataset(_ptbxl(ptbxl_dir, ids, 500))
    distances = [fingerprint_distance(a, b) for a, b in zip(low.values, high.values)]
    assert max(distances) < MATCH_DISTANCE / 2
    twice = sorted({i for pair in PTBXL_DUPLICATES for i in pair})
    cinc = load_wfdb_folder(cinc_dir, sampling_rate=100, workers=1)
    everything = low.concatenate(
        RecordFingerprints.from_dataset(_ptbxl(ptbxl_dir, twice, 100))
    ).concatenate(RecordFingerprints.from_dataset(cinc))
    unit = everything.values.reshape(len(everything), -1).astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    gaps = np.linalg.norm(unit[:, None] - unit[None], axis=-1)
    pairs = set()
    for a, b in zip(*np.nonzero(gaps < MATCH_DISTANCE)):
        first, second = everything.record_ids[a], everything.record_ids[b]
        if first != second:
            pairs.add(tuple(sorted((first, second))))
    # The only matches of different ids: PTB-XL's duplicates, and the
    # Challenge's Georgia pair E07509/E07510 (one ECG under two names). The
    # Challenge's HR (PTB-XL) records here are ids > 1999, not in the subset.
    expected = {tuple(sorted(map(str, pair))) for pair in PTBXL_DUPLICATES}
    assert pairs == expected | {("E07509", "E07510")}
    # Different ECGs are far apart: the tolerance has a wide margin.
    names = everything.record_ids
    same = [[a == b or tuple(sorted((a, b))) in pairs for b in names] for a in names]
    assert gaps[~np.asarray(same)].min() > 4 * MATCH_DISTANCE


def test_leads_are_matched_by_name_and_gain_does_not_matter():
    rng = np.random.default_rng(0)
    signal = np.cumsum(rng.normal(size=(1000, 12)), axis=0) * 0.01
    reference = record_fingerprint(signal, 100)
    order = rng.permutation(12)
    names = ["AVR" if n == "aVR" else n for n in np.asarray(STANDARD_LEADS)[order]]
    shuffled = record_fingerprint(signal[:, order], 100, names)
    np.testing.assert_allclose(shuffled, reference, rtol=1e-6, atol=1e-6)
    assert fingerprint_distance(record_fingerprint(signal * 2.0, 100), reference) < 1e-6
    # Any rate: 250 Hz and 257 Hz copies of a 100 Hz record.
    for rate in (250, 257):
        from keras_ecg.data.wfdb_folder import resample_signal

        faster = resample_signal(signal, 100, rate)
        assert fingerprint_distance(record_fingerprint(faster, rate), reference) < 0.05
    with pytest.raises(
        ValueError, match=r"need the 12 standard leads; missing \['V6'\]"
    ):
        record_fingerprint(signal[:, :11], 100, STANDARD_LEADS[:11])
    data = ECGDataset([signal[:, :11]], ["r"], 100, lead_names=STANDARD_LEADS[:11])
    assert RecordFingerprints.from_dataset(data) is None
    known = RecordFingerprints.from_dataset(ECGDataset([signal], ["r"], 100))
    assert fingerprints.overlap(None, known)["seen"] is None


def test_short_and_flat_records_never_match():
    rng = np.random.default_rng(1)
    short = rng.normal(size=(140, 12))  # 1.4 s: no whole block
    flat = np.zeros((1000, 12))
    data = ECGDataset([short, flat, short[:120]], ["short", "flat", "shorter"], 100)
    prints = RecordFingerprints.from_dataset(data)
    assert not prints.values.any()
    np.testing.assert_array_equal(prints.find(prints), -1)
    # A 5 s record has its first 8 blocks.
    five = record_fingerprint(rng.normal(size=(500, 12)), 100)
    assert five[:8].all() and not five[8:].any()


def test_fingerprint_files_round_trip_and_union(tmp_path):
    rng = np.random.default_rng(2)
    pre = RecordFingerprints(rng.normal(size=(3, 18, 12)) * 100, ["a", "b", "c"])
    train = RecordFingerprints(rng.normal(size=(2, 18, 12)) * 100, ["d", "e"])
    path = fingerprints.sidecar_path(tmp_path / "classifier.keras")
    assert path == str(tmp_path / "classifier.fingerprints.npz")
    fingerprints.save_fingerprints(path, {"pretraining": pre, "training": train})
    sets = fingerprints.model_fingerprints(tmp_path / "classifier.keras")
    assert sets["pretraining"].record_ids == ["a", "b", "c"]
    np.testing.assert_array_equal(sets["training"].values, train.values)
    union = fingerprints.seen_by(sets)
    assert union.record_ids == ["a", "b", "c", "d", "e"] and union.complete
    # Without the pretraining set, what the model saw is only partly known.
    assert not fingerprints.seen_by({"training": train}).complete
    assert fingerprints.seen_by(None) is None
    assert fingerprints.model_fingerprints(tmp_path / "other.keras") is None
    assert fingerprints.PRESET_FILE == RECORD_FINGERPRINTS_FILE
    np.savez(tmp_path / "old.npz", version=np.asarray(0))
    with pytest.raises(ValueError, match="old.npz: record fingerprints of version 0"):
        fingerprints.load_fingerprints(tmp_path / "old.npz")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="bad.npz: unreadable record fingerprints"):
        fingerprints.load_fingerprints(tmp_path / "bad.npz")
