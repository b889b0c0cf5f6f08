"""Toy records and a tiny backbone shared by the windowed-prediction and
downstream tests: label k of a record is 1 when lead k's mean is positive."""

import keras
import numpy as np

from keras_ecg.data.ecg_dataset import ECGDataset

LEADS = 3


def toy_dataset(num_records=16, lengths=(100,), seed=0):
    """Records whose label k is 1 when lead k's mean is positive."""
    rng = np.random.default_rng(seed)
    signals, labels = [], []
    for i in range(num_records):
        offset = rng.choice([-1.0, 1.0], size=LEADS) * rng.uniform(0.5, 1.5, LEADS)
        length = lengths[i % len(lengths)]
        signal = offset + 0.3 * rng.normal(size=(length, LEADS))
        signals.append(signal.astype("float32"))
        labels.append((offset > 0).astype("float32")[:2])
    return ECGDataset(
        signals=signals,
        record_ids=[f"r{i}" for i in range(num_records)],
        sampling_rate=100,
        lead_names=("I", "II", "III"),
        labels=np.stack(labels),
        classes=["A", "B"],
    )


def toy_backbone(name="backbone"):
    """Conv -> BatchNorm -> global average pooling over any length."""
    inputs = keras.Input((None, LEADS))
    x = keras.layers.Conv1D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inputs, x, name=name)
