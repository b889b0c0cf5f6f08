"""An embedded generator of SYNTHETIC 12-lead ECG (not clinical data).

The project's demo and many tests need ECG-like data without internet access.
`make_synthetic_ecg` simulates it: a 3-D cardiac dipole (a vectorcardiogram)
built per beat from Gaussian waves for P, Q, R, S and T (in the spirit of
McSharry et al.'s ECGSYN model, IEEE TBME 2003), projected onto the eight
independent leads (I, II, V1-V6) with the Dower lead matrix; III, aVR, aVL and
aVF are then derived so that the Einthoven/Goldberger relations hold exactly.

Classes differ in ECG ways an encoder has to learn (rhythm regularity, P-wave
presence and timing, QRS width and shape per lead, ST-T changes in a lead
territory), while nuisance factors vary across every record: heart rate, RR
variability, electrical axis (a random rotation of the heart), amplitude, wave
widths, precordial electrode gains and (with `noise=True`) baseline wander,
EMG-like noise and powerline interference. No class is separable by a trivial
statistic such as the mean of a lead.

The records are SYNTHETIC. They look like ECG to a model, but they are not
clinical recordings, carry no diagnostic truth and must never be used to
validate a clinical claim.
"""

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import SCP
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset

# PTB-XL scp codes where one fits.
DEFAULT_CLASSES = (
    "NORM",  # normal ECG: sinus rhythm 60-100 bpm, normal conduction
    "AFIB",  # atrial fibrillation: irregular RR, no P waves, f-waves
    "1AVB",  # first-degree AV block: PR > 200 ms
    "CLBBB",  # complete left bundle branch block
    "CRBBB",  # complete right bundle branch block
    "IMI",  # inferior myocardial infarction: Q waves, ST elevation II/III/aVF
    "SBRAD",  # sinus bradycardia (< 60 bpm)
    "STACH",  # sinus tachycardia (> 100 bpm)
)

# The statements' `description` in PTB-XL's scp_statements.csv.
CLASS_DESCRIPTIONS = {
    "NORM": "normal ECG",
    "AFIB": "atrial fibrillation",
    "1AVB": "first degree AV block",
    "CLBBB": "complete left bundle branch block",
    "CRBBB": "complete right bundle branch block",
    "IMI": "inferior myocardial infarction",
    "SBRAD": "sinus bradycardia",
    "STACH": "sinus tachycardia",
}

# Label pairs that cannot co-occur in one record ("NORM" excludes everything).
_EXCLUSIVE_GROUPS = (
    frozenset({"AFIB", "SBRAD", "STACH"}),  # one rhythm per record
    frozenset({"AFIB", "1AVB"}),  # no PR interval without P waves
    frozenset({"CLBBB", "CRBBB"}),
    frozenset({"CLBBB", "IMI"}),  # LBBB masks infarct Q waves
)

# Dower matrix: Frank X (right->left), Y (head->foot), Z (front->back) to the
# independent leads I, II, V1..V6 (Dower 1968; Edenbrandt & Pahlm 1988).
_DOWER = np.array(
    [
        [0.632, -0.235, 0.059],
        [0.235, 1.066, -0.132],
        [-0.515, 0.157, -0.917],
        [0.044, 0.164, -1.387],
        [0.882, 0.098, -1.277],
        [1.213, 0.127, -0.601],
        [1.125, 0.127, -0.086],
        [0.831, 0.076, 0.230],
    ]
)

_WAVES = ("P", "Q", "R", "R2", "S", "ST", "T")
_NEIGHBOURS = np.arange(-1, 3)  # beats around each sample whose waves reach it
_BEAT_PAD_S = 4.5  # beats simulated before t=0 and after the end
_MIN_RR_S = 0.28
_MAX_RR_S = 2.0


def _unit(*vector):
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def _frontal(angle_deg, z):
    """A unit vector at a frontal-plane angle (0 = left, +90 = inferior)."""
    angle = np.deg2rad(angle_deg)
    return _unit(np.cos(angle), np.sin(angle), z)


