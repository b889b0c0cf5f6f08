import keras
import numpy as np

from keras_ecg.layers import JEPAPredictor
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip
from tests import transformer_numpy as ref

CONFIG = dict(hidden_dim=6, num_layers=2, num_heads=2)


def _predictor(**kwargs):
    predictor = JEPAPredictor(name="pred", **dict(CONFIG, **kwargs))
    predictor.build((None, None, 8))
    ref.randomize(predictor, np.random.default_rng(0))
    return predictor


def test_predictions_match_the_numpy_predictor():
    predictor = _predictor(use_bias=True)  # JEPA's tests cover bias-free
    rng = np.random.default_rng(1)
    context = rng.normal(size=(2, 3, 8)).astype("float32")
    context_indices = np.array([[0, 4, 9], [2, 3, 7]], "int32")
    target_indices = np.array([[1, 2, 5, 6], [0, 8, 9, 1]], "int32")
    out = keras.ops.convert_to_numpy(
        predictor(context, context_indices, target_indices)
    )
    assert out.shape == (2, 4, 8)
    config = dict(CONFIG, layer_norm_epsilon=1e-6)
    w = ref.weights(predictor)
    for b in range(2):
        expected = ref.predictor(
            context[b : b + 1],
            context_indices[b : b + 1],
            target_indices[b : b + 1],
            w,
            config,
        )
        np.testing.assert_allclose(out[b], expected[0], rtol=1e-4, atol=1e-4)


def test_padded_slots_change_no_real_prediction():
    predictor = _predictor()
    rng = np.random.default_rng(2)
    context = rng.normal(size=(1, 4, 8)).astype("float32")
    context_indices = np.array([[1, 5, 6, 0]], "int32")
    context_valid = np.array([[1, 1, 1, 0]], bool)
    target_indices = np.array([[2, 3, 4, 7, 9]], "int32")
    target_valid = np.array([[1, 1, 1, 0, 0]], bool)
    padded = keras.ops.convert_to_numpy(
        predictor(
            context,
            context_indices,
            target_indices,
            context_valid=context_valid,
            target_valid=target_valid,
        )
    )
    alone = keras.ops.convert_to_numpy(
        predictor(context[:, :3], context_indices[:, :3], target_indices[:, :3])
    )
    np.testing.assert_allclose(padded[:, :3], alone, rtol=1e-4, atol=1e-5)
    # Without the flags the padding would be attended to: a different result.
    unflagged = keras.ops.convert_to_numpy(
        predictor(context, context_indices, target_indices)
    )
    assert np.abs(unflagged[:, :3] - alone).max() > 1e-3


def test_round_trips(tmp_path):
    predictor = JEPAPredictor(hidden_dim=4, num_layers=1, num_heads=2, dropout=0.1)
    assert_config_round_trip(predictor)
    context = keras.Input((3, 8))
    context_indices = keras.Input((3,), dtype="int32")
    target_indices = keras.Input((2,), dtype="int32")
    outputs = predictor(context, context_indices, target_indices)
    model = keras.Model([context, context_indices, target_indices], outputs)
    rng = np.random.default_rng(3)
    inputs = [
        rng.normal(size=(2, 3, 8)).astype("float32"),
        np.array([[0, 1, 2], [3, 4, 5]], "int32"),
        np.array([[6, 7], [0, 1]], "int32"),
    ]
    ref.randomize(predictor, rng)
    assert_saved_model_round_trip(model, inputs, tmp_path, atol=1e-5)
