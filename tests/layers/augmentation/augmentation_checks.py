"""Shared checks of the augmentation layer tests (not a test module).

Every layer test supplies a factory `make(**kwargs)` and a numpy re-statement
`reference(x, params)` of its formula; the checks draw parameters through the
layer (`return_parameters=True` or `get_random_transformation`), recompute the
expected output in numpy and compare.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_ecg.testing import assert_config_round_trip

BATCH, TIMESTEPS, LEADS = 4, 250, 12


def ecg_batch(seed=0, batch=BATCH, timesteps=TIMESTEPS, leads=LEADS):
    """A smooth, ECG-like random batch (sum of a few sinusoids plus noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(timesteps)[None, :, None] / 100.0
    freq = rng.uniform(0.5, 8.0, size=(batch, 1, leads))
    phase = rng.uniform(0, 2 * np.pi, size=(batch, 1, leads))
    x = np.sin(2 * np.pi * freq * t + phase) + 0.1 * rng.normal(
        size=(batch, timesteps, leads)
    )
    return x.astype("float32")


def to_numpy(tree):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


def expected_output(reference, x, params):
    """`reference(x, params)`, left unchanged where the `apply` mask is off."""
    y = reference(x, params)
    if "apply" in params:
        y = np.where(np.asarray(params["apply"])[:, None, None], y, x)
    return y


def check_reference(make, reference, x=None, seed=7, atol=1e-5):
    """Eager call (batched and single record) and `transform()` match numpy."""
    x = ecg_batch() if x is None else x
    layer = make(seed=seed)
    y, params = layer(x, return_parameters=True)
    y, params = to_numpy(y), to_numpy(params)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(
        y, expected_output(reference, x, params), atol=atol, rtol=1e-5
    )
    # The same seed reproduces the call via the public two-step API.
    twin = make(seed=seed)
    drawn = twin.get_random_transformation(x.shape)
    np.testing.assert_allclose(to_numpy(twin.transform(x, drawn)), y, atol=atol)
    # A single record is augmented as a batch of one.
    single, single_params = make(seed=seed + 1)(x[1], return_parameters=True)
    single, single_params = to_numpy(single), to_numpy(single_params)
    assert single.shape == x[1].shape
    np.testing.assert_allclose(
        single,
        expected_output(reference, x[1:2], single_params)[0],
        atol=atol,
        rtol=1e-5,
    )
    return y, params


def check_tf_data(make, reference, x=None, seed=3, atol=1e-5):
    """In `tf.data.Dataset.map` (TF ops under any backend), batched/unbatched."""
    x = ecg_batch(seed=1) if x is None else x
    layer = make(seed=seed)

    def augment(v):
        return layer(v, return_parameters=True)

    augment = tf.autograph.experimental.do_not_convert(augment)
    batched = tf.data.Dataset.from_tensor_slices(x).batch(2).map(augment)
    outputs = []
    for (y, params), start in zip(batched, (0, 2)):
        y, params = to_numpy(y), to_numpy(params)
        assert isinstance(y, np.ndarray) and y.shape == (2,) + x.shape[1:]
        expected = expected_output(reference, x[start : start + 2], params)
        np.testing.assert_allclose(y, expected, atol=atol, rtol=1e-5)
        outputs.append(y)
    unbatched = tf.data.Dataset.from_tensor_slices(x).map(augment)
    for (y, params), record in zip(unbatched, x):
        y, params = to_numpy(y), to_numpy(params)
        assert y.shape == x.shape[1:]
        expected = expected_output(reference, record[None], params)[0]
        np.testing.assert_allclose(y, expected, atol=atol, rtol=1e-5)
    return np.concatenate(outputs)


def check_common(make, x=None, independent=True):
    """Identity paths, model training flag, independence, seeds, config."""
    x = ecg_batch(seed=2) if x is None else x
    # probability=0 and training=False are the identity.
    np.testing.assert_array_equal(to_numpy(make(probability=0.0)(x)), x)
    np.testing.assert_array_equal(to_numpy(make(seed=1)(x, training=False)), x)
    # Inside a model: training=True augments, training=False passes through.
    inputs = keras.Input(shape=x.shape[1:])
    model = keras.Model(inputs, make(seed=5)(inputs))
    np.testing.assert_array_equal(to_numpy(model(x, training=False)), x)
    assert not np.allclose(to_numpy(model(x, training=True)), x)
    # Per-example independence: identical records get different outputs.
    if independent:
        same = np.repeat(x[:1], 4, axis=0)
        y = to_numpy(make(seed=11)(same))
        for i in range(1, 4):
            assert not np.allclose(y[0], y[i]), "examples share random parameters"
    # Determinism under a seed, variety across seeds and calls.
    layer = make(seed=21)
    first = to_numpy(layer(x))
    np.testing.assert_array_equal(to_numpy(make(seed=21)(x)), first)
    assert not np.allclose(to_numpy(make(seed=22)(x)), first)
    assert not np.allclose(to_numpy(layer(x)), first)
    # dtype / shape contract, config.
    assert tuple(make().compute_output_shape((None, 250, 12))) == (None, 250, 12)
    assert_config_round_trip(make(seed=4))
