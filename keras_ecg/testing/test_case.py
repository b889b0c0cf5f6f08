"""Test helpers shared by the layer and model tests (keras-hub style)."""

import os
import socket

import keras
import numpy as np


def assert_config_round_trip(layer_or_model):
    """`from_config(get_config())` rebuilds an object with an identical config."""
    config = layer_or_model.get_config()
    rebuilt = layer_or_model.__class__.from_config(config)
    assert rebuilt.get_config() == config, (
        f"{type(layer_or_model).__name__} config changed in a round trip:\n"
        f"{config}\n!=\n{rebuilt.get_config()}"
    )
    # The serialized form must also survive the generic Keras path, which
    # resolves the class through its registered name.
    serialized = keras.saving.serialize_keras_object(layer_or_model)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer_or_model)
    return rebuilt


def assert_saved_model_round_trip(model, inputs, tmp_path, atol=1e-6, call=None):
    """Saves `model` to `.keras`, reloads it and compares outputs on `inputs`.

    Args:
        model: a built `keras.Model`.
        inputs: inputs the model accepts.
        tmp_path: a directory to write to.
        atol: absolute tolerance on the outputs.
        call: optional `fn(model, inputs) -> outputs`; defaults to
            `model(inputs, training=False)`.
    """
    call = call or (lambda m, x: m(x, training=False))
    expected = keras.tree.map_structure(keras.ops.convert_to_numpy, call(model, inputs))
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    actual = keras.tree.map_structure(
        keras.ops.convert_to_numpy, call(restored, inputs)
    )
    for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
        np.testing.assert_allclose(a, e, atol=atol, rtol=1e-5)
    assert len(restored.weights) == len(model.weights)
    for w_restored, w in zip(restored.weights, model.weights):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(w_restored), keras.ops.convert_to_numpy(w)
        )
    return restored


def subprocess_env(backend=None, **extra):
    """Environment for a test subprocess that imports this checkout of keras_ecg.

    Args:
        backend: the `KERAS_BACKEND` of the subprocess; defaults to the
            active backend.
        **extra: further variables to set.

    Returns:
        A copy of `os.environ` with the backend, the project root first on
        `PYTHONPATH` and TensorFlow's C++ logging quiet unless set.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND=backend or keras.backend.backend(), **extra)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def free_ports(count):
    """`count` TCP ports free on localhost now (for the addresses of a
    multi-process job started by a test or a benchmark)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
