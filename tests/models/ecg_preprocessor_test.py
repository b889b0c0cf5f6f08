import json
import warnings

import keras
import numpy as np
import pytest
import wfdb
from scipy import signal as scipy_signal

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.data.errors import ECGDataError
from keras_ecg.data.errors import ECGDataWarning
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.data.pipelines import make_window_dataset
from keras_ecg.models.ecg_preprocessor import ECGPreprocessor
from keras_ecg.testing import assert_config_round_trip
from tests.models.record_helpers import PTBXL_IDS
from tests.models.record_helpers import link_record
from tests.models.record_helpers import ptbxl_dataset
from tests.models.record_helpers import ptbxl_header
from tests.models.record_helpers import write_record

CINC_RECORDS = ("A0689", "E00271", "HR03961", "JS01048")


@pytest.mark.backend_agnostic
def test_exported_at_top_level():
    import keras_ecg

    assert keras_ecg.ECGPreprocessor is ECGPreprocessor
    assert keras_ecg.models.ECGPreprocessor is ECGPreprocessor
    assert keras_ecg.ECGClassifier is keras_ecg.models.ECGClassifier


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    "rate, window_s, stride_s, window, stride",
    [
        (100, 2.5, 1.25, 250, 125),  # the paper's windows
        (500, 2.5, 1.25, 1250, 625),
        (250, 2.5, 1.25, 625, 313),  # 312.5 rounds half up
        (257, 1.0, 0.5, 257, 129),  # 128.5 rounds half up
        (100, 0.3, 0.1, 30, 10),  # float noise (0.3 * 100 = 30.000...04)
    ],
)
def test_window_and_stride_in_samples(rate, window_s, stride_s, window, stride):
    preprocessor = ECGPreprocessor(
        rate, window_seconds=window_s, stride_seconds=stride_s
    )
    assert (preprocessor.window_length, preprocessor.stride) == (window, stride)


