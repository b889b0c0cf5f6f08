"""An embedded generator of SYNTHETIC 12-lead ECG (not clinical data).

The project's demo and many tests need ECG-like data without internet access.
`make_synthetic_ecg` simulates it: a 3-D cardiac dipole (a vectorcardiogram)
built per beat from Gaussian waves for P, Q, R, S, ST and T (in the spirit of
McSharry et al.'s ECGSYN model, IEEE TBME 2003), projected onto the eight
independent leads (I, II, V1-V6) with the Dower lead matrix; III, aVR, aVL and
aVF are then derived so that the Einthoven/Goldberger relations hold exactly.

Classes differ in ECG ways an encoder has to learn (rhythm regularity, P-wave
presence and timing, QRS width, shape and axis, voltage, ST level and T shape
in a lead territory, the QT interval against the heart rate), several of them
by amounts close to the limits readers use (PR 196 vs 206 ms, QRS 103 vs 105
ms, axis -30 vs -45 degrees, ST depression of 0.05 mV). Nuisance factors vary
across every record: heart rate, RR variability, electrical axis, QRS loop
shape, T-wave axis and amplitude, overall and precordial voltages, wave widths,
QTc, normal-variant anterior ST elevation and (with `noise=True`) baseline
wander, EMG bursts, electrode-motion artefacts and powerline interference. No
class is separable by a trivial statistic such as the mean of a lead.

Class-defining quantities (PR, QRS duration, frontal axis, Sokolow-Lyon
voltage, lateral ST level, QTc) are set or calibrated on a noise-free template
beat of each record, so every label is a correct description of the record by
the criterion its docstring states, and the metadata reports them.

The records are SYNTHETIC. They look like ECG to a model, but they are not
clinical recordings, carry no diagnostic truth and must never be used to
validate a clinical claim.
"""

import numpy as np
import pandas as pd

from keras_ecg.data.ecg_dataset import SCP
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset

# PTB-XL scp codes. The first eight are the generator's original classes, in
# their original label-column order.
DEFAULT_CLASSES = (
    "NORM",  # normal ECG: sinus rhythm 60-100 bpm, normal conduction
    "AFIB",  # atrial fibrillation: irregular RR, no P waves, f-waves
    "1AVB",  # first-degree AV block: PR > 200 ms
    "CLBBB",  # complete left bundle branch block
    "CRBBB",  # complete right bundle branch block
    "IMI",  # inferior myocardial infarction: Q waves, ST elevation II/III/aVF
    "SBRAD",  # sinus bradycardia (< 60 bpm)
    "STACH",  # sinus tachycardia (> 100 bpm)
    "LAFB",  # left anterior fascicular block: axis -45..-90, QRS < 120 ms
    "IRBBB",  # incomplete right bundle branch block: rsr' in V1, QRS 100-120
    "LVH",  # left ventricular hypertrophy: Sokolow-Lyon voltage + strain
    "ISCAL",  # ischaemic ST depression in the anterolateral leads
    "LNGQT",  # long QT: QTc > 460 ms
    "LPFB",  # left posterior fascicular block: axis +100..+170, QRS < 120 ms
    "ASMI",  # anteroseptal myocardial infarction: QS waves in V1-V3
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
    "LAFB": "left anterior fascicular block",
    "IRBBB": "incomplete right bundle branch block",
    "LVH": "left ventricular hypertrophy",
    "ISCAL": "ischemic in anterolateral leads",
    "LNGQT": "long QT-interval",
    "LPFB": "left posterior fascicular block",
    "ASMI": "anteroseptal myocardial infarction",
}

