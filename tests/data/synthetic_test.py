"""Tests of the synthetic 12-lead ECG generator.

Measurements (R peaks, QRS width, PR) are re-derived here from the signals
with plain numpy, independently of the generator's parameters, and compared
with the metadata the generator reports.
"""

import numpy as np
import pandas as pd
import pytest

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.synthetic import DEFAULT_CLASSES
from keras_ecg.data.synthetic import make_synthetic_ecg

pytestmark = pytest.mark.backend_agnostic

INDEPENDENT = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1..V6


def r_peaks(signal, fs, refractory_s=0.2):
    """QRS fiducials: maxima of the multi-lead slope energy, greedy refractory."""
    energy = np.square(np.diff(signal[:, INDEPENDENT], axis=0)).sum(1)
    threshold = 0.2 * energy.max()
    local_max = (energy[1:-1] >= energy[:-2]) & (energy[1:-1] > energy[2:])
    candidates = np.flatnonzero(local_max & (energy[1:-1] > threshold)) + 1
    peaks = []
    for index in candidates[np.argsort(-energy[candidates])]:
        if all(abs(index - p) > refractory_s * fs for p in peaks):
            peaks.append(index)
    return np.sort(np.array(peaks))


def spatial_velocity(signal):
    return np.sqrt(np.square(np.diff(signal[:, INDEPENDENT], axis=0)).sum(1))


def qrs_bounds(signal, fs, peak, half_window_s=0.1, tail=0.1):
    """QRS span: where the cumulative spatial velocity leaves its `tail` quantiles.

    The QRS is the fast part of the beat, so its slopes dominate the window;
    trimming the tails keeps the T and f-waves that enter the window out.
    """
    velocity = spatial_velocity(signal)
    low = max(0, peak - int(half_window_s * fs))
    window = velocity[low : peak + int(half_window_s * fs)]
    cumulative = np.cumsum(window) / window.sum()
    onset = low + np.searchsorted(cumulative, tail)
    return onset, low + np.searchsorted(cumulative, 1.0 - tail)


def interior_peaks(signal, fs):
    """R peaks at least 0.5 s from both ends (whole beats only)."""
    peaks = r_peaks(signal, fs)
    return peaks[(peaks > 0.5 * fs) & (peaks < len(signal) - 0.5 * fs)]


def median_qrs_ms(signal, fs):
    widths = [np.diff(qrs_bounds(signal, fs, p))[0] for p in interior_peaks(signal, fs)]
    return 1000.0 * np.median(widths) / fs


def median_p_to_qrs_ms(signal, fs):
    """Lead II: from the P peak (first local max before QRS onset) to QRS onset."""
    lead_ii = signal[:, 1]
    distances = []
    for peak in interior_peaks(signal, fs):
        onset = qrs_bounds(signal, fs, peak, tail=0.05)[0]
        for i in range(onset - 2, onset - int(0.4 * fs), -1):
            if (
                lead_ii[i] > 0.02
                and lead_ii[i] >= lead_ii[i - 1]
                and (lead_ii[i] >= lead_ii[i + 1])
            ):
                distances.append(onset - i)
                break
    return 1000.0 * np.median(distances) / fs


@pytest.fixture(scope="module")
def clean_500hz():
    """Noise-free records of every class at 500 Hz for the measurements."""
    return make_synthetic_ecg(
        num_records=96, sampling_rate=500, duration_s=8.0, noise=False, seed=11
    )


@pytest.fixture(scope="module")
def noisy_100hz():
    return make_synthetic_ecg(num_records=400, seed=3)


def test_layout_and_types(noisy_100hz):
    data = noisy_100hz
    assert len(data) == 400
    assert data.sampling_rate == 100
    assert tuple(data.lead_names) == STANDARD_LEADS
    assert data.classes == list(DEFAULT_CLASSES)
    x = data.to_array()
    assert x.shape == (400, 1000, 12) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert data.labels.dtype == np.float32 and data.labels.shape == (400, 8)
    assert data.record_ids[0] == "synthetic_00001"
    assert data.record_ids[-1] == "synthetic_00400"
    assert list(data.metadata["record_id"]) == data.record_ids
    # Amplitudes in mV: R waves around 1 mV, nothing wildly off scale.
    peak_to_peak = np.ptp(x, axis=1).max(axis=1)
    assert 0.8 < np.median(peak_to_peak) < 4.0
    assert peak_to_peak.max() < 10.0