def test_call_standardises_like_numpy():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=3)
    std = rng.uniform(0.5, 2.0, size=3)
    preprocessor = ECGPreprocessor(
        100, lead_names=("I", "II", "V1"), mean=mean, std=std
    )
    x = rng.normal(size=(2, 7, 3)).astype("float32")
    expected = (x.astype("float64") - mean) / std
    out = keras.ops.convert_to_numpy(preprocessor(x))
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    # Inside a model, on symbolic inputs of unknown length.
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, preprocessor(inputs))
    np.testing.assert_allclose(
        model.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6
    )
    # Without statistics: the identity.
    identity = ECGPreprocessor(100, lead_names=("I", "II", "V1"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(identity(x)), x)
    assert preprocessor.weights == [] and identity.weights == []


def test_config_round_trip_is_plain_json():
    preprocessor = ECGPreprocessor(
        sampling_rate=500,
        lead_names=("V1", "II", "aVR"),
        mean=np.array([0.1, -0.2, 0.0], "float32"),
        std=np.array([1.0, 0.5, 2.0], "float32"),
        window_seconds=2.0,
        stride_seconds=1.0,
        aggregation="max",
        name="prep",
    )
    config = preprocessor.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config["mean"] == pytest.approx([0.1, -0.2, 0.0])
    assert all(type(v) is float for v in config["mean"] + config["std"])
    rebuilt = assert_config_round_trip(preprocessor)
    assert rebuilt.lead_names == ("V1", "II", "aVR")
    assert (rebuilt.window_length, rebuilt.stride) == (1000, 500)
    assert rebuilt.aggregation == "max"
    bare = assert_config_round_trip(ECGPreprocessor())
    assert bare.mean is None and bare.lead_names == STANDARD_LEADS


@pytest.mark.backend_agnostic
def test_from_standardizer():
    rng = np.random.default_rng(1)
    leads = ("V6", "I", "aVL")
    data = ECGDataset(
        signals=[rng.normal(1.0, 2.0, size=(700 + 10 * i, 3)) for i in range(3)],
        record_ids=["a", "b", "c"],
        sampling_rate=250,
        lead_names=leads,
    )
    standardizer = LeadStandardizer().fit(data)
    preprocessor = ECGPreprocessor.from_standardizer(
        standardizer, sampling_rate=250, aggregation="max"
    )
    assert preprocessor.lead_names == leads
    assert preprocessor.sampling_rate == 250 and preprocessor.aggregation == "max"
    stacked = np.concatenate(data.signals)
    np.testing.assert_allclose(preprocessor.mean, stacked.mean(0), rtol=1e-12)
    np.testing.assert_allclose(preprocessor.std, stacked.std(0), rtol=1e-12)
    # Same mapping as the standardizer.
    prepared = preprocessor.prepare(data)
    for a, b in zip(
        prepared.signals, standardizer.transform(data).signals, strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)

    twelve = LeadStandardizer(mean=np.zeros(12), std=np.ones(12))
    assert ECGPreprocessor.from_standardizer(twelve, 100).lead_names == STANDARD_LEADS
    with pytest.raises(ValueError, match="lead_names"):
        ECGPreprocessor.from_standardizer(LeadStandardizer([0.0], [1.0]), 100)
    with pytest.raises(ValueError, match="fitted"):
        ECGPreprocessor.from_standardizer(LeadStandardizer(), 100)


@pytest.mark.backend_agnostic
def test_invalid_arguments():
    with pytest.raises(ValueError, match="both"):
        ECGPreprocessor(mean=[0.0] * 12)
    with pytest.raises(ValueError, match="one value per lead"):
        ECGPreprocessor(mean=[0.0] * 11, std=[1.0] * 11)
    with pytest.raises(ValueError, match="positive"):
        ECGPreprocessor(mean=[0.0] * 12, std=[1.0] * 11 + [0.0])
    with pytest.raises(ValueError, match="aggregation"):
        ECGPreprocessor(aggregation="median")
    with pytest.raises(ValueError, match="sampling_rate"):
        ECGPreprocessor(sampling_rate=0)
    with pytest.raises(ValueError, match="duplicates"):
        ECGPreprocessor(lead_names=("I", "i"))
    with pytest.raises(ValueError, match="one sample"):
        ECGPreprocessor(100, window_seconds=0.001)
    with pytest.raises(TypeError, match="ECGDataset"):
        ECGPreprocessor().prepare(np.zeros((2, 1000, 12)))
    with pytest.raises(ValueError, match="on_error"):
        ECGPreprocessor().prepare([], on_error="ignore")


@pytest.mark.backend_agnostic
def test_prepare_500hz_records_matches_the_100hz_records(ptbxl_dir):
    preprocessor = ECGPreprocessor(100)
    at_100 = ptbxl_dataset(ptbxl_dir, 100)
    at_500 = ptbxl_dataset(ptbxl_dir, 500)
    from_100 = preprocessor.prepare(at_100)
    from_500 = preprocessor.prepare(at_500)
    for prepared in (from_100, from_500):
        assert prepared.sampling_rate == 100
        assert prepared.lead_names == STANDARD_LEADS
        assert prepared.record_ids == list(PTBXL_IDS)
        # Windows of 2.5 s = 250 samples at 100 Hz, 7 per 10 s record.
        dataset, record_index = make_window_dataset(
            prepared,
            window_length=preprocessor.window_length,
            stride=preprocessor.stride,
        )
        assert next(iter(dataset)).shape[1:] == (250, 12)
        np.testing.assert_array_equal(np.bincount(record_index), [7] * len(PTBXL_IDS))
    for ours, raw_100, raw_500 in zip(
        from_500.signals, at_100.signals, at_500.signals, strict=True
    ):
        assert ours.shape == (1000, 12) and ours.dtype == np.float32
        # Exactly the anti-aliased polyphase resampling (scipy, independently).
        reference = scipy_signal.resample_poly(raw_500, 1, 5, axis=0)
        np.testing.assert_allclose(ours, reference, atol=1e-5)
        # Close to PTB-XL's own 100 Hz files, which were downsampled with a
        # different filter: the two differ by ~0.5 ms of phase and by
        # filter ripple at QRS peaks (up to ~0.6 mV), and PTB-XL's last ~0.1 s
        # carries an artefact absent from the 500 Hz file. Over the first 9.9
        # s every lead correlates > 0.987 on the first 40 shared records and
        # the mean absolute difference is < 0.014 mV.
        body = slice(0, -10)
        for lead in range(12):
            r = np.corrcoef(ours[body, lead], raw_100[body, lead])[0, 1]
            assert r > 0.98, (lead, r)
        assert np.abs(ours[body] - raw_100[body]).mean() < 0.02
        np.testing.assert_array_equal(
            from_100.signals[0], at_100.signals[0].astype("f4")
        )

    # The same 2.5 s windows at 500 Hz: 1250 samples.
    at_500_hz = ECGPreprocessor(500).prepare(at_100)
    assert at_500_hz.signals[0].shape == (5000, 12)
    assert ECGPreprocessor(500).window_length / 500 == 2.5

    # Read from the WFDB files (keras_ecg's reader): the same signals.
    from_files = preprocessor.prepare(
        [ptbxl_header(ptbxl_dir, i, 500) for i in PTBXL_IDS]
    )
    assert from_files.record_ids == [f"{i}_hr" for i in PTBXL_IDS]
    assert list(from_files.metadata["original_sampling_rate"]) == [500.0] * 4
    for a, b in zip(from_files.signals, from_500.signals, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.backend_agnostic
def test_prepare_reorders_leads_by_name(ptbxl_dir, tmp_path):
    preprocessor = ECGPreprocessor(100)
    original = ptbxl_dataset(ptbxl_dir, 100, ids=PTBXL_IDS[:1])
    expected = preprocessor.prepare(original).signals[0]
    perm = np.random.default_rng(2).permutation(12)
    assert not np.array_equal(perm, np.arange(12))
    # Lead names match case-insensitively ("AVR" is "aVR").
    names = [STANDARD_LEADS[p].upper() for p in perm]
    permuted = ECGDataset(
        signals=[original.signals[0][:, perm]],
        record_ids=["permuted"],
        sampling_rate=100,
        lead_names=tuple(names),
    )
    np.testing.assert_array_equal(preprocessor.prepare(permuted).signals[0], expected)
    # A WFDB record written with its leads in reverse order.
    header = write_record(
        tmp_path, "reversed", original.signals[0][:, ::-1], leads=STANDARD_LEADS[::-1]
    )
    np.testing.assert_allclose(
        preprocessor.prepare(header).signals[0], expected, atol=1e-6
    )
    # A model on a subset of the leads, in its own order.
    subset = ECGPreprocessor(100, lead_names=("V6", "I")).prepare(permuted)
    np.testing.assert_array_equal(subset.signals[0], expected[:, [11, 0]])


@pytest.mark.backend_agnostic
def test_prepare_standardises_like_numpy(ptbxl_dir):
    rng = np.random.default_rng(3)
    mean = rng.normal(0.0, 0.1, size=12)
    std = rng.uniform(0.1, 0.5, size=12)
    data = ptbxl_dataset(ptbxl_dir, 100)
    prepared = ECGPreprocessor(100, mean=mean, std=std).prepare(data)
    for ours, raw in zip(prepared.signals, data.signals, strict=True):
        np.testing.assert_allclose(ours, (raw - mean) / std, rtol=1e-6, atol=1e-6)


@pytest.mark.backend_agnostic
def test_prepare_without_standardising_keeps_records_in_place(ptbxl_dir):
    rng = np.random.default_rng(4)
    mean = rng.normal(0.0, 0.1, size=12)
    std = rng.uniform(0.1, 0.5, size=12)
    preprocessor = ECGPreprocessor(100, mean=mean, std=std)
    raw = ptbxl_dataset(ptbxl_dir, 100)
    # float32 records packed in one array, as a reader's cache hands them out.
    packed = np.concatenate(raw.signals).astype(np.float32)
    bounds = np.cumsum([0] + [len(s) for s in raw.signals])
    data = ECGDataset(
        signals=[packed[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
        record_ids=raw.record_ids,
        sampling_rate=100,
        lead_names=STANDARD_LEADS,
    )
    kept = preprocessor.prepare(data, standardize=False)
    for ours, given in zip(kept.signals, data.signals, strict=True):
        assert ours is given or np.shares_memory(ours, given)
    # Leads in another order: reordered (a copy), still in mV.
    perm = np.random.default_rng(5).permutation(12)
    permuted = ECGDataset(
        signals=[s[:, perm] for s in data.signals],
        record_ids=raw.record_ids,
        sampling_rate=100,
        lead_names=tuple(STANDARD_LEADS[p] for p in perm),
    )
    reordered = preprocessor.prepare(permuted, standardize=False)
    for ours, given in zip(reordered.signals, data.signals, strict=True):
        np.testing.assert_array_equal(ours, given)
    # Standardising later (as the pipelines do) gives what prepare() gives.
    standardised = preprocessor.prepare(data)
    for ours, later in zip(standardised.signals, reordered.signals, strict=True):
        np.testing.assert_array_equal(ours, preprocessor.standardize(later))


def _bad_dataset(good):
    """Two good records and one of each failure, with labels to follow."""
    signal = good.signals[0]
    nan = signal.copy()
    nan[100, 3] = np.nan
    return ECGDataset(
        signals=[signal, signal[:, :11], signal[:200], nan, good.signals[1]],
        record_ids=["good_a", "eleven_leads", "too_short", "has_nan", "good_b"],
        sampling_rate=100,
        labels=np.eye(5, dtype="float32"),
        classes=list("abcde"),
    )


@pytest.mark.backend_agnostic
def test_prepare_errors_name_the_record(ptbxl_dir, tmp_path):
    good = ptbxl_dataset(ptbxl_dir, 100, ids=PTBXL_IDS[:2])
    bad = _bad_dataset(good)
    preprocessor = ECGPreprocessor(100)
    problems = {
        "eleven_leads": "wrong lead count",
        "too_short": "too short: 200 samples",
        "has_nan": "1 non-finite",
    }
    for record_id, problem in problems.items():
        with pytest.raises(ECGDataError, match=f"record {record_id}.*{problem}"):
            preprocessor.prepare(bad.subset([bad.record_ids.index(record_id)]))
    no_v6 = ECGDataset(
        signals=[good.signals[0][:, :11]],
        record_ids=["no_v6"],
        sampling_rate=100,
        lead_names=STANDARD_LEADS[:11],
    )
    with pytest.raises(ECGDataError, match=r"record no_v6.*\['V6'\] not found"):
        preprocessor.prepare(no_v6)

    # The same failures from WFDB files.
    signal = good.signals[0]
    headers = [
        write_record(tmp_path, "good", signal),
        write_record(tmp_path, "nov6", signal[:, :11], leads=STANDARD_LEADS[:11]),
        write_record(tmp_path, "short", signal[:240]),
        write_record(tmp_path, "short500", np.repeat(signal[:240], 5, 0), fs=500),
    ]
    with pytest.raises(ECGDataError, match=r"record nov6 .*nov6\.hea.*\['V6'\]"):
        preprocessor.prepare(headers[1])
    with pytest.raises(ECGDataError, match=r"record short .*too short: 240 samples"):
        preprocessor.prepare(headers[2])
    with pytest.raises(ECGDataError, match=r"record short500 .*too short: 240 samples"):
        preprocessor.prepare(headers[3])
    with pytest.raises(ECGDataError, match="record missing .*no such folder or WFDB"):
        preprocessor.prepare(tmp_path / "missing")
    with pytest.raises(ECGDataError, match="record missing .*header file not found"):
        preprocessor.prepare([headers[0], tmp_path / "missing.hea"])


@pytest.mark.backend_agnostic
def test_prepare_skips_bad_records_with_one_warning(ptbxl_dir, tmp_path):
    good = ptbxl_dataset(ptbxl_dir, 100, ids=PTBXL_IDS[:2])
    bad = _bad_dataset(good)
    preprocessor = ECGPreprocessor(100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = preprocessor.prepare(bad, on_error="skip")
    assert [w.category for w in caught] == [ECGDataWarning]
    message = str(caught[0].message)
    assert "skipped 3 unreadable record(s)" in message
    assert "eleven_leads" in message and "too_short" in message
    assert prepared.record_ids == ["good_a", "good_b"]
    # Labels and classes follow the kept records.
    np.testing.assert_array_equal(prepared.labels, np.eye(5, dtype="float32")[[0, 4]])
    assert prepared.classes == list("abcde")
    with pytest.raises(ECGDataError, match="no readable records"):
        with pytest.warns(ECGDataWarning):
            preprocessor.prepare(bad.subset([1, 2, 3]), on_error="skip")

    folder = tmp_path / "folder"
    folder.mkdir()
    write_record(folder, "good", good.signals[0])
    write_record(folder, "short", good.signals[0][:100])
    with pytest.warns(ECGDataWarning, match="skipped 1 .*record short"):
        prepared = preprocessor.prepare(folder, on_error="skip")
    assert prepared.record_ids == ["good"]


@pytest.mark.backend_agnostic
def test_prepare_folders(ptbxl_dir, cinc_dir, tmp_path):
    headers_100 = [ptbxl_header(ptbxl_dir, i, 100) for i in PTBXL_IDS[:3]]
    headers_500 = [ptbxl_header(ptbxl_dir, i, 500) for i in PTBXL_IDS[:3]]
    # A plain folder, with a sub-folder.
    plain = tmp_path / "plain"
    link_record(headers_100[0], plain)
    link_record(headers_100[1], plain / "sub")
    preprocessor = ECGPreprocessor(100)
    prepared = preprocessor.prepare(plain)
    assert prepared.record_ids == ["00001_lr", "sub/00002_lr"]
    assert preprocessor.prepare(plain, recursive=False).record_ids == ["00001_lr"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ECGDataError, match="no .hea files"):
        preprocessor.prepare(tmp_path / "empty")

    # A PTB-XL folder: records at the model's rate if present, else resampled
    # from records500; record ids are the ecg_ids.
    ptbxl = tmp_path / "ptbxl"
    ptbxl.mkdir()
    (ptbxl / "ptbxl_database.csv").write_text("ecg_id,filename_lr,filename_hr\n")
    for h100, h500 in zip(headers_100, headers_500, strict=True):
        link_record(h100, ptbxl / "records100" / "00000")
        link_record(h500, ptbxl / "records500" / "00000")
    expected_100 = ECGPreprocessor(100).prepare(headers_100)
    expected_500 = ECGPreprocessor(500).prepare(headers_500)
    for rate, expected in ((100, expected_100), (500, expected_500)):
        prepared = ECGPreprocessor(rate).prepare(str(ptbxl))
        assert prepared.record_ids == ["1", "2", "3"]
        for a, b in zip(prepared.signals, expected.signals, strict=True):
            np.testing.assert_array_equal(a, b)
    at_250 = ECGPreprocessor(250).prepare(ptbxl)
    raw = wfdb.rdsamp(str(headers_500[0].with_suffix("")))[0]
    np.testing.assert_allclose(
        at_250.signals[0], scipy_signal.resample_poly(raw, 1, 2, axis=0), atol=1e-5
    )

    # CinC records (500 Hz, various lengths) for a 100 Hz model.
    cinc = ECGPreprocessor(100).prepare([cinc_dir / f"{n}.hea" for n in CINC_RECORDS])
    assert cinc.record_ids == list(CINC_RECORDS)
    for signal, length in zip(
        cinc.signals, cinc.metadata["original_length"], strict=True
    ):
        assert signal.shape == (-(-length // 5), 12)
