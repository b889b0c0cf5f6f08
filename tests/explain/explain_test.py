"""Integrated-gradients explanations: exactness, completeness, localisation.

The references are independent of the code under test: a linear classifier
whose integrated gradients are `(x - baseline) * weights` in closed form, the
completeness property checked against `predict_records` (tf.data windows and
`model.predict`), and a trained classifier whose class is defined by a known
lead and time segment.
"""

import keras
import numpy as np
import pytest

from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from keras_ecg.data.ecg_dataset import ECGDataset
from keras_ecg.explain import Explanation
from keras_ecg.explain import explain_record
from keras_ecg.explain import explain_records
from keras_ecg.explain import integrated_gradients
from keras_ecg.explain import lead_shares
from keras_ecg.models import ECGClassifier
from keras_ecg.models import ECGPreprocessor

RATE = 100
ONE_PASS = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="argument checks: run in the tensorflow pass",
)


def _classifier(layers, num_classes=3, pooling="avg", **preprocessor):
    inputs = keras.Input((None, 12))
    x = inputs
    for layer in layers:
        x = layer(x)
    model = ECGClassifier(
        keras.Model(inputs, x),
        num_classes=num_classes,
        pooling=pooling,
        preprocessor=ECGPreprocessor(RATE, **preprocessor),
        class_names=[f"c{i}" for i in range(num_classes)],
    )
    model(np.zeros((1, 250, 12), "float32"))
    return model


def _record(length, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, scale, (length, 12)).astype("float32")