def test_deterministic_under_seed_and_different_across_seeds():
    a = make_synthetic_ecg(num_records=12, duration_s=3.0, seed=5)
    b = make_synthetic_ecg(num_records=12, duration_s=3.0, seed=5)
    c = make_synthetic_ecg(num_records=12, duration_s=3.0, seed=6)
    np.testing.assert_array_equal(a.to_array(), b.to_array())
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.folds, b.folds)
    assert a.metadata.equals(b.metadata)
    assert np.abs(a.to_array() - c.to_array()).mean() > 0.05


def test_einthoven_and_goldberger_identities_hold_with_noise(noisy_100hz):
    x = noisy_100hz.to_array().astype(np.float64)
    lead = {name: x[..., i] for i, name in enumerate(STANDARD_LEADS)}
    np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], atol=1e-5)
    np.testing.assert_allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=1e-5)
    np.testing.assert_allclose(lead["aVL"], lead["I"] - lead["II"] / 2, atol=1e-5)
    np.testing.assert_allclose(lead["aVF"], lead["II"] - lead["I"] / 2, atol=1e-5)


def test_heart_rate_matches_detected_r_peaks(clean_500hz):
    data = clean_500hz
    errors = []
    for signal, expected in zip(data.signals, data.metadata["heart_rate"], strict=True):
        peaks = r_peaks(signal, data.sampling_rate)
        measured = 60.0 * data.sampling_rate / np.mean(np.diff(peaks))
        errors.append(measured - expected)
    errors = np.abs(errors)
    assert errors.max() < 3.0, errors.max()


def test_rate_classes_follow_heart_rate(noisy_100hz):
    meta = noisy_100hz.metadata
    labels = meta["labels"].str.split(";")
    sbrad = labels.apply(lambda s: "SBRAD" in s)
    stach = labels.apply(lambda s: "STACH" in s)
    sinus = meta["rhythm"] == "SR"
    assert (meta.loc[sbrad, "heart_rate"] < 60).all()
    assert (meta.loc[stach, "heart_rate"] > 100).all()
    assert meta.loc[sinus, "heart_rate"].between(60, 100).all()


def test_afib_rr_is_irregular(clean_500hz):
    data = clean_500hz
    cv = {"AFIB": [], "SINUS": []}
    for signal, rhythm in zip(data.signals, data.metadata["rhythm"], strict=True):
        rr = np.diff(r_peaks(signal, data.sampling_rate))
        cv["AFIB" if rhythm == "AFIB" else "SINUS"].append(rr.std() / rr.mean())
    afib, sinus = np.array(cv["AFIB"]), np.array(cv["SINUS"])
    assert len(afib) >= 8 and len(sinus) >= 40
    assert np.median(afib) > 3 * np.median(sinus)
    assert np.median(afib) > 0.12 and np.percentile(sinus, 90) < 0.06


def test_first_degree_av_block_has_longer_pr():
    data = make_synthetic_ecg(
        num_records=24,
        sampling_rate=500,
        duration_s=6.0,
        classes=["NORM", "1AVB"],
        noise=False,
        seed=2,
    )
    measured = np.array([median_p_to_qrs_ms(s, 500) for s in data.signals])
    is_avb = data.labels[:, 1] == 1
    assert is_avb.sum() >= 6 and (~is_avb).sum() >= 6
    # No overlap: every 1AVB record has a longer P-to-QRS than every NORM one.
    assert measured[is_avb].min() > measured[~is_avb].max()
    # The P peak sits ~2.5 P-sigma (45-60 ms) after P onset, where PR starts,
    # so the measurement tracks the reported PR with a steady offset.
    pr_ms = data.metadata["pr_ms"].to_numpy()
    assert np.corrcoef(measured, pr_ms)[0, 1] > 0.98
    assert np.all((pr_ms - measured > 20) & (pr_ms - measured < 60))
    assert (pr_ms[is_avb] > 200).all() and (pr_ms[~is_avb] < 200).all()


def test_bundle_branch_blocks_widen_qrs(clean_500hz):
    data = clean_500hz
    measured = np.array([median_qrs_ms(s, 500) for s in data.signals])
    labels = data.metadata["labels"].str.split(";")
    bbb = labels.apply(lambda s: "CLBBB" in s or "CRBBB" in s).to_numpy()
    norm = labels.apply(lambda s: s == ["NORM"]).to_numpy()
    assert bbb.sum() >= 10 and norm.sum() >= 5
    assert measured[bbb].min() > measured[~bbb].max()
    assert np.median(measured[bbb]) - np.median(measured[norm]) > 30
    # The measurement tracks the reported QRS duration.
    qrs_ms = data.metadata["qrs_ms"].to_numpy()
    assert np.corrcoef(measured, qrs_ms)[0, 1] > 0.9
    assert (qrs_ms[bbb] >= 120).all() and (qrs_ms[norm] < 110).all()


