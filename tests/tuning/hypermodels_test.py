import os

import keras
import keras_tuner as kt
import numpy as np
import pytest

from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.tuning import SSLHyperModel
from keras_ecg.tuning import build_augmentation
from keras_ecg.tuning import run_search


@pytest.fixture(scope="module")
def splits():
    data = make_synthetic_ecg(
        120, duration_s=2.5, classes=["NORM", "AFIB", "CLBBB"], seed=0
    )
    return data.subset(list(range(90))), data.subset(list(range(90, 120)))


def test_build_uses_hp_architecture(splits):
    train, val = splits
    hp = kt.HyperParameters()
    hp.Fixed("encoder_width", 16)
    hp.Fixed("projection_dim", 8)
    hp.Fixed("temperature", 0.25)
    model = SSLHyperModel("simclr", train, val, size="tiny").build(hp)
    assert model.built and model.temperature == 0.25
    # Tiny base widths (16, 16) rescaled to width 16; concat pooling doubles it.
    assert model.encoder.widths == (16, 16)
    assert model.projection_head.output_dim == 8
    x = np.zeros((2, 62, 12), "float32")
    assert model.backbone(x).shape == (2, 32)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_jepa_build_uses_hp_architecture(splits):
    train, val = splits
    hp = kt.HyperParameters()
    hp.Fixed("encoder_width", 8)
    hp.Fixed("num_layers", 1)
    hp.Fixed("crop_seconds", 2.5)
    hp.Fixed("min_keep_ratio", 0.2)
    model = SSLHyperModel("jepa", train, val, size="tiny").build(hp)
    assert model.built
    assert (model.encoder.hidden_dim, model.encoder.num_layers) == (8, 1)
    assert model.predictor.hidden_dim == 4  # half the encoder, as the reference
    assert (model.min_keep_ratio, model.max_keep_ratio) == pytest.approx((0.2, 0.3))
    assert model.backbone(np.zeros((2, 250, 12), "float32")).shape == (2, 8)


def test_jepa_s4_build_uses_hp_architecture(splits):
    from keras_ecg.models.encoders import S4TokenEncoder

    train, val = splits
    hp = kt.HyperParameters()
    hp.Fixed("s4_d_model", 8)
    hp.Fixed("s4_num_layers", 2)
    hp.Fixed("s4_d_state", 4)
    hp.Fixed("crop_seconds", 2.5)
    model = SSLHyperModel("jepa", train, val, size="tiny", encoder="s4").build(hp)
    assert isinstance(model.encoder, S4TokenEncoder) and model.built
    encoder = model.encoder
    assert (encoder.d_model, encoder.num_layers, encoder.d_state) == (8, 2, 4)
    assert encoder.dropout == 0.0 and encoder.bidirectional
    assert model.predictor.hidden_dim == 4  # half the encoder
    assert model.backbone(np.zeros((2, 250, 12), "float32")).shape == (2, 8)


def test_build_augmentation_strengths():
    augment = build_augmentation(0.7, 0.3, seed=1)
    rrc, timeout = augment.layers
    assert rrc.crop_ratio_range == (0.7, 1.0)
    assert timeout.crop_ratio_range == (0.15, 0.3)


def test_hypermodel_requires_labels(splits):
    train, val = splits
    unlabelled = train.subset(list(range(10)))
    unlabelled.labels = None
    with pytest.raises(ValueError, match="val_data must be a labelled"):
        SSLHyperModel("simclr", train, unlabelled)
    with pytest.raises(ValueError, match="probe"):
        SSLHyperModel("simclr", train, val, probe="svm")