def test_a_linear_classifier_gets_its_closed_form_attributions():
    rng = np.random.default_rng(0)
    mean, std = rng.normal(0.0, 0.1, 12), rng.uniform(0.5, 2.0, 12)
    model = _classifier([keras.layers.Dense(4, name="proj")], mean=mean, std=std)
    # 400 samples: windows at 0, 125 and the tail one at 150; they overlap.
    x = _record(400)
    explanation = explain_record(model, x, RATE, top_k=3, steps=2, target="logit")
    # The mean window logit is linear in the mV input: its gradient at
    # sample t is (windows covering t) / (3 windows * 250 samples) times
    # the folded weights divided by the lead's std, and the zero baseline
    # makes the attribution x times that.
    kernel = model.backbone.get_layer("proj").get_weights()[0]
    folded = kernel @ model.head_denses[0].get_weights()[0] / std[:, None]
    cover = np.zeros(400)
    for start in (0, 125, 150):
        cover[start : start + 250] += 1
    for rank, c in enumerate(explanation.class_indices):
        expected = x * (cover / (3 * 250))[:, None] * folded[:, c]
        np.testing.assert_allclose(
            explanation.attributions[rank], expected, rtol=1e-4, atol=1e-8
        )
    # The classes come out most probable first, with their shares.
    probabilities = explanation.probabilities
    assert list(explanation.class_indices) == list(np.argsort(-probabilities))
    assert explanation.class_names == [f"c{i}" for i in explanation.class_indices]
    np.testing.assert_allclose(explanation.lead_shares.sum(axis=1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def smooth_model():
    # Smooth (no ReLU kinks, no max pooling): the midpoint rule's error then
    # falls as 1 / steps**2, and 32 steps leave a gap far below 1%.
    return _classifier(
        [
            keras.layers.Conv1D(8, 9, padding="same", activation="gelu"),
            keras.layers.Conv1D(8, 9, padding="same", activation="tanh"),
        ]
    )


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_attributions_add_up_to_the_change_of_the_probability(
    smooth_model, aggregation
):
    model = smooth_model
    model.preprocessor = ECGPreprocessor(
        RATE, mean=np.full(12, 0.05), std=np.full(12, 0.3), aggregation=aggregation
    )
    x = _record(400, seed=1, scale=1.0)
    explanation = explain_record(model, x, RATE, top_k=2, steps=32)
    # Independent of the explainer: the tf.data windows and model.predict of
    # predict_records, on the record and on the flat baseline.
    both = ECGDataset([x, np.zeros_like(x)], ["x", "flat"], RATE)
    scores = model.predict_records(both)[model.column_names()].to_numpy()
    indices = explanation.class_indices
    np.testing.assert_allclose(explanation.probabilities, scores[0], atol=1e-5)
    if aggregation == "mean":
        change = scores[0, indices] - scores[1, indices]
    else:  # through the window that gives the max at the record
        change = explanation.outputs - explanation.baseline_outputs
        np.testing.assert_allclose(explanation.outputs, scores[0, indices], atol=1e-5)
    totals = explanation.attributions.sum(axis=(1, 2))
    assert np.all(np.abs(change) > 1e-3), change  # a change worth explaining
    np.testing.assert_allclose(totals, change, rtol=0.01, atol=1e-5)


def test_integrated_gradients_takes_any_keras_model_and_baseline():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    x = np.arange(10, dtype="float32").reshape(2, 5)
    baseline = np.ones(5, "float32")
    attributions = integrated_gradients(model, x, [1, 0], baselines=baseline)
    kernel = model.get_weights()[0]
    np.testing.assert_allclose(
        attributions, (x - baseline) * kernel[:, [1, 0]].T, rtol=1e-5, atol=1e-6
    )


# ----------------------------------------------------------------------------
# A class defined by a known lead and segment
# ----------------------------------------------------------------------------

V2, II = STANDARD_LEADS.index("V2"), STANDARD_LEADS.index("II")
# Class 0: a 0.3 s, 1 mV upward bump in V2 at 1.0-1.3 s; class 1: a downward
# one in II at 1.6-1.9 s. Each is present in half of the records, alone or
# together, on 0.05 mV noise in every lead.
SEGMENTS = {0: (V2, 100, 130), 1: (II, 160, 190)}


def _bump_records(num_records, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.05, (num_records, 250, 12)).astype("float32")
    y = (rng.random((num_records, 2)) < 0.5).astype("float32")
    for c, (lead, start, stop) in SEGMENTS.items():
        sign = 1.0 if c == 0 else -1.0
        x[y[:, c] == 1, start:stop, lead] += sign * np.hanning(stop - start)
    return x, y


@pytest.fixture
def _one_torch_thread():
    # Two shared CPU cores: PyTorch's default two threads spin against the
    # other processes and make this small training ~15x slower.
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_attribution_concentrates_on_the_lead_and_segment_of_the_class(
    _one_torch_thread,
):
    x, y = _bump_records(256, seed=0)
    # ECG-like scaling (0.25 mV), not the noise's: the leads without a bump
    # are not blown up to unit variance.
    preprocessor = ECGPreprocessor(RATE, mean=np.zeros(12), std=np.full(12, 0.25))
    model = ECGClassifier(
        _conv_backbone(),
        num_classes=2,
        pooling="max",
        preprocessor=preprocessor,
        class_names=["V2_bump", "II_dip"],
    )
    model.compile(
        keras.optimizers.Adam(0.01), keras.losses.BinaryCrossentropy(from_logits=True)
    )
    model.fit(preprocessor.standardize(x), y, batch_size=64, epochs=30, verbose=0)
    test_x, test_y = _bump_records(32, seed=1)
    scores = model.predict_records(ECGDataset(list(test_x), list(range(32)), RATE))
    assert ((scores[["V2_bump", "II_dip"]].to_numpy() > 0.5) == test_y).all()
    for c, (lead, start, stop) in SEGMENTS.items():
        # The segment is 30 of 250 samples in 1 of 12 leads: 1% of the mass
        # if it were spread evenly.
        for i in np.flatnonzero(test_y[:, c])[:6]:
            explanation = explain_record(model, test_x[i], RATE, classes=[c])
            magnitude = np.abs(explanation.attributions[0])
            share = magnitude[start:stop, lead].sum() / magnitude.sum()
            assert share >= 0.5, (c, i, share)
            assert np.argmax(explanation.lead_shares[0]) == lead


def _conv_backbone():
    inputs = keras.Input((None, 12))
    # L1: the weights of the leads that carry nothing go to zero.
    features = keras.layers.Conv1D(
        8,
        7,
        padding="same",
        activation="relu",
        kernel_regularizer=keras.regularizers.L1(1e-3),
    )(inputs)
    return keras.Model(inputs, features)


# ----------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------


@ONE_PASS
def test_bad_arguments_say_what_is_wrong():
    model = _classifier([keras.layers.Dense(4)])
    x = _record(250)
    with pytest.raises(ValueError, match=r"top_k must be in 1\.\.3"):
        explain_record(model, x, RATE, top_k=4)
    with pytest.raises(ValueError, match="not both"):
        explain_record(model, x, RATE, classes=["c1"], top_k=1)
    with pytest.raises(ValueError, match="unknown class 'MI'"):
        explain_record(model, x, RATE, classes=["MI"])
    with pytest.raises(ValueError, match="names a class twice"):
        explain_record(model, x, RATE, classes=["c1", 1])
    with pytest.raises(ValueError, match=r"broadcast to .*\(250, 12\)"):
        explain_record(model, x, RATE, baseline=np.zeros(3))
    with pytest.raises(ValueError, match="target must be one of"):
        explain_record(model, x, RATE, target="softmax")
    with pytest.raises(ValueError, match="baseline must be one of"):
        explain_records(model, ECGDataset([x], ["r"], RATE), baseline="noise")
    model.preprocessor = None
    with pytest.raises(ValueError, match="needs an ECGClassifier with a preprocessor"):
        explain_record(model, x, RATE)


@pytest.mark.backend_agnostic
def test_lead_shares_sum_to_one_and_are_nan_without_attribution():
    attributions = np.zeros((2, 10, 3))
    attributions[0, :, 1] = -2.0
    attributions[0, 0, 2] = 2.0
    shares = lead_shares(attributions)
    np.testing.assert_allclose(shares[0], [0.0, 20 / 22, 2 / 22])
    assert np.isnan(shares[1]).all()


@pytest.mark.backend_agnostic
def test_plot_explanation_draws_every_lead_per_class(tmp_path):
    pytest.importorskip("matplotlib")
    from keras_ecg.explain import plot_explanation

    signal = _record(300, seed=2)
    attributions = np.zeros((2, 300, 12), "float32")
    attributions[0, 100:130, V2] = 1.0
    attributions[1, 160:190, II] = -1.0
    explanation = Explanation(
        record_id="rec/1",
        signal=signal,
        sampling_rate=RATE,
        lead_names=STANDARD_LEADS,
        class_names=["V2_bump", "II_dip"],
        class_indices=np.array([0, 1]),
        probabilities=np.array([0.9, 0.8], "float32"),
        attributions=attributions,
        lead_shares=lead_shares(attributions),
        outputs=np.array([0.9, 0.8], "float32"),
        baseline_outputs=np.array([0.1, 0.2], "float32"),
        target="probability",
        steps=32,
    )
    path = tmp_path / "explained.png"
    figure = plot_explanation(explanation, path=path, dpi=40)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = figure.axes
    assert len(axes) == 24
    titles = [axis.get_title() for axis in axes if axis.get_title()]
    assert titles == ["V2_bump: p = 0.90", "II_dip: p = 0.80"]
    labels = {axis.texts[0].get_text() for axis in axes}
    assert {"V2  100%", "II  100%", "I  0%"} <= labels
    # Each panel: its lead's trace, and the shading only where attributed.
    by_label = {axis.texts[0].get_text(): axis for axis in axes}
    shading = by_label["V2  100%"].images[0].get_array()
    alpha = np.asarray(shading)[0, :, 3]
    assert alpha[105:125].min() > 0.7 and alpha[:95].max() == 0.0
    np.testing.assert_array_equal(
        by_label["V2  100%"].get_lines()[0].get_ydata(), signal[:, V2]
    )