def test_bundle_branch_morphology_in_v1():
    """RBBB: terminal R' makes V1 positive; LBBB: deep QS makes V1 negative."""
    common = dict(sampling_rate=500, duration_s=4.0, noise=False, seed=4)
    net = {}
    for name in ("NORM", "CRBBB", "CLBBB"):
        data = make_synthetic_ecg(num_records=10, classes=[name], **common)
        # Same seed and one class: the same nuisance draws for all three.
        v1 = data.to_array()[..., STANDARD_LEADS.index("V1")]
        net[name] = v1.max(1) + v1.min(1)  # > 0: mostly positive QRS
    assert (net["CRBBB"] > net["NORM"]).all()
    assert (net["CLBBB"] < net["NORM"]).all()


def st_level(signal, fs, lead):
    """Median over beats of `lead` 60-100 ms after the measured QRS offset."""
    levels = []
    for peak in interior_peaks(signal, fs):
        offset = qrs_bounds(signal, fs, peak, tail=0.02)[1]
        levels.append(signal[offset + int(0.06 * fs) : offset + int(0.1 * fs), lead])
    return np.median(np.concatenate(levels))


def test_inferior_mi_has_st_elevation_in_inferior_leads():
    # Same seed and one class each: identical nuisance draws, a paired design.
    common = dict(sampling_rate=500, duration_s=4.0, noise=False, seed=8)
    st = {}
    for name in ("NORM", "IMI"):
        data = make_synthetic_ecg(num_records=10, classes=[name], **common)
        st[name] = {
            lead: np.array(
                [st_level(s, 500, STANDARD_LEADS.index(lead)) for s in data.signals]
            )
            for lead in ("III", "aVF", "aVL")
        }
    # Elevation in the inferior leads, reciprocal depression in aVL.
    assert (st["IMI"]["III"] - st["NORM"]["III"] > 0.1).all()
    assert (st["IMI"]["aVF"] - st["NORM"]["aVF"] > 0.05).all()
    assert (st["IMI"]["aVL"] - st["NORM"]["aVL"] < -0.05).all()


def test_labels_are_consistent_with_metadata(noisy_100hz):
    data = noisy_100hz
    meta = data.metadata
    for row, label_string in zip(data.labels, meta["labels"], strict=True):
        names = label_string.split(";")
        expected = np.isin(data.classes, names).astype(np.float32)
        np.testing.assert_array_equal(row, expected)
        if "NORM" in names:
            assert names == ["NORM"]
        assert not {"CLBBB", "CRBBB"} <= set(names)
        assert len({"AFIB", "SBRAD", "STACH"} & set(names)) <= 1
    afib = data.labels[:, data.classes.index("AFIB")] == 1
    np.testing.assert_array_equal(afib, (meta["rhythm"] == "AFIB").to_numpy())
    assert meta.loc[afib, "pr_ms"].isna().all()
    assert meta.loc[~afib, "pr_ms"].between(120, 320).all()
    # Some multi-label records, and every class present.
    assert (data.labels.sum(1) > 1).mean() > 0.1
    assert (data.labels.sum(0) > 20).all()


def test_folds_cover_one_to_ten_and_are_stratified(noisy_100hz):
    data = noisy_100hz
    assert set(np.unique(data.folds)) == set(range(1, 11))
    np.testing.assert_array_equal(data.folds, data.metadata["fold"].to_numpy())
    for label_string in data.metadata["labels"].unique():
        members = data.metadata["labels"] == label_string
        counts = np.bincount(data.folds[members.to_numpy()], minlength=11)[1:]
        assert counts.max() - counts.min() <= 1, label_string
    assert len(data.select_folds([10])) == 40


def test_class_subset_sets_label_columns():
    data = make_synthetic_ecg(
        num_records=30, duration_s=2.0, classes=("CRBBB", "AFIB"), seed=1
    )
    assert data.classes == ["CRBBB", "AFIB"] and data.labels.shape == (30, 2)
    assert (data.labels.sum(0) > 0).all() and (data.labels.sum(1) >= 1).all()
    assert set(data.metadata["labels"]) <= {"CRBBB", "AFIB", "CRBBB;AFIB"}
    assert data.class_descriptions == [
        "complete right bundle branch block",
        "atrial fibrillation",
    ]


