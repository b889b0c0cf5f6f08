import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ecg.layers import AugmentationStack
from keras_ecg.layers import ChannelResize
from keras_ecg.layers import EMNoise
from keras_ecg.layers import PowerlineNoise
from keras_ecg.layers import RandomResizedCrop
from keras_ecg.layers import TimeOut
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip
from tests.layers.augmentation import augmentation_checks as checks


def members():
    return [
        RandomResizedCrop(seed=1),
        TimeOut(seed=2),
        PowerlineNoise(sampling_rate=500, seed=3),
    ]


def sequential(x):
    for layer in members():
        x = layer(x)
    return x


def test_applies_members_in_order():
    x = checks.ecg_batch()
    y = checks.to_numpy(AugmentationStack(members())(x))
    np.testing.assert_allclose(y, checks.to_numpy(sequential(x)), atol=1e-6)
    # Order matters: TimeOut last leaves exact zeros, TimeOut first does not.
    last = checks.to_numpy(AugmentationStack([EMNoise(seed=1), TimeOut(seed=2)])(x))
    first = checks.to_numpy(AugmentationStack([TimeOut(seed=2), EMNoise(seed=1)])(x))
    assert np.all((last == 0).all(axis=2).sum(axis=1) >= 50)
    assert not np.any((first == 0).all(axis=2))


def test_tf_data_matches_members_in_tf_data():
    x = checks.ecg_batch()
    stack = AugmentationStack(members())
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2)
    stacked = np.concatenate([np.asarray(y) for y in ds.map(stack)])
    chained = ds
    for layer in members():
        chained = chained.map(layer)
    expected = np.concatenate([np.asarray(y) for y in chained])
    np.testing.assert_allclose(stacked, expected, atol=1e-6)
    assert not np.allclose(stacked, x)
    unbatched = [
        np.asarray(y) for y in tf.data.Dataset.from_tensor_slices(x).map(stack)
    ]
    assert unbatched[0].shape == (250, 12)


def test_two_views_differ_and_identity_paths():
    x = checks.ecg_batch()
    stack = AugmentationStack(members())
    assert not np.allclose(checks.to_numpy(stack(x)), checks.to_numpy(stack(x)))
    np.testing.assert_array_equal(checks.to_numpy(stack(x, training=False)), x)
    off = AugmentationStack(members(), probability=0.0)
    np.testing.assert_array_equal(checks.to_numpy(off(x)), x)


def test_stack_probability_masks_whole_examples():
    x = checks.ecg_batch(batch=16)
    stack = AugmentationStack([ChannelResize(seed=1)], probability=0.5, seed=4)
    y, params = stack(x, return_parameters=True)
    y, apply = checks.to_numpy(y), checks.to_numpy(params["apply"])
    assert 0 < apply.sum() < 16
    np.testing.assert_array_equal(y[~apply], x[~apply])
    assert not np.allclose(y[apply], x[apply])


def test_config_and_saved_model_round_trip(tmp_path):
    stack = AugmentationStack(members(), probability=0.9, seed=5)
    rebuilt = assert_config_round_trip(stack)
    assert [type(layer) for layer in rebuilt.layers] == [
        type(layer) for layer in stack.layers
    ]
    assert rebuilt.layers[2].sampling_rate == 500.0
    inputs = keras.Input(shape=(250, 12))
    features = AugmentationStack(members(), seed=5)(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(features))
    model = keras.Model(inputs, outputs, name="stack_model")
    restored = assert_saved_model_round_trip(model, checks.ecg_batch(), tmp_path)
    assert isinstance(restored.layers[1], AugmentationStack)
    assert len(restored.layers[1].layers) == 3


def test_trains_inside_a_compiled_model():
    inputs = keras.Input(shape=(250, 12))
    features = AugmentationStack([RandomResizedCrop(seed=1), TimeOut(seed=2)])(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(features))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    x = checks.ecg_batch()
    history = model.fit(x, np.zeros((4, 1)), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_rejects_non_layers():
    with pytest.raises(TypeError, match="Keras layer"):
        AugmentationStack([lambda x: x])
