"""Tests of the online probe: its records, its AUC, and the weights it keeps."""

import dataclasses
import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from keras_ecg import distribute
from keras_ecg import online_probe
from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.evaluation.linear_probe import extract_embeddings
from keras_ecg.evaluation.linear_probe import knn_probe
from keras_ecg.evaluation.linear_probe import logistic_probe
from keras_ecg.online_probe import OnlineProbe
from keras_ecg.online_probe import ProbeUnavailable
from keras_ecg.online_probe import probe_split


@pytest.fixture(scope="module")
def records():
    return make_synthetic_ecg(num_records=48, seed=3)


@pytest.mark.backend_agnostic
def test_probe_split_is_seeded_sized_and_patient_disjoint(records):
    # Two records per patient, as PTB-XL has several per patient.
    data = records.subset(np.arange(40))
    data.metadata = pd.DataFrame({"patient_id": np.arange(40) // 2})
    train, val = probe_split(data, num_records=24, val_fraction=0.5, seed=1)
    assert len(train) + len(val) == 24 and len(val) == 12
    patients = data.metadata.set_index(pd.Index(data.record_ids))["patient_id"]
    assert not set(patients[train.record_ids]) & set(patients[val.record_ids])
    again = probe_split(data, num_records=24, val_fraction=0.5, seed=1)
    assert again[1].record_ids == val.record_ids
    other = probe_split(data, num_records=24, val_fraction=0.5, seed=2)
    assert other[1].record_ids != val.record_ids


@pytest.mark.backend_agnostic
def test_probe_split_says_why_there_is_no_probe(records):
    unlabelled = dataclasses.replace(
        records.subset(range(10)), labels=None, classes=[], class_descriptions=None
    )
    with pytest.raises(ProbeUnavailable, match="no labels"):
        probe_split(unlabelled)
    with pytest.raises(ProbeUnavailable, match="at least 4"):
        probe_split(records.subset(range(6)))
    assert online_probe.resolve_every("auto", 20) == 4
    assert online_probe.resolve_every("auto", 3) == 1
    with pytest.raises(ValueError):
        online_probe.resolve_every(0, 10)


def _model():
    """A model with a `backbone`, as the pretraining methods have: a small one,
    quick to compile under JAX."""
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(
        [
            keras.Input((None, 12)),
            keras.layers.Conv1D(8, 9, strides=4, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
        ]
    )
    model = keras.Sequential([backbone, keras.layers.Dense(4)])
    model.backbone = backbone
    return model


@pytest.mark.parametrize(
    "kind",
    [
        "knn",
        # scikit-learn on the same embeddings: one backend is enough.
        pytest.param(
            "logistic",
            marks=pytest.mark.skipif(
                keras.backend.backend() != "tensorflow",
                reason="the logistic probe runs in the tensorflow pass",
            ),
        ),
    ],
)
def test_logged_auc_is_the_probe_on_the_encoder_embeddings(records, kind):
    # Logistic regression (one per class) is the slower probe: fewer records.
    count = 48 if kind == "knn" else 24
    train, val = probe_split(records, num_records=count, seed=0)
    model = _model()
    probe = OnlineProbe(train, val, every=2, probe=kind, epochs=5)
    probe.set_model(model)
    logs = {}
    probe.on_epoch_end(0, logs)  # epoch 1: not due
    assert logs == {}
    probe.on_epoch_end(1, logs)
    # The same records and windows embedded by hand (one batch shape: JAX
    # compiles nothing new), the probe called directly.
    both = extract_embeddings(
        model.backbone, probe._records, window_seconds=2.5, stride_seconds=7.5
    )
    args = (both[: len(train)], train.labels, both[len(train) :], val.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes absent from the few records
        expected = (knn_probe if kind == "knn" else logistic_probe)(*args)
    assert logs["probe_macro_auc"] == pytest.approx(expected["macro_auc"], abs=1e-6)
    assert 0.0 <= logs["probe_macro_auc"] <= 1.0
    assert probe.epochs == [2] and len(probe.seconds) == 1
    assert probe.get_config()["probe"] == kind
    if kind == "knn":
        probe.on_epoch_end(2, {})
        probe.on_epoch_end(4, {})  # the last epoch is always probed
        assert probe.epochs == [2, 5]


def test_best_probe_weights_are_kept_and_survive_a_restart(records, tmp_path):
    train, val = probe_split(records, num_records=24, seed=0)
    model = _model()
    path = str(tmp_path / "backup" / "best_probe.npz")
    probe = OnlineProbe(train, val, every=1, best_weights_path=path, epochs=3)
    probe.set_model(model)
    aucs = iter([0.6, 0.8, 0.7])
    probe._measure = lambda: next(aucs)
    kept = None
    for epoch in range(3):
        # Each epoch changes the weights; epoch 2 has the best probe.
        model.set_weights([w + 1.0 for w in model.get_weights()])
        if epoch == 1:
            kept = [np.array(w) for w in model.get_weights()]
        probe.on_epoch_end(epoch, {})
    # A resumed run (new callback, same file) still knows the best epoch.
    again = OnlineProbe(train, val, best_weights_path=path)
    again.on_train_begin()
    assert (again.best_epoch, again.best_auc) == (2, 0.8)
    assert probe.restore_best(model) == 2
    for actual, expected in zip(model.get_weights(), kept, strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_only_the_chief_probes(records, monkeypatch):
    train, val = probe_split(records, num_records=24, seed=0)
    probe = OnlineProbe(train, val, every=1)
    probe.set_model(_model())
    monkeypatch.setattr(distribute, "is_chief", lambda: False)
    logs = {}
    probe.on_epoch_end(0, logs)
    assert logs == {} and probe.epochs == []