# Typical-heart wave directions, before each record's random rotation.
_DIR_P = _frontal(55.0, -0.15)
_DIR_SEPTAL_Q = _unit(-0.6, 0.1, -0.8)  # septum: rightward and anterior
_DIR_R = _frontal(45.0, 0.35)  # left, inferior, slightly posterior
_DIR_S = _unit(-0.5, -0.4, 0.6)  # terminal forces: right, superior, posterior
_DIR_T = _frontal(40.0, -0.3)  # concordant with QRS, anterior
_DIR_LBBB_R = _frontal(15.0, 0.75)  # slow leftward-posterior activation
_DIR_RBBB_TERMINAL = _unit(-0.6, 0.0, -0.8)  # late right-ventricular forces
_DIR_INFERIOR_Q = _unit(0.1, -1.0, 0.1)  # away from the dead inferior wall
_DIR_INFERIOR_STE = _frontal(110.0, 0.0)  # injury current toward II, III, aVF
_DIR_ATRIAL_F = _unit(-0.3, 0.5, -0.8)  # f-waves: most visible in V1 and II


def make_synthetic_ecg(
    num_records=1000,
    sampling_rate=100,
    duration_s=10.0,
    classes=None,
    noise=True,
    seed=0,
):
    """Generates a SYNTHETIC (not clinical) labelled 12-lead ECG dataset.

    Each record gets one primary class drawn uniformly from `classes`, and with
    probability 0.3 one compatible secondary class (e.g. `CRBBB` + `1AVB`,
    `AFIB` + `IMI`); `NORM` is always alone. What each class changes:

    - `NORM`: sinus rhythm at 62-98 bpm, PR 120-190 ms, QRS 80-100 ms.
    - `AFIB`: irregularly irregular RR (CV 0.15-0.3), no P waves, 4-9 Hz
      fibrillatory waves; ventricular rate 70-130 bpm.
    - `1AVB`: PR 220-320 ms.
    - `CLBBB`: QRS 135-170 ms, no septal q, broad notched R in I/aVL/V5/V6,
      deep QS in V1-V2, discordant ST-T.
    - `CRBBB`: QRS 125-165 ms, terminal rightward-anterior forces: rsR' in
      V1, wide S in I and V6, T inversion in V1-V3.
    - `IMI`: pathological Q and ST elevation in II, III, aVF with reciprocal
      ST depression in I/aVL.
    - `SBRAD` / `STACH`: sinus rhythm at 40-56 / 104-150 bpm.

    Nuisance variation in every record: heart rate within the class range,
    respiratory sinus arrhythmia, a random rotation of the heart (frontal axis
    about -15..105 degrees), amplitude scale, wave widths, QTc, precordial
    electrode gains and a respiratory amplitude modulation. With `noise=True`,
    baseline wander (0.02-0.3 mV), EMG-like bursty white noise (0.002-0.03 mV)
    and 50/60 Hz powerline interference (0.001-0.02 mV) are added per
    electrode, so the limb-lead identities still hold exactly. Powerline is
    sampled without an anti-aliasing filter, so at 100 Hz it shows as its
    alias (or a Nyquist-rate oscillation for 50 Hz).

    Args:
        num_records: number of records.
        sampling_rate: samples per second.
        duration_s: length of every record in seconds.
        classes: class names to generate, a subset of `DEFAULT_CLASSES`; label
            columns follow this order. Defaults to all of `DEFAULT_CLASSES`.
        noise: whether to add baseline wander, EMG and powerline noise.
        seed: seed of the generator; the same arguments give identical data.

    Returns:
        An `ECGDataset` with `num_records` float32 `(timesteps, 12)` signals in
        mV (views into one array), leads `STANDARD_LEADS`, multi-hot float32
        `labels` over PTB-XL SCP codes (`label_vocabulary="scp"`, with
        `class_descriptions` from `CLASS_DESCRIPTIONS`), `folds` in 1..10
        (stratified by label set), record ids `"synthetic_00001"`... and a
        `metadata` DataFrame with one row per record: `record_id`, `labels`
        (";"-joined), `rhythm`, `heart_rate`, `rr_cv`, `pr_ms` (NaN in AFIB),
        `qrs_ms`, `qt_ms`, `qrs_axis_deg`, `amplitude_scale`, `width_scale`,
        `baseline_mv`, `emg_mv`, `powerline_mv`, `powerline_hz`, `fold`.

    Example:

    ```python
    data = keras_ecg.data.make_synthetic_ecg(num_records=200, seed=1)
    x = data.to_array()  # (200, 1000, 12) float32, mV
    y = data.labels  # (200, 8) multi-hot
    ```
    """
    classes = _validate(num_records, sampling_rate, duration_s, classes)
    rng = np.random.default_rng(seed)
    num_timesteps = int(round(duration_s * sampling_rate))
    label_sets = _sample_label_sets(rng, num_records, classes)
    params = _sample_parameters(rng, label_sets, duration_s)
    folds = _stratified_folds(rng, label_sets, classes)

    signals = np.empty((num_records, num_timesteps, 12), dtype=np.float32)
    noise_levels = _sample_noise_levels(rng, num_records, noise)
    time = np.arange(num_timesteps, dtype=np.float64) / sampling_rate
    # Chunks bound the `(records, timesteps, neighbours)` temporaries to ~16 MB.
    chunk = max(1, 1_000_000 // max(num_timesteps, 1))
    for start in range(0, num_records, chunk):
        rows = slice(start, min(start + chunk, num_records))
        independent = _clean_independent_leads(params, rows, time)
        if noise:
            independent += _electrode_noise(rng, noise_levels, rows, time)
        _write_leads(signals[rows], independent)

    labels = np.zeros((num_records, len(classes)), dtype=np.float32)
    for i, label_set in enumerate(label_sets):
        for name in label_set:
            labels[i, classes.index(name)] = 1.0
    record_ids = [f"synthetic_{i + 1:05d}" for i in range(num_records)]
    metadata = _metadata(
        record_ids, label_sets, classes, params, noise_levels, folds, duration_s
    )
    return ECGDataset(
        signals=list(signals),
        record_ids=record_ids,
        sampling_rate=sampling_rate,
        lead_names=STANDARD_LEADS,
        labels=labels,
        classes=list(classes),
        folds=folds,
        metadata=metadata,
        class_descriptions=[CLASS_DESCRIPTIONS[name] for name in classes],
        label_vocabulary=SCP,
    )


def _validate(num_records, sampling_rate, duration_s, classes):
    if int(num_records) != num_records or num_records < 1:
        raise ValueError(f"num_records must be a positive integer, got {num_records}.")
    if int(sampling_rate) != sampling_rate or sampling_rate < 50:
        raise ValueError(
            f"sampling_rate must be an integer >= 50 Hz (QRS waves last tens of "
            f"milliseconds), got {sampling_rate}."
        )
    if not np.isfinite(duration_s) or duration_s * sampling_rate < 1:
        raise ValueError(
            f"duration_s must give at least one sample, got {duration_s} s at "
            f"{sampling_rate} Hz."
        )
    if classes is None:
        return list(DEFAULT_CLASSES)
    if isinstance(classes, str):
        classes = [classes]
    classes = list(classes)
    unknown = [c for c in classes if c not in DEFAULT_CLASSES]
    if unknown:
        raise ValueError(
            f"Unknown synthetic class(es) {unknown}; choose from {DEFAULT_CLASSES}."
        )
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be non-empty and unique, got {classes}.")
    return classes


def _compatible(name, label_set):
    if name in label_set or name == "NORM" or "NORM" in label_set:
        return False
    return not any(name in group and group & label_set for group in _EXCLUSIVE_GROUPS)


def _sample_label_sets(rng, num_records, classes):
    primary = rng.integers(len(classes), size=num_records)
    add_secondary = rng.random(num_records) < 0.3
    pick = rng.random(num_records)
    label_sets = []
    for i in range(num_records):
        label_set = {classes[primary[i]]}
        if add_secondary[i]:
            candidates = [c for c in classes if _compatible(c, label_set)]
            if candidates:
                label_set.add(candidates[int(pick[i] * len(candidates))])
        label_sets.append(frozenset(label_set))
    return label_sets


def _rotation_matrices(rng, n):
    """Random heart orientations: mostly a frontal-plane (axis) rotation."""
    frontal = np.deg2rad(rng.uniform(-45.0, 45.0, n))
    tilt_x = np.deg2rad(rng.normal(0.0, 10.0, n))
    tilt_y = np.deg2rad(rng.normal(0.0, 10.0, n))
    c, s = np.cos(frontal), np.sin(frontal)
    zeros = np.zeros(n)
    # Rotation about Z turns the frontal (X-Y) plane; X and Y add small tilts.
    rot_z = np.stack(
        [np.stack([c, -s, zeros], -1), np.stack([s, c, zeros], -1), _e(2, n)], 1
    )
    cx, sx = np.cos(tilt_x), np.sin(tilt_x)
    rot_x = np.stack(
        [_e(0, n), np.stack([zeros, cx, -sx], -1), np.stack([zeros, sx, cx], -1)], 1
    )
    cy, sy = np.cos(tilt_y), np.sin(tilt_y)
    rot_y = np.stack(
        [np.stack([cy, zeros, sy], -1), _e(1, n), np.stack([-sy, zeros, cy], -1)], 1
    )
    return rot_z @ rot_x @ rot_y


def _e(axis, n):
    basis = np.zeros((n, 3))
    basis[:, axis] = 1.0
    return basis


def _sample_parameters(rng, label_sets, duration_s):
    n = len(label_sets)
    has = {c: np.array([c in s for s in label_sets]) for c in DEFAULT_CLASSES}
    afib, lbbb, rbbb, imi = has["AFIB"], has["CLBBB"], has["CRBBB"], has["IMI"]
    sinus = ~afib

    # Heart rate and RR series.
    heart_rate = rng.uniform(62.0, 98.0, n)
    heart_rate = np.where(has["SBRAD"], rng.uniform(40.0, 56.0, n), heart_rate)
    heart_rate = np.where(has["STACH"], rng.uniform(104.0, 150.0, n), heart_rate)
    heart_rate = np.where(afib, rng.uniform(70.0, 130.0, n), heart_rate)
    mean_rr = 60.0 / heart_rate
    max_beats = int(np.ceil((duration_s + 2 * _BEAT_PAD_S) / _MIN_RR_S)) + 2
    k = np.arange(max_beats)
    resp_hz = rng.uniform(0.15, 0.4, n)
    resp_phase = rng.uniform(0.0, 2 * np.pi, n)
    rsa = rng.uniform(0.01, 0.05, n)
    jitter = rng.uniform(0.005, 0.02, n)
    sinus_rr = mean_rr[:, None] * (
        1.0
        + rsa[:, None]
        * np.sin(
            2 * np.pi * resp_hz[:, None] * k * mean_rr[:, None] + resp_phase[:, None]
        )
        + jitter[:, None] * rng.standard_normal((n, max_beats))
    )
    afib_cv = rng.uniform(0.15, 0.3, n)
    shape = 1.0 / afib_cv**2
    afib_rr = mean_rr[:, None] * rng.gamma(
        shape[:, None], 1.0 / shape[:, None], (n, max_beats)
    )
    rr = np.clip(np.where(afib[:, None], afib_rr, sinus_rr), _MIN_RR_S, _MAX_RR_S)
    first = -_BEAT_PAD_S - rng.uniform(0.0, 1.0, n) * rr[:, 0]
    beats = first[:, None] + np.concatenate(
        [np.zeros((n, 1)), np.cumsum(rr[:, :-1], 1)], 1
    )
    if np.any(beats[:, -1] < duration_s + _BEAT_PAD_S):
        raise AssertionError("internal: too few simulated beats")

    width = rng.uniform(0.9, 1.15, n)
    amplitude = np.clip(rng.lognormal(0.0, 0.2, n), 0.6, 1.6)
    rotation = _rotation_matrices(rng, n)

    def wave(mu, sigma_left, sigma_right, amp, direction):
        direction = np.broadcast_to(direction, (n, 3))
        return {
            "mu": np.broadcast_to(mu, (n,)).astype(np.float64),
            "sl": np.broadcast_to(sigma_left, (n,)).astype(np.float64),
            "sr": np.broadcast_to(sigma_right, (n,)).astype(np.float64),
            "amp": np.broadcast_to(amp, (n,)).astype(np.float64),
            "dir": np.einsum("nij,nj->ni", rotation, direction),
        }

    def pick(mask, a, b):
        # Per-record choice between two (broadcastable to (n, 3)) directions.
        return np.where(mask[:, None], a, b)

    # QRS: septal q, R, optional second R (LBBB notch / RBBB R'), S.
    q_sigma = np.where(imi, 0.012, 0.008) * width
    q_mu = np.where(imi, -0.025, -0.022) * width
    q_amp = np.where(imi, rng.uniform(0.35, 0.6, n), rng.uniform(0.08, 0.2, n))
    q_amp = np.where(lbbb, 0.0, q_amp)  # reversed septal activation: no q in V6
    q_dir = pick(imi, _DIR_INFERIOR_Q, _DIR_SEPTAL_Q)
    r_mu = np.where(lbbb, -0.025, 0.0) * width
    r_sigma = np.where(lbbb, 0.02, 0.0105) * width
    r_amp = rng.uniform(1.0, 1.6, n)
    r_dir = pick(lbbb, _DIR_LBBB_R, _DIR_R)
    r2_mu = np.where(lbbb, 0.02, rng.uniform(0.052, 0.058, n)) * width
    r2_sigma = np.where(lbbb, 0.022, 0.018) * width
    r2_amp = np.where(lbbb, r_amp * rng.uniform(0.8, 1.0, n), rng.uniform(0.6, 0.9, n))
    r2_amp = np.where(lbbb | rbbb, r2_amp, 0.0)
    r2_dir = pick(lbbb, _DIR_LBBB_R, _DIR_RBBB_TERMINAL)
    s_mu, s_sigma = 0.024 * width, 0.009 * width
    s_amp = np.where(lbbb, 0.0, rng.uniform(0.3, 0.6, n))

    qrs_on = np.where(lbbb, r_mu - 2.5 * r_sigma, q_mu - 2.5 * q_sigma)
    qrs_off = np.where(lbbb | rbbb, r2_mu + 2.5 * r2_sigma, s_mu + 2.5 * s_sigma)

    # P wave placed from the PR interval (P onset to QRS onset).
    pr = np.where(has["1AVB"], rng.uniform(0.22, 0.32, n), rng.uniform(0.12, 0.19, n))
    p_sigma = rng.uniform(0.018, 0.024, n)
    p_mu = qrs_on - pr + 2.5 * p_sigma
    p_amp = np.where(sinus, rng.uniform(0.1, 0.25, n), 0.0)

    # T wave from a Bazett-corrected QT (QRS onset to T end).
    qtc = rng.uniform(0.38, 0.44, n)
    qt = qtc * np.sqrt(mean_rr) + np.where(lbbb | rbbb, 0.04, 0.0)
    t_scale = np.sqrt(mean_rr) * rng.uniform(0.85, 1.15, n)
    t_sl, t_sr = 0.055 * t_scale, 0.035 * t_scale
    t_mu = qrs_on + qt - 2.5 * t_sr
    t_amp = rng.uniform(0.25, 0.45, n)
    t_amp = np.where(lbbb, rng.uniform(0.35, 0.5, n), t_amp)
    t_dir = pick(lbbb, -_DIR_LBBB_R, _DIR_T)

    # ST segment: discordant in LBBB, V1-V3 T inversion in RBBB, injury in IMI.
    st_mu = 0.5 * (qrs_off + t_mu)
    st_sigma = 0.05 * np.sqrt(mean_rr)
    st_amp = np.where(lbbb, rng.uniform(0.1, 0.2, n), 0.0)
    st_amp = np.where(rbbb, rng.uniform(0.1, 0.2, n), st_amp)
    st_amp = np.where(imi, rng.uniform(0.1, 0.3, n), st_amp)
    st_dir = pick(lbbb, -_DIR_LBBB_R, _DIR_INFERIOR_STE)
    st_dir = pick(rbbb & ~imi, -_DIR_RBBB_TERMINAL, st_dir)

    waves = {
        "P": wave(p_mu, p_sigma, p_sigma, p_amp, _DIR_P),
        "Q": wave(q_mu, q_sigma, q_sigma, q_amp, q_dir),
        "R": wave(r_mu, r_sigma, r_sigma, r_amp, r_dir),
        "R2": wave(r2_mu, r2_sigma, r2_sigma, r2_amp, r2_dir),
        "S": wave(s_mu, s_sigma, s_sigma, s_amp, _DIR_S),
        "ST": wave(st_mu, st_sigma, st_sigma, st_amp, st_dir),
        "T": wave(t_mu, t_sl, t_sr, t_amp, t_dir),
    }

    # Net QRS vector (sum of wave areas) gives the frontal electrical axis.
    qrs_area = sum(
        (waves[w]["amp"] * waves[w]["sl"])[:, None] * waves[w]["dir"]
        for w in ("Q", "R", "R2", "S")
    )
    axis = np.rad2deg(np.arctan2(qrs_area[:, 1], qrs_area[:, 0]))

    # Rate as a reader would measure it: from the RR intervals inside the
    # record; records too short for two beats fall back to the target rate.
    in_window = (beats >= 0.0) & (beats < duration_s)
    pairs = in_window[:, 1:] & in_window[:, :-1]
    count = pairs.sum(1)
    rr_in = np.where(pairs, np.diff(beats, axis=1), 0.0)
    measured_rr = np.where(count > 0, rr_in.sum(1) / np.maximum(count, 1), mean_rr)
    spread = np.where(pairs, np.diff(beats, axis=1) - measured_rr[:, None], 0.0)
    rr_std = np.sqrt(np.square(spread).sum(1) / np.maximum(count, 1))
    rr_cv = np.where(count > 1, rr_std / measured_rr, np.nan)

    return {
        "n": n,
        "beats": beats,
        "waves": waves,
        "amplitude": amplitude,
        "v_gain": 1.0 + rng.normal(0.0, 0.08, (n, 6)),
        "resp_hz": resp_hz,
        "resp_phase": resp_phase,
        "resp_mod": rng.uniform(0.0, 0.08, n),
        "afib": afib,
        "f_hz": rng.uniform(4.0, 9.0, n),
        "f_amp": np.where(afib, rng.uniform(0.05, 0.15, n), 0.0),
        "f_phase": rng.uniform(0.0, 2 * np.pi, (n, 3)),
        "f_dir": np.einsum("nij,j->ni", rotation, _DIR_ATRIAL_F),
        "heart_rate": 60.0 / measured_rr,
        "rr_cv": rr_cv,
        "pr_ms": np.where(sinus, pr * 1000.0, np.nan),
        "qrs_ms": (qrs_off - qrs_on) * 1000.0,
        "qt_ms": qt * 1000.0,
        "qrs_axis_deg": axis,
        "width": width,
    }


def _clean_independent_leads(params, rows, time):
    """Noise-free I, II, V1..V6 `(records, timesteps, 8)` for records `rows`."""
    beats = params["beats"][rows]
    n, num_beats = beats.shape
    # Index of the last beat at or before each sample, found for all records in
    # one `searchsorted` by offsetting each record's times by a large constant.
    span = max(beats.max(), time[-1]) - min(beats.min(), time[0]) + 1.0
    offset = span * np.arange(n)[:, None]
    flat_beats = (beats + offset).ravel()
    flat_time = (time[None, :] + offset).ravel()
    previous = np.searchsorted(flat_beats, flat_time, side="right") - 1
    previous = previous.reshape(n, -1) - num_beats * np.arange(n)[:, None]
    neighbours = previous[:, :, None] + _NEIGHBOURS
    # dt: time since each neighbouring beat's fiducial point, float32 for speed.
    dt = time[None, :, None] - np.take_along_axis(beats[:, None, :], neighbours, 2)
    dt = dt.astype(np.float32)

    dipole = np.zeros((n, len(time), 3), dtype=np.float32)
    for name in _WAVES:
        w = {key: value[rows] for key, value in params["waves"][name].items()}
        active = w["amp"] != 0
        if not np.any(active):
            continue
        x = dt - w["mu"][:, None, None].astype(np.float32)
        sigma = np.where(x < 0, w["sl"][:, None, None], w["sr"][:, None, None]).astype(
            np.float32
        )
        shape = np.exp(-0.5 * np.square(x / sigma)).sum(-1)
        dipole += (shape * w["amp"][:, None].astype(np.float32))[..., None] * w["dir"][
            :, None, :
        ].astype(np.float32)

    afib = params["afib"][rows]
    if np.any(afib):
        dipole += _fibrillatory_waves(params, rows, time)[..., None] * params["f_dir"][
            rows
        ][:, None, :].astype(np.float32)

    breathing = 1.0 + params["resp_mod"][rows, None] * np.sin(
        2 * np.pi * params["resp_hz"][rows, None] * time[None, :]
        + params["resp_phase"][rows, None]
    )
    dipole *= (params["amplitude"][rows, None] * breathing).astype(np.float32)[
        ..., None
    ]
    # Per-record precordial gains stand for electrode placement variation.
    lead_matrix = np.concatenate(
        [
            np.broadcast_to(_DOWER[:2], (len(dipole), 2, 3)),
            _DOWER[None, 2:] * params["v_gain"][rows][:, :, None],
        ],
        axis=1,
    ).astype(np.float32)
    return np.matmul(dipole, np.transpose(lead_matrix, (0, 2, 1)))


def _fibrillatory_waves(params, rows, time):
    """Atrial f-waves: frequency- and amplitude-modulated sawtooth-like waves."""
    f_hz = params["f_hz"][rows, None]
    phases = params["f_phase"][rows]
    wobble = 0.6 * np.sin(2 * np.pi * 0.13 * time[None, :] + phases[:, :1])
    step = time[1] - time[0] if len(time) > 1 else 0.0
    phase = 2 * np.pi * np.cumsum(f_hz + wobble, axis=1) * step
    envelope = 1.0 + 0.4 * np.sin(2 * np.pi * 0.31 * time[None, :] + phases[:, 1:2])
    wave = np.sin(phase + phases[:, 2:3]) + 0.3 * np.sin(2 * phase)
    return (params["f_amp"][rows, None] * envelope * wave).astype(np.float32)


def _sample_noise_levels(rng, n, noise):
    def log_uniform(low, high):
        return np.exp(rng.uniform(np.log(low), np.log(high), n))

    levels = {
        "baseline_mv": log_uniform(0.02, 0.3),
        "emg_mv": log_uniform(0.002, 0.03),
        "powerline_mv": log_uniform(0.001, 0.02),
        "powerline_hz": np.where(rng.random(n) < 0.5, 50.0, 60.0),
    }
    if not noise:
        levels = {
            key: np.zeros(n) if key != "powerline_hz" else np.full(n, np.nan)
            for key in levels
        }
    return levels


def _electrode_noise(rng, levels, rows, time):
    """Noise on the 9 electrodes (RA, LA, LL, V1..V6) seen as the 8 leads."""
    n, num_electrodes, num_timesteps = rows.stop - rows.start, 9, len(time)
    t = time.astype(np.float32)

    # Baseline wander: two slow sinusoids per electrode (respiration, motion),
    # evaluated on a 20 Hz grid and linearly interpolated: it has no fast parts.
    coarse_t = np.arange(0.0, time[-1] + 0.1, 0.05)
    freqs = rng.uniform(0.05, 0.6, (n, num_electrodes, 2, 1))
    phases = rng.uniform(0.0, 2 * np.pi, (n, num_electrodes, 2, 1))
    weights = rng.uniform(0.3, 1.0, (n, num_electrodes, 2, 1))
    coarse = (weights * np.sin(2 * np.pi * freqs * coarse_t + phases)).sum(2)
    coarse *= levels["baseline_mv"][rows, None, None] / np.sqrt(2)
    position = time / 0.05
    left = np.minimum(position.astype(np.int64), len(coarse_t) - 2)
    fraction = (position - left).astype(np.float32)
    coarse = coarse.astype(np.float32)
    noise = coarse[:, :, left] * (1 - fraction) + coarse[:, :, left + 1] * fraction

    # EMG: white noise in bursts (muscle tension comes and goes).
    burst_hz = rng.uniform(0.05, 0.3, (n, 1, 1))
    burst_phase = rng.uniform(0.0, 2 * np.pi, (n, 1, 1))
    envelope = 0.4 + np.maximum(0.0, np.sin(2 * np.pi * burst_hz * t + burst_phase))
    envelope *= levels["emg_mv"][rows, None, None]
    emg = rng.standard_normal((n, num_electrodes, num_timesteps), dtype=np.float32)
    noise += emg * envelope.astype(np.float32)

    # Powerline: a common-mode sinusoid that unequal electrode impedances leak.
    leak = rng.uniform(-1.0, 1.0, (n, num_electrodes, 1))
    leak *= levels["powerline_mv"][rows, None, None]
    line_phase = rng.uniform(0.0, 2 * np.pi, (n, 1, 1))
    line_hz = levels["powerline_hz"][rows, None, None]
    line = np.sin((2 * np.pi * line_hz * time + line_phase).astype(np.float32))
    noise += leak.astype(np.float32) * line

    electrodes = np.transpose(noise, (0, 2, 1))
    ra, la, ll = electrodes[..., 0], electrodes[..., 1], electrodes[..., 2]
    wilson = (ra + la + ll) / 3.0
    return np.concatenate(
        [
            (la - ra)[..., None],
            (ll - ra)[..., None],
            electrodes[..., 3:] - wilson[..., None],
        ],
        axis=-1,
    )


def _write_leads(out, independent):
    """Writes I, II, V1..V6 and the derived III, aVR, aVL, aVF into `out`."""
    lead_i, lead_ii = independent[..., 0], independent[..., 1]
    out[..., 0] = lead_i
    out[..., 1] = lead_ii
    # Einthoven and Goldberger: the limb leads span a 2-D space.
    out[..., 2] = lead_ii - lead_i
    out[..., 3] = -(lead_i + lead_ii) / 2.0
    out[..., 4] = lead_i - lead_ii / 2.0
    out[..., 5] = lead_ii - lead_i / 2.0
    out[..., 6:] = independent[..., 2:]


def _stratified_folds(rng, label_sets, classes):
    """Folds 1..10 dealt round-robin within each label set, in random order."""
    folds = np.zeros(len(label_sets), dtype=np.int64)
    keys = [";".join(sorted(s, key=classes.index)) for s in label_sets]
    cursor = 0
    for key in sorted(set(keys)):
        members = np.flatnonzero([k == key for k in keys])
        members = members[rng.permutation(len(members))]
        folds[members] = (cursor + np.arange(len(members))) % 10 + 1
        cursor += len(members)
    return folds


def _metadata(record_ids, label_sets, classes, params, levels, folds, duration_s):
    rhythm = np.full(len(record_ids), "SR", dtype=object)
    for name in ("SBRAD", "STACH", "AFIB"):
        rhythm[[name in s for s in label_sets]] = name
    return pd.DataFrame(
        {
            "record_id": record_ids,
            "labels": [";".join(sorted(s, key=classes.index)) for s in label_sets],
            "rhythm": rhythm,
            "heart_rate": params["heart_rate"],
            "rr_cv": params["rr_cv"],
            "pr_ms": params["pr_ms"],
            "qrs_ms": params["qrs_ms"],
            "qt_ms": params["qt_ms"],
            "qrs_axis_deg": params["qrs_axis_deg"],
            "amplitude_scale": params["amplitude"],
            "width_scale": params["width"],
            "baseline_mv": levels["baseline_mv"],
            "emg_mv": levels["emg_mv"],
            "powerline_mv": levels["powerline_mv"],
            "powerline_hz": levels["powerline_hz"],
            "fold": folds,
        }
    )