def test_class_descriptions_are_the_ptbxl_statement_descriptions(ptbxl_dir):
    statements = pd.read_csv(ptbxl_dir / "scp_statements.csv", index_col=0)
    data = make_synthetic_ecg(num_records=10, duration_s=2.0, seed=0)
    assert data.label_vocabulary == "scp"
    assert data.class_descriptions == [
        statements.loc[name, "description"] for name in DEFAULT_CLASSES
    ]


def test_noise_is_added_on_top_of_the_same_clean_signal():
    kwargs = dict(num_records=16, sampling_rate=500, duration_s=10.0, seed=9)
    clean = make_synthetic_ecg(noise=False, **kwargs)
    noisy = make_synthetic_ecg(noise=True, **kwargs)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    np.testing.assert_array_equal(clean.folds, noisy.folds)
    assert (clean.metadata["baseline_mv"] == 0).all()
    residual = noisy.to_array() - clean.to_array()
    meta = noisy.metadata

    # Baseline wander: the slow part of the residual scales with baseline_mv.
    kernel = np.ones(250) / 250  # 0.5 s moving average
    slow = np.array(
        [np.convolve(r[:, 1], kernel, mode="valid").std() for r in residual]
    )
    rank = np.corrcoef(
        np.argsort(np.argsort(slow)), np.argsort(np.argsort(meta["baseline_mv"]))
    )
    assert rank[0, 1] > 0.8

    # Powerline: the residual spectrum peaks at the record's own line frequency.
    spectrum = np.abs(np.fft.rfft(residual[..., INDEPENDENT], axis=1)).sum(-1)
    freqs = np.fft.rfftfreq(residual.shape[1], 1 / 500)
    for power, line_hz in zip(spectrum, meta["powerline_hz"], strict=True):
        other = 110.0 - line_hz
        assert (
            power[np.argmin(abs(freqs - line_hz))]
            > power[np.argmin(abs(freqs - other))]
        )


def test_mean_amplitude_alone_does_not_separate_classes(noisy_100hz):
    """No class is trivially separable by the per-record mean of lead II."""
    data = noisy_100hz
    mean_ii = data.to_array()[..., 1].mean(1)
    for k, name in enumerate(data.classes):
        positive = data.labels[:, k] == 1
        # Best balanced accuracy of any threshold, in either direction.
        order = np.argsort(mean_ii)
        true_positive = np.cumsum(positive[order][::-1])[::-1] / positive.sum()
        true_negative = np.cumsum(~positive[order]) / (~positive).sum()
        below = np.concatenate([[0.0], true_negative[:-1]])
        balanced = (true_positive + below) / 2
        best = max(balanced.max(), (1 - balanced).max())
        assert best < 0.85, (name, best)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_records=0), "num_records"),
        (dict(sampling_rate=20), "sampling_rate"),
        (dict(duration_s=0.0), "duration_s"),
        (dict(classes=["NORM", "LVH"]), "LVH"),
        (dict(classes=[]), "non-empty"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic_ecg(**kwargs)


def test_vectorised_beats_match_a_sum_over_every_beat():
    """The 4-neighbour vectorised sum equals summing each wave of every beat."""
    from keras_ecg.data import synthetic

    fs, duration = 100, 6.0
    rng = np.random.default_rng(0)
    classes = ["SBRAD", "STACH", "CLBBB", "CRBBB", "IMI", "1AVB"]
    label_sets = synthetic._sample_label_sets(rng, 8, classes)
    params = synthetic._sample_parameters(rng, label_sets, duration)
    time = np.arange(int(duration * fs)) / fs
    fast = synthetic._clean_independent_leads(params, slice(0, 8), time)

    for i in range(8):
        dipole = np.zeros((len(time), 3))
        for wave in params["waves"].values():
            for beat in params["beats"][i]:
                x = time - beat - wave["mu"][i]
                sigma = np.where(x < 0, wave["sl"][i], wave["sr"][i])
                dipole += (
                    wave["amp"][i] * np.exp(-0.5 * (x / sigma) ** 2)[:, None]
                ) * wave["dir"][i]
        breathing = 1 + params["resp_mod"][i] * np.sin(
            2 * np.pi * params["resp_hz"][i] * time + params["resp_phase"][i]
        )
        dipole *= (params["amplitude"][i] * breathing)[:, None]
        gains = np.concatenate([[1.0, 1.0], params["v_gain"][i]])
        expected = dipole @ synthetic._DOWER.T * gains
        np.testing.assert_allclose(fast[i], expected, atol=2e-5)