# Label pairs that cannot co-occur in one record ("NORM" excludes everything).
_EXCLUSIVE_GROUPS = (
    frozenset({"AFIB", "SBRAD", "STACH"}),  # one rhythm per record
    frozenset({"AFIB", "1AVB"}),  # no PR interval without P waves
    frozenset({"CLBBB", "CRBBB", "IRBBB"}),  # one bundle-branch pattern
    frozenset({"CLBBB", "LAFB", "LPFB"}),  # one fascicle; LBBB blocks both
    frozenset({"IMI", "ASMI", "LPFB"}),  # one infarct Q; IMI mimics LPFB's qR
    frozenset({"LVH", "LAFB", "LPFB"}),  # fascicular blocks void the voltage
    frozenset({"CLBBB", "ASMI"}),
    frozenset({"CLBBB", "IMI"}),  # LBBB masks infarct Q waves
    frozenset({"CLBBB", "LVH"}),  # voltage and strain criteria void in LBBB
    frozenset({"CLBBB", "ISCAL"}),  # so are ischaemic ST criteria
    frozenset({"LVH", "ISCAL"}),  # one cause per lateral ST depression
    frozenset({"CLBBB", "LNGQT"}),  # QTc is not read through a wide QRS
    frozenset({"CRBBB", "LNGQT"}),
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
# Rows of the independent leads (I, II, V1..V6) used by the criteria.
_I, _II, _V1, _V4, _V5, _V6 = 0, 1, 2, 5, 6, 7
_III_ROW = _DOWER[_II] - _DOWER[_I]

_WAVES = ("P", "Q", "R", "R2", "S", "ST", "T")
_QRS_WAVES = ("Q", "R", "R2", "S")
_NEIGHBOURS = np.arange(-1, 3)  # beats around each sample whose waves reach it
_BEAT_PAD_S = 4.5  # beats simulated before t=0 and after the end
_MIN_RR_S = 0.28
_MAX_RR_S = 2.0
# ST level is read 60 ms after the J point (QRS offset).
ST_POINT_S = 0.06
# Criterion thresholds, shared with the tests.
SOKOLOW_LYON_MV = 3.5
ST_DEPRESSION_MV = 0.05
NORMAL_AXIS_DEG = (-30.0, 90.0)
LAFB_AXIS_DEG = (-85.0, -45.0)
LPFB_AXIS_DEG = (100.0, 170.0)


def _unit(*vector):
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def _frontal(angle_deg, z):
    """A unit vector at a frontal-plane angle (0 = left, +90 = inferior)."""
    angle = np.deg2rad(angle_deg)
    return _unit(np.cos(angle), np.sin(angle), z)


# Typical-heart wave directions, before each record's rotation.
_DIR_P = _frontal(55.0, -0.15)
_DIR_SEPTAL_Q = _unit(-0.6, 0.1, -0.8)  # septum: rightward and anterior
_DIR_R = _frontal(45.0, 0.35)  # left, inferior, slightly posterior
_DIR_S = _unit(-0.5, -0.4, 0.6)  # terminal forces: right, superior, posterior
_DIR_T = _frontal(40.0, -0.3)  # concordant with QRS, anterior
_DIR_LBBB_R = _frontal(15.0, 0.75)  # slow leftward-posterior activation
_DIR_RBBB_TERMINAL = _unit(-0.6, 0.0, -0.8)  # late right-ventricular forces
_DIR_RBBB_ST = _unit(0.5, 0.0, 1.0)  # secondary ST-T: away from V1-V3
_DIR_INFERIOR_Q = _unit(0.1, -1.0, 0.1)  # away from the dead inferior wall
_DIR_INFERIOR_STE = _frontal(90.0, 0.3)  # injury current of the inferior wall
_DIR_ATRIAL_F = _unit(-0.3, 0.5, -0.8)  # f-waves: most visible in V1 and II
_DIR_LAFB_Q = _frontal(120.0, -0.3)  # initial inferior-rightward forces
_DIR_LAFB_R = _frontal(-60.0, 0.3)  # then superior-leftward activation
_DIR_LPFB_Q = _frontal(-50.0, -0.3)  # initial superior-leftward forces
_DIR_LPFB_R = _frontal(125.0, 0.3)  # then inferior-rightward activation
_DIR_ANTEROSEPTAL_Q = _unit(0.3, 0.1, 1.0)  # away from the dead septum: QS V1-V3
_DIR_ASMI_T = _frontal(40.0, 0.7)  # T turned posterior: inverted in V1-V3
_DIR_LATERAL = _unit(1.0, 0.1, 0.07)  # toward I, V5, V6
_DIR_LVH_R = _frontal(30.0, 0.4)  # dominant left-posterior forces
_DIR_SUBENDOCARDIAL = _unit(-1.0, -0.3, 0.5)  # ST vector toward aVR
_DIR_EARLY_REPOL = _unit(0.15, 0.1, -1.0)  # normal-variant ST elevation V1-V3


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
    `LAFB` + `CRBBB`, `AFIB` + `IMI`); `NORM` is always alone. What each class
    changes, by the criterion it is labelled with:

    - `NORM`: sinus rhythm at 62-98 bpm, PR 120-196 ms, QRS 76-102 ms, frontal
      QRS axis -30..+90 degrees, QTc 370-440 ms, no criterion below met.
    - `AFIB`: irregularly irregular RR (CV 0.15-0.3), no P waves, 4-9 Hz
      fibrillatory waves; ventricular rate 70-130 bpm.
    - `1AVB`: PR 206-280 ms.
    - `CLBBB`: QRS 129-173 ms, no septal q, broad notched R in I/aVL/V5/V6,
      deep QS in V1-V2, discordant ST-T.
    - `CRBBB`: QRS 122-160 ms, terminal rightward-anterior forces: rsR' in V1,
      wide S in I and V6, ST-T depression in V1-V3.
    - `IRBBB`: the same terminal r' (smaller, narrower), QRS 104-118 ms.
    - `LAFB`: frontal QRS axis -45..-85 degrees from superior-leftward
      activation after inferior-rightward initial forces (qR in aVL, rS in II,
      III, aVF), QRS < 120 ms; the T axis stays near normal.
    - `LPFB`: frontal QRS axis +100..+170 degrees from inferior-rightward
      activation after superior-leftward initial forces (rS in I and aVL, qR
      in III and aVF), QRS < 120 ms.
    - `IMI`: pathological Q waves (about 40 ms) in II, III, aVF, residual ST
      elevation of 0.05-0.2 mV in III with reciprocal ST depression in aVL;
      the Q forces turn the axis to the left.
    - `ASMI`: initial forces turned away from the dead septum: QS complexes
      in V1-V2 (no septal r), a Q wave in V3, T waves inverted in V1-V3.
    - `LVH`: Sokolow-Lyon voltage (S in V1 + the larger R of V5/V6) of
      3.6-5.0 mV with a strain pattern: ST depression of at least 0.05 mV
      (0.05-0.15 set, deeper where the inverted T starts early) in at least
      two of V4-V6 and T waves opposite the QRS (inverted in V5/V6); QRS 6%
      wider. Voltage alone is not LVH: with the amplitude nuisance, some
      records of other classes reach 3.5 mV without strain.
    - `ISCAL`: ischaemic (subendocardial) ST depression of 0.05-0.15 mV in at
      least two of V4-V6 (the ST vector points to aVR), T waves turned away
      from the lateral leads: flat to inverted in I, aVL, V5, V6.
    - `LNGQT`: QTc (Bazett) 470-540 ms with broad-based, lower T waves.
    - `SBRAD` / `STACH`: sinus rhythm at 40-57 / 103-150 bpm.

    ST levels are read 60 ms after the J point. The ST depression criterion
    (>= 0.05 mV in two of V4-V6) is met only by `ISCAL` and `LVH` records,
    and by `CLBBB` records, where it is the discordant secondary change.

    Nuisance variation in every record: heart rate within the class range,
    respiratory sinus arrhythmia, the frontal QRS axis (a beta-distributed
    -30..+90 degrees outside the fascicular blocks, set by rotating the QRS
    loop while P and T turn part of the way), tilts of the heart (about the
    long axis, sd 20 degrees: the precordial transition zone moves), the QRS
    loop shape, T axis, amplitude and width, QTc, amplitude scale
    (log-normal, 0.45-2.0), precordial electrode gains (sd 12%),
    normal-variant ST elevation in V1-V3 and a respiratory amplitude
    modulation. With `noise=True`, baseline wander (0.02-0.4 mV, up to 1 mV in
    a strong-wander minority of 15%), EMG-like bursty white noise
    (0.002-0.05 mV), electrode-motion artefacts (decaying baseline steps of
    up to 0.8 mV on single electrodes, in a quarter of the records) and 50/60
    Hz powerline interference (0.001-0.02 mV) are added per electrode, so the
    limb-lead identities still hold exactly. Powerline is sampled without an
    anti-aliasing filter, so at 100 Hz it shows as its alias (or a
    Nyquist-rate oscillation for 50 Hz).

    Args:
        num_records: number of records.
        sampling_rate: samples per second.
        duration_s: length of every record in seconds.
        classes: class names to generate, a subset of `DEFAULT_CLASSES`; label
            columns follow this order. Defaults to all of `DEFAULT_CLASSES`.
        noise: whether to add baseline wander, EMG, electrode-motion and
            powerline noise.
        seed: seed of the generator; the same arguments give identical data.

    Returns:
        An `ECGDataset` with `num_records` float32 `(timesteps, 12)` signals in
        mV (views into one array), leads `STANDARD_LEADS`, multi-hot float32
        `labels` over PTB-XL SCP codes (`label_vocabulary="scp"`, with
        `class_descriptions` from `CLASS_DESCRIPTIONS`), `folds` in 1..10
        (stratified by label set), record ids
        `"synthetic_00001"`... and a `metadata` DataFrame with one row per
        record: `record_id`, `labels` (";"-joined), `rhythm`, `heart_rate`,
        `rr_cv`, `pr_ms` (NaN in AFIB), `qrs_ms`, `qt_ms`, `qtc_ms` (Bazett,
        of the repolarisation: QT less the QRS widening beyond 100 ms),
        `qrs_axis_deg` (hexaxial, from the net QRS area in I and II),
        `sokolow_lyon_mv`, `st_lateral_mv` (the ST level reached in two of
        V4-V6), `amplitude_scale`, `width_scale`, `baseline_mv`, `emg_mv`,
        `motion_mv`, `powerline_mv`, `powerline_hz`, `fold`.

    Example:

    ```python
    data = keras_ecg.data.make_synthetic_ecg(num_records=200, seed=1)
    x = data.to_array()  # (200, 1000, 12) float32, mV
    y = data.labels  # (200, 15) multi-hot
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


def _rotations_z(angle_deg):
    """Rotations about Z, i.e. in the frontal (X-Y) plane: `(n, 3, 3)`."""
    angle = np.deg2rad(angle_deg)
    c, s = np.cos(angle), np.sin(angle)
    zeros = np.zeros_like(angle)
    return np.stack(
        [np.stack([c, -s, zeros], -1), np.stack([s, c, zeros], -1), _e(2, len(c))],
        1,
    )


def _tilts(rng, n):
    """Random tilts of the heart about X and Y: `(n, 3, 3)`.

    The turn about the long (Y) axis, clockwise or counterclockwise rotation,
    moves the precordial transition zone (V2..V5 in normal hearts).
    """
    tilt_x = np.deg2rad(rng.normal(0.0, 10.0, n))
    tilt_y = np.deg2rad(np.clip(rng.normal(0.0, 20.0, n), -40.0, 40.0))
    zeros = np.zeros(n)
    cx, sx = np.cos(tilt_x), np.sin(tilt_x)
    rot_x = np.stack(
        [_e(0, n), np.stack([zeros, cx, -sx], -1), np.stack([zeros, sx, cx], -1)], 1
    )
    cy, sy = np.cos(tilt_y), np.sin(tilt_y)
    rot_y = np.stack(
        [np.stack([cy, zeros, sy], -1), _e(1, n), np.stack([-sy, zeros, cy], -1)], 1
    )
    return rot_x @ rot_y


def _e(axis, n):
    basis = np.zeros((n, 3))
    basis[:, axis] = 1.0
    return basis


def frontal_axis(lead_i, lead_ii):
    """Hexaxial frontal-plane angle in degrees from net lead I and II values.

    Lead I lies at 0 degrees and II at +60, so the +90 (aVF) component of the
    frontal vector is `(2 II - I) / sqrt(3)`.
    """
    lead_i, lead_ii = np.asarray(lead_i), np.asarray(lead_ii)
    return np.rad2deg(np.arctan2((2.0 * lead_ii - lead_i) / np.sqrt(3.0), lead_i))


def _wrap_deg(angle):
    return (np.asarray(angle) + 180.0) % 360.0 - 180.0


def _solve_frontal_rotation(vectors, target_deg):
    """Frontal rotations that give `vectors` (`(n, 3)`) the hexaxial `target_deg`.

    Returns the rotations (degrees) and the remaining axis errors: a vector
    turned far out of the frontal plane may not reach every target.

    The hexaxial angle grows monotonically with the rotation, but not at unit
    rate (the Dower limb rows are not orthonormal): a 1-degree grid search,
    then Newton steps with a numerical slope.
    """

    def axis_at(angle):
        # Broadcasts `(n,)` or `(n, k)` angles against the `(n, 3)` vectors.
        angle = np.deg2rad(angle)
        extra = (None,) * (angle.ndim - 1)
        x, y, z = (vectors[(slice(None), i, *extra)] for i in range(3))
        x, y = (
            np.cos(angle) * x - np.sin(angle) * y,
            np.sin(angle) * x + np.cos(angle) * y,
        )
        lead_i, lead_ii = (row[0] * x + row[1] * y + row[2] * z for row in _DOWER[:2])
        return frontal_axis(lead_i, lead_ii)

    grid = np.arange(-180.0, 180.0, 1.0)[None, :]
    error = np.abs(_wrap_deg(axis_at(grid) - target_deg[:, None]))
    angle = grid[0, np.argmin(error, axis=1)]
    for _ in range(4):
        slope = _wrap_deg(axis_at(angle + 0.5) - axis_at(angle - 0.5))
        step = _wrap_deg(target_deg - axis_at(angle)) / np.maximum(slope, 0.05)
        angle = angle + np.clip(step, -2.0, 2.0)
    return angle, np.abs(_wrap_deg(target_deg - axis_at(angle)))


def _perturbed(rng, direction, n, scale):
    """`direction` with bounded per-record deviations (individual loop shapes)."""
    vectors = direction + scale * rng.uniform(-1.0, 1.0, (n, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _beat_leads(waves, t, amplitude, v_gain, names=_WAVES):
    """Noise-free single-beat I, II, V1..V6 `(n, m, 8)` at beat-relative `t`."""
    dipole = 0.0
    for name in names:
        w = waves[name]
        x = t - w["mu"][:, None]
        sigma = np.where(x < 0, w["sl"][:, None], w["sr"][:, None])
        shape = w["amp"][:, None] * np.exp(-0.5 * np.square(x / sigma))
        dipole = dipole + shape[..., None] * w["dir"][:, None, :]
    return _project(dipole * amplitude[:, None, None], v_gain)


def _lead_matrices(v_gain):
    """Per-record `(n, 8, 3)` Dower matrices with the precordial gains."""
    return np.concatenate(
        [
            np.broadcast_to(_DOWER[:2], (len(v_gain), 2, 3)),
            _DOWER[None, 2:] * v_gain[:, :, None],
        ],
        axis=1,
    )


def _project(dipole, v_gain):
    return np.einsum("nmk,nlk->nml", dipole, _lead_matrices(v_gain))


def _second_lowest(values):
    """The level reached in at least two of the columns: 2nd smallest."""
    return np.sort(values, axis=-1)[..., 1]


def _sample_parameters(rng, label_sets, duration_s):
    n = len(label_sets)
    has = {c: np.array([c in s for s in label_sets]) for c in DEFAULT_CLASSES}
    afib, lbbb, rbbb, irbbb = has["AFIB"], has["CLBBB"], has["CRBBB"], has["IRBBB"]
    imi, lafb, lvh, iscal = has["IMI"], has["LAFB"], has["LVH"], has["ISCAL"]
    lpfb, asmi = has["LPFB"], has["ASMI"]
    infarct = imi | asmi  # classes with pathological (anatomical) Q waves
    sinus = ~afib

    # Heart rate and RR series.
    heart_rate = rng.uniform(62.0, 98.0, n)
    # Rate classes sit near their thresholds, as most do in clinical data.
    heart_rate = np.where(has["SBRAD"], rng.uniform(45.0, 58.0, n), heart_rate)
    heart_rate = np.where(has["STACH"], rng.uniform(102.0, 135.0, n), heart_rate)
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

    width = rng.uniform(0.86, 1.15, n) * np.where(lvh, 1.06, 1.0)
    amplitude = np.clip(rng.lognormal(0.0, 0.3, n), 0.45, 2.0)
    v_gain = np.clip(1.0 + rng.normal(0.0, 0.12, (n, 6)), 0.7, 1.3)

    def pick(mask, a, b):
        # Per-record choice between two (broadcastable to (n, 3)) directions.
        return np.where(mask[:, None], a, b)

    # QRS: initial q, R, optional terminal R2 (LBBB notch, RBBB R', IRBBB r'),
    # S. Directions are in the heart's frame; the loop shape varies per record.
    q_sigma = np.where(infarct, 0.0105, 0.008) * width
    q_mu = np.where(infarct, -0.024, -0.022) * width
    q_amp = np.where(infarct, rng.uniform(0.3, 0.55, n), rng.uniform(0.06, 0.2, n))
    q_amp = np.where(lbbb, 0.0, q_amp)  # reversed septal activation: no q in V6
    intact_q = pick(lafb, _DIR_LAFB_Q, pick(lpfb, _DIR_LPFB_Q, _DIR_SEPTAL_Q))
    q_dir = pick(imi, _DIR_INFERIOR_Q, pick(asmi, _DIR_ANTEROSEPTAL_Q, intact_q))
    r_mu = np.where(lbbb, -0.025, 0.0) * width
    r_sigma = np.where(lbbb, 0.02, 0.0105) * width
    r_amp = rng.uniform(0.9, 1.7, n)
    r_dir = pick(lvh, _DIR_LVH_R, _DIR_R)
    r_dir = pick(lafb, _DIR_LAFB_R, pick(lpfb, _DIR_LPFB_R, r_dir))
    r_dir = pick(lbbb, _DIR_LBBB_R, _perturbed(rng, r_dir, n, 0.25))
    s_mu, s_sigma = 0.024 * width, 0.009 * width
    s_amp = np.where(lbbb, 0.0, r_amp * rng.uniform(0.15, 0.4, n))
    s_dir = _perturbed(rng, _DIR_S, n, 0.25)
    qrs_on = np.where(lbbb, r_mu - 2.5 * r_sigma, q_mu - 2.5 * q_sigma)

    # Right bundle branch delay: the terminal wave ends the QRS at a set
    # duration (complete: 122-160 ms, incomplete: 104-118 ms).
    rbbb_qrs = np.where(rbbb, rng.uniform(0.122, 0.16, n), rng.uniform(0.104, 0.118, n))
    rbbb_sigma = np.where(
        rbbb, rng.uniform(0.015, 0.019, n), rng.uniform(0.009, 0.011, n)
    )
    r2_mu = np.where(lbbb, 0.02 * width, qrs_on + rbbb_qrs - 2.5 * rbbb_sigma)
    r2_sigma = np.where(lbbb, 0.022 * width, rbbb_sigma)
    r2_amp = np.where(rbbb, rng.uniform(0.6, 0.9, n), rng.uniform(0.3, 0.55, n))
    r2_amp = np.where(lbbb, r_amp * rng.uniform(0.8, 1.0, n), r2_amp)
    r2_amp = np.where(lbbb | rbbb | irbbb, r2_amp, 0.0)
    r2_dir = pick(lbbb, _DIR_LBBB_R, _DIR_RBBB_TERMINAL)
    qrs_off = np.where(
        lbbb | rbbb | irbbb,
        np.maximum(r2_mu + 2.5 * r2_sigma, s_mu + 2.5 * s_sigma * (~lbbb)),
        s_mu + 2.5 * s_sigma,
    )
    qrs = qrs_off - qrs_on

    # P wave placed from the PR interval (P onset to QRS onset).
    pr = np.where(has["1AVB"], rng.uniform(0.206, 0.28, n), rng.uniform(0.12, 0.196, n))
    p_sigma = np.minimum(rng.uniform(0.016, 0.024, n), (pr - 0.012) / 5.0)
    p_mu = qrs_on - pr + 2.5 * p_sigma
    p_amp = np.where(sinus, rng.uniform(0.08, 0.25, n), 0.0)

    # T wave from a Bazett-corrected QT (QRS onset to T end); a wide QRS
    # delays repolarisation by its widening.
    long_qt = has["LNGQT"]
    qtc = np.where(long_qt, rng.uniform(0.47, 0.54, n), rng.uniform(0.37, 0.44, n))
    qt = qtc * np.sqrt(mean_rr) + np.maximum(qrs - 0.1, 0.0)
    t_scale = np.sqrt(mean_rr) * rng.uniform(0.85, 1.15, n)
    # Long-QT T waves are broad-based and low.
    t_scale *= np.where(long_qt, rng.uniform(1.1, 1.4, n), 1.0)
    t_sl, t_sr = 0.055 * t_scale, 0.035 * t_scale
    t_mu = qrs_on + qt - 2.5 * t_sr
    t_amp = rng.uniform(0.15, 0.5, n)
    t_amp = np.where(lbbb, rng.uniform(0.35, 0.5, n), t_amp)
    t_amp = np.where(lvh, rng.uniform(0.15, 0.35, n), t_amp)
    t_amp = np.where(iscal, t_amp * rng.uniform(0.5, 1.0, n), t_amp)
    t_amp = np.where(long_qt, t_amp * rng.uniform(0.6, 0.9, n), t_amp)
    # Ischaemic T waves: turned away from the lateral leads, flat to inverted
    # in I, aVL, V5, V6.
    t_ischaemic = _DIR_T - rng.uniform(0.7, 1.3, n)[:, None] * _DIR_LATERAL
    t_typical = np.where(asmi[:, None], _DIR_ASMI_T, _DIR_T)
    t_primary = _perturbed(
        rng, np.where(iscal[:, None], t_ischaemic, t_typical), n, 0.25
    )

    # ST segment: one J-anchored wave whose vector sums the changes.
    st_mu = qrs_off + 0.04
    st_sl = np.full(n, 0.025)
    st_sr = np.maximum(0.03, 0.45 * (t_mu - st_mu))

    # Orientation. The frontal QRS axis is drawn per record and reached by
    # rotating the QRS loop (after small tilts of the whole heart); P and the
    # anatomical ST vectors turn half of that rotation (heart position),
    # primary T waves three quarters, secondary ST-T (BBB, strain) all of it.
    # The axis is that of the unblocked, living loop: a right bundle branch
    # block's terminal forces are left out (readers take its axis from the
    # initial forces), and the infarct's Q waves are anatomical (they turn
    # with the heart) and shift the IMI axis to the left of the drawn value.
    area = sum(
        (amp * sigma)[:, None] * direction
        for amp, sigma, direction in (
            (np.where(infarct, 0.0, q_amp), q_sigma, intact_q),
            (r_amp, r_sigma, r_dir),
            (np.where(lbbb, r2_amp, 0.0), r2_sigma, r2_dir),
            (s_amp, s_sigma, s_dir),
        )
    )
    tilt = _tilts(rng, n)
    low, high = NORMAL_AXIS_DEG
    target_axis = low + (high - low) * rng.beta(2.2, 2.0, n)
    target_axis = np.where(lafb, rng.uniform(*LAFB_AXIS_DEG, n), target_axis)
    target_axis = np.where(lpfb, rng.uniform(*LPFB_AXIS_DEG, n), target_axis)
    qrs_turn, error = _solve_frontal_rotation(
        np.einsum("nij,nj->ni", tilt, area), target_axis
    )
    # A loop tilted too far out of the frontal plane to reach its axis is
    # left untilted (it always reaches it then).
    missed = error > 0.5
    if np.any(missed):
        tilt[missed] = np.eye(3)
        qrs_turn[missed] = _solve_frontal_rotation(area[missed], target_axis[missed])[0]
    heart_turn = np.clip(0.5 * qrs_turn, -40.0, 40.0) + rng.uniform(-10.0, 10.0, n)
    rot_qrs = _rotations_z(qrs_turn) @ tilt
    rot_heart = _rotations_z(heart_turn) @ tilt
    rot_t = _rotations_z(heart_turn + 0.5 * (qrs_turn - heart_turn)) @ tilt

    def turn(rotation, direction):
        return np.einsum("nij,nj->ni", rotation, np.broadcast_to(direction, (n, 3)))

    r_dir_rotated = turn(rot_qrs, r_dir)
    t_dir = np.where(lbbb[:, None], turn(rot_qrs, -_DIR_LBBB_R), turn(rot_t, t_primary))
    t_dir = np.where(lvh[:, None], -r_dir_rotated, t_dir)  # strain: opposite QRS

    st_vec = np.zeros((n, 3))
    st_vec += (lbbb * rng.uniform(0.1, 0.2, n))[:, None] * turn(rot_qrs, -_DIR_LBBB_R)
    st_vec += (rbbb * rng.uniform(0.05, 0.15, n))[:, None] * turn(
        rot_heart, _DIR_RBBB_ST
    )
    early = rng.uniform(0.0, 0.08, n) * (rng.random(n) < 0.6)
    st_vec += early[:, None] * turn(rot_heart, _DIR_EARLY_REPOL)

    def wave(mu, sigma_left, sigma_right, amp, direction):
        return {
            "mu": np.broadcast_to(mu, (n,)).astype(np.float64),
            "sl": np.broadcast_to(sigma_left, (n,)).astype(np.float64),
            "sr": np.broadcast_to(sigma_right, (n,)).astype(np.float64),
            "amp": np.broadcast_to(amp, (n,)).astype(np.float64),
            "dir": np.broadcast_to(direction, (n, 3)).astype(np.float64),
        }

    waves = {
        "P": wave(p_mu, p_sigma, p_sigma, p_amp, turn(rot_heart, _DIR_P)),
        "Q": wave(
            q_mu,
            q_sigma,
            q_sigma,
            q_amp,
            np.where(infarct[:, None], turn(rot_heart, q_dir), turn(rot_qrs, q_dir)),
        ),
        "R": wave(r_mu, r_sigma, r_sigma, r_amp, r_dir_rotated),
        "R2": wave(r2_mu, r2_sigma, r2_sigma, r2_amp, turn(rot_qrs, r2_dir)),
        "S": wave(s_mu, s_sigma, s_sigma, s_amp, turn(rot_qrs, s_dir)),
        "ST": None,
        "T": wave(t_mu, t_sl, t_sr, t_amp, t_dir),
    }

    # LVH voltage: scale the QRS so that Sokolow-Lyon reaches its target.
    qrs_t = qrs_on[:, None] + np.linspace(0.0, 1.0, 161)[None, :] * qrs[:, None]
    qrs_leads = _beat_leads(waves, qrs_t, amplitude, v_gain, _QRS_WAVES)
    voltage = -qrs_leads[..., _V1].min(1) + np.maximum(
        qrs_leads[..., _V5].max(1), qrs_leads[..., _V6].max(1)
    )
    gain = np.where(lvh, rng.uniform(3.6, 5.0, n) / voltage, 1.0)
    for name in _QRS_WAVES:
        waves[name]["amp"] = waves[name]["amp"] * gain

    # ST changes calibrated on the template beat, 60 ms after the J point:
    # IMI elevation in III; ISCAL and LVH-strain depression in two of V4-V6.
    j60 = (qrs_off + ST_POINT_S)[:, None]
    st_shape = np.exp(-0.5 * np.square((j60[:, 0] - st_mu) / st_sr))
    per_mv = st_shape * amplitude  # dipole mV -> lead mV at J+60, per unit
    inferior = turn(rot_heart, _DIR_INFERIOR_STE)
    elevation = imi * rng.uniform(0.05, 0.2, n)
    in_iii = per_mv * np.einsum("nk,k->n", inferior, _III_ROW)
    st_vec += (elevation / np.maximum(in_iii, 0.1 * per_mv))[:, None] * inferior
    waves["ST"] = wave(st_mu, st_sl, st_sr, 1.0, st_vec)
    base = _beat_leads(waves, j60, amplitude, v_gain)[:, 0, _V4 : _V6 + 1]
    depression = rng.uniform(0.05, 0.15, n)
    leads = _lead_matrices(v_gain)[:, _V4 : _V6 + 1]

    def amount_for(direction):
        # Amount of `direction` at which the second lead reaches the target.
        unit = per_mv[:, None] * np.einsum("nlk,nk->nl", leads, direction)
        needed = (-depression[:, None] - base) / np.minimum(unit, -1e-9)
        return np.maximum(_second_lowest(np.where(unit < 0, needed, np.inf)), 0.0)

    # Strain opposes the dominant QRS forces; where they do not point into
    # V4-V6 (a rare loop), the subendocardial direction stands in.
    subendocardial = turn(rot_heart, _DIR_SUBENDOCARDIAL)
    strain_amount = amount_for(-r_dir_rotated)
    use_strain = lvh & np.isfinite(strain_amount)
    lateral = np.where(use_strain[:, None], -r_dir_rotated, subendocardial)
    amount = np.where(use_strain, strain_amount, amount_for(subendocardial))
    st_vec += np.where(lvh | iscal, amount, 0.0)[:, None] * lateral
    # Other records keep the criterion unmet: where an injury's reciprocal
    # change or an unusual loop would reach it, the ST vector is shrunk.
    waves["ST"] = wave(st_mu, st_sl, st_sr, 1.0, st_vec)
    shrink = ~(lvh | iscal | lbbb) & (
        _second_lowest(_beat_leads(waves, j60, amplitude, v_gain)[:, 0, _V4 : _V6 + 1])
        < -0.8 * ST_DEPRESSION_MV
    )
    if np.any(shrink):
        st_only = _beat_leads(waves, j60, amplitude, v_gain, ("ST",))[
            :, 0, _V4 : _V6 + 1
        ]
        low, high = np.zeros(n), np.ones(n)
        for _ in range(20):
            middle = 0.5 * (low + high)
            level = _second_lowest(base - st_only + middle[:, None] * st_only)
            ok = level >= -0.8 * ST_DEPRESSION_MV
            low, high = np.where(ok, middle, low), np.where(ok, high, middle)
        st_vec *= np.where(shrink, low, 1.0)[:, None]
    norm = np.linalg.norm(st_vec, axis=1)
    waves["ST"] = wave(
        st_mu, st_sl, st_sr, norm, st_vec / np.maximum(norm, 1e-12)[:, None]
    )

    # Measurements on the final template beat.
    qrs_leads = _beat_leads(waves, qrs_t, amplitude, v_gain)
    sokolow_lyon = -qrs_leads[..., _V1].min(1) + np.maximum(
        qrs_leads[..., _V5].max(1), qrs_leads[..., _V6].max(1)
    )
    st_lateral = _second_lowest(
        _beat_leads(waves, j60, amplitude, v_gain)[:, 0, _V4 : _V6 + 1]
    )
    net = sum(
        (waves[w]["amp"] * waves[w]["sl"] * np.where(w == "R2", lbbb, 1.0))[:, None]
        * waves[w]["dir"]
        for w in _QRS_WAVES
    )
    axis = frontal_axis(net @ _DOWER[_I], net @ _DOWER[_II])

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
        "v_gain": v_gain,
        "resp_hz": resp_hz,
        "resp_phase": resp_phase,
        "resp_mod": rng.uniform(0.0, 0.08, n),
        "afib": afib,
        "f_hz": rng.uniform(4.0, 9.0, n),
        "f_amp": np.where(afib, rng.uniform(0.05, 0.15, n), 0.0),
        "f_phase": rng.uniform(0.0, 2 * np.pi, (n, 3)),
        "f_dir": turn(rot_heart, _DIR_ATRIAL_F),
        "heart_rate": 60.0 / measured_rr,
        "rr_cv": rr_cv,
        "pr_ms": np.where(sinus, pr * 1000.0, np.nan),
        "qrs_ms": qrs * 1000.0,
        "qt_ms": qt * 1000.0,
        "qtc_ms": qtc * 1000.0,
        "qrs_axis_deg": axis,
        "sokolow_lyon_mv": sokolow_lyon,
        "st_lateral_mv": st_lateral,
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
    lead_matrix = _lead_matrices(params["v_gain"][rows]).astype(np.float32)
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
        # A minority of records (loose electrodes, a moving patient) wander
        # strongly.
        "baseline_mv": np.where(
            rng.random(n) < 0.15, log_uniform(0.4, 1.0), log_uniform(0.02, 0.4)
        ),
        "emg_mv": log_uniform(0.002, 0.05),
        "motion_mv": np.where(rng.random(n) < 0.25, log_uniform(0.1, 0.8), 0.0),
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

    # Electrode motion: up to three baseline steps, each on one electrode,
    # that decay as the electrode-skin interface recharges.
    for _ in range(3):
        present = rng.random(n) < 0.6
        onset = rng.uniform(0.0, time[-1] + 1e-9, n)
        decay = rng.uniform(0.2, 1.0, n)
        height = levels["motion_mv"][rows] * rng.uniform(-1.0, 1.0, n) * present
        electrode = rng.integers(num_electrodes, size=n)
        since = time[None, :] - onset[:, None]
        step = np.where(since >= 0, np.exp(-np.maximum(since, 0) / decay[:, None]), 0)
        noise[np.arange(n), electrode] += (height[:, None] * step).astype(np.float32)

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
            "qtc_ms": params["qtc_ms"],
            "qrs_axis_deg": params["qrs_axis_deg"],
            "sokolow_lyon_mv": params["sokolow_lyon_mv"],
            "st_lateral_mv": params["st_lateral_mv"],
            "amplitude_scale": params["amplitude"],
            "width_scale": params["width"],
            "baseline_mv": levels["baseline_mv"],
            "emg_mv": levels["emg_mv"],
            "motion_mv": levels["motion_mv"],
            "powerline_mv": levels["powerline_mv"],
            "powerline_hz": levels["powerline_hz"],
            "fold": folds,
        }
    )
