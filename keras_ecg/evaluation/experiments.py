"""The paper's two follow-up experiments: label efficiency and noise robustness."""

import dataclasses

import numpy as np

from keras_ecg.data.splits import nested_fraction_indices
from keras_ecg.evaluation.downstream import evaluate_records


def label_fraction_subset(data, fraction, seed=0):
    """A random subset holding `fraction` of the records (at least one).

    Records, not windows, are sampled, so a record's windows never straddle the
    kept and dropped parts; and where the data carries patient ids (PTB-XL's
    `patient_id`), whole patients are: a patient's records are all kept or
    all dropped (`keras_ecg.data.splits.nested_fraction_indices`), so the
    subset may hold a few records more than its share. The same `seed` and a
    larger fraction give a superset of a smaller fraction's records (nested
    subsets), as in the paper's label-efficiency curves.

    Args:
        data: an `ECGDataset`.
        fraction: in `(0, 1]`.
        seed: seeds the order of the records (of the patients).

    Example:

    ```python
    subset = label_fraction_subset(train, 0.1, seed=0)  # 10% of the records
    ```
    """
    return data.subset(nested_fraction_indices(data, fraction, seed=seed))


def add_physiological_noise(data, level, seed=0, batch_size=256):
    """Returns a copy of `data` corrupted by the robustness noise of `level`.

    The noise is the paper's physiological noise stack (baseline wander,
    powerline, electrode motion, baseline shift; see
    `keras_ecg.layers.augmentation.presets.physiological_noise`) applied to
    the signals in mV, before any standardisation.

    Args:
        data: an `ECGDataset` in mV.
        level: noise level 1..6.
        seed: seeds the noise, so every model sees the same corrupted records.
        batch_size: records corrupted per call.
    """
    import keras

    from keras_ecg.layers.augmentation.presets import physiological_noise

    noise = physiological_noise(level, sampling_rate=data.sampling_rate, seed=seed)
    noisy = [None] * len(data)
    by_length = {}
    for index, signal in enumerate(data.signals):
        by_length.setdefault(len(signal), []).append(index)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = np.stack([np.asarray(data.signals[i]) for i in chunk])
            out = keras.ops.convert_to_numpy(noise(batch.astype("float32")))
            for i, signal in zip(chunk, out):
                noisy[i] = signal
    return dataclasses.replace(data, signals=noisy)


def robustness_table(
    model, raw_test, standardizer=None, levels=(1, 2, 3, 4, 5, 6), seed=0, **kwargs
):
    """Macro AUC of `model` on clean and noise-corrupted test records.

    Args:
        model: a trained classifier (logits).
        raw_test: the labelled test `ECGDataset` in mV (not standardised).
        standardizer: the `LeadStandardizer` the model was trained with, applied
            after the noise; `None` if the model was trained on raw mV.
        levels: noise levels to test.
        seed: seeds the noise.
        **kwargs: forwarded to `evaluate_records` (window length, stride).

    Returns:
        A list of `{"noise_level": level, "macro_auc": auc}` rows, level 0 = clean.
    """

    def _score(data):
        # Standardised window by window in the pipeline, not as a copy.
        return evaluate_records(model, data, standardizer=standardizer, **kwargs)[
            "macro_auc"
        ]

    rows = [{"noise_level": 0, "macro_auc": _score(raw_test)}]
    for level in levels:
        noisy = add_physiological_noise(raw_test, level, seed=seed)
        rows.append({"noise_level": level, "macro_auc": _score(noisy)})
    return rows