def test_random_search_saves_a_reloadable_best_model(splits, tmp_path):
    train, val = splits
    result = run_search(
        "simclr",
        train,
        val,
        tuner="random",
        max_trials=1,
        epochs=1,
        directory=str(tmp_path),
        seed=1,
        size="tiny",
        batch_size=32,
    )
    assert result["objective"] == "probe_auc" and result["num_trials"] == 1
    assert 0.0 <= result["best_score"] <= 1.0
    assert {"learning_rate", "temperature", "crop_seconds"} <= set(
        result["best_hyperparameters"]
    )
    assert os.path.exists(result["best_model_path"])
    model = keras.saving.load_model(result["best_model_path"])
    # The reloaded weights reproduce the trial's probe score exactly.
    hp = kt.HyperParameters()
    hp.values.update(result["best_hyperparameters"])
    hypermodel = SSLHyperModel("simclr", train, val, size="tiny")
    crop = result["best_hyperparameters"]["crop_seconds"]
    assert hypermodel.probe_score(model, crop) == pytest.approx(
        result["best_score"], abs=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("tuner", ["bayesian", "hyperband"])
def test_bayesian_and_hyperband_searches(splits, tmp_path, tuner):
    train, val = splits
    result = run_search(
        "cpc",
        train,
        val,
        tuner=tuner,
        max_trials=2,
        epochs=2,
        directory=str(tmp_path),
        size="tiny",
        batch_size=32,
        probe="knn",
    )
    assert result["num_trials"] >= 1 and 0.0 <= result["best_score"] <= 1.0
    model = keras.saving.load_model(result["best_model_path"])
    hypermodel = SSLHyperModel("cpc", train, val, size="tiny", probe="knn")
    crop = result["best_hyperparameters"]["crop_seconds"]
    assert hypermodel.probe_score(model, crop) == pytest.approx(
        result["best_score"], abs=1e-6
    )


def test_standardizer_is_applied_in_the_pipelines_not_as_copies(splits, monkeypatch):
    from keras_ecg.data.lead_standardizer import LeadStandardizer

    train, val = splits
    # Far from unit scale, so that the standardisation matters.
    scale = np.linspace(0.05, 40.0, 12).astype("float32")
    shift = np.linspace(-5.0, 30.0, 12).astype("float32")
    raw_train, raw_val = (
        d.subset(list(range(len(d)))) for d in (train, val)
    )  # fresh datasets sharing nothing mutable with the fixture
    for d in (raw_train, raw_val):
        d.signals = [np.asarray(s) * scale + shift for s in d.signals]
    standardizer = LeadStandardizer().fit(raw_train)
    copies = standardizer.transform(raw_train), standardizer.transform(raw_val)
    hp = kt.HyperParameters()
    copied = SSLHyperModel("simclr", *copies, size="tiny", probe="knn")
    model = copied.build(hp)
    crop = 2.5
    expected = copied.probe_score(model, crop)
    monkeypatch.setattr(
        LeadStandardizer, "transform", lambda *a: pytest.fail("standardised copy")
    )
    on_the_fly = SSLHyperModel(
        "simclr",
        raw_train,
        raw_val,
        size="tiny",
        probe="knn",
        standardizer=standardizer,
    )
    assert on_the_fly.probe_score(model, crop) == pytest.approx(expected, abs=1e-6)
    unstandardised = SSLHyperModel(
        "simclr", raw_train, raw_val, size="tiny", probe="knn"
    )
    assert unstandardised.probe_score(model, crop) != pytest.approx(expected, abs=1e-6)
    # Pretraining through `fit` reads the raw records with the standardizer.
    result = on_the_fly.fit(hp, model, epochs=1)
    assert np.isfinite(result["loss"])


@pytest.mark.parametrize("method", ["byol", "cpc"])
def test_build_uses_hp_s4_architecture(splits, method):
    from keras_ecg.models.encoders import S4Encoder

    train, val = splits
    hp = kt.HyperParameters()
    hp.Fixed("s4_d_model", 8)
    hp.Fixed("s4_num_layers", 2)
    hp.Fixed("s4_d_state", 4)
    hp.Fixed("s4_dropout", 0.1)
    model = SSLHyperModel(method, train, val, size="tiny", encoder="s4").build(hp)
    s4 = model.context if method == "cpc" else model.encoder
    assert isinstance(s4, S4Encoder)
    assert (s4.d_model, s4.num_layers, s4.d_state, s4.dropout) == (8, 2, 4, 0.1)
    assert s4.bidirectional == (method != "cpc")
    if method == "cpc":
        # ECG-CPC's MLP predictor, as wide as the S4 stack, on the encoder's
        # encodings.
        assert model.predictor_hidden.units == 8
        assert s4.input_channels == model.encoder.output_dim
    else:
        x = np.zeros((2, 62, 12), "float32")
        assert model.backbone(x).shape == (2, 8)
