import keras
import numpy as np
import pytest

from keras_ecg.layers import SwAVPrototypes
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip


def _unit_rows(rng, shape):
    z = rng.normal(size=shape)
    return (z / np.linalg.norm(z, axis=-1, keepdims=True)).astype("float32")


def test_scores_are_cosine_similarities_to_unit_prototypes():
    rng = np.random.default_rng(0)
    layer = SwAVPrototypes(num_prototypes=5)
    z = _unit_rows(rng, (4, 6))
    layer.build(z.shape)
    raw = rng.normal(scale=3.0, size=(6, 5)).astype("float32")
    layer.prototypes.assign(raw)
    scores = keras.ops.convert_to_numpy(layer(z))
    unit = raw / np.linalg.norm(raw, axis=0, keepdims=True)
    np.testing.assert_allclose(scores, z @ unit, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(scores) <= 1.0 + 1e-6)
    protos = keras.ops.convert_to_numpy(layer.normalized_prototypes)
    assert protos.shape == (5, 6)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(protos, unit.T, rtol=1e-6)
    # A sample equal to a prototype scores exactly 1 against it.
    own = keras.ops.convert_to_numpy(layer(protos))
    np.testing.assert_allclose(np.diag(own), 1.0, rtol=1e-5)


def test_norm_stays_one_after_gradient_steps():
    rng = np.random.default_rng(1)
    inputs = keras.Input((6,))
    layer = SwAVPrototypes(num_prototypes=4)
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    z = _unit_rows(rng, (8, 6))
    target = rng.normal(size=(8, 4)).astype("float32")
    before = keras.ops.convert_to_numpy(layer.prototypes).copy()
    model.fit(z, target, epochs=2, batch_size=4, verbose=0)
    assert not np.allclose(keras.ops.convert_to_numpy(layer.prototypes), before)
    protos = keras.ops.convert_to_numpy(layer.normalized_prototypes)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, rtol=1e-6)


def test_invalid_num_prototypes():
    with pytest.raises(ValueError, match="num_prototypes"):
        SwAVPrototypes(num_prototypes=0)


def test_round_trips(tmp_path):
    layer = SwAVPrototypes(num_prototypes=7)
    assert_config_round_trip(layer)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, layer(inputs))
    z = _unit_rows(np.random.default_rng(2), (3, 6))
    assert_saved_model_round_trip(model, z, tmp_path)
