"""A `.keras` file saved under one backend loads under the two others.

Each pretraining method is trained for two steps (so the weights, BYOL's and
JEPA's targets, SwAV's queue and the step counters are not at their initial values),
saved, then reloaded in a subprocess per other backend, which reports every
weight and the backbone's output on a fixed batch. Runs in the TensorFlow pass
only (it starts the other backends itself).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ecg.models.method_factory import CROP_SECONDS
from keras_ecg.models.method_factory import build_method
from keras_ecg.testing.test_case import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# (name, method, encoder): every method with its default encoder, and the S4
# encoders: CPC's causal S4 context and JEPA's S4TokenEncoder (a bidirectional
# S4Encoder stack inside, as SimCLR/BYOL/SwAV's S4 encoder).
CASES = (
    ("simclr", "simclr", None),
    ("byol", "byol", None),
    ("swav", "swav", None),
    ("cpc", "cpc", None),
    ("jepa", "jepa", None),
    ("cpc_s4", "cpc", "s4"),
    ("jepa_s4", "jepa", "s4"),
)

_LOADER = r"""
import json, sys
import numpy as np
import keras
import keras_ecg  # registers the serializable classes

paths, inputs_path, out = json.loads(sys.argv[1])
inputs = np.load(inputs_path)
results = {}
for method, path in paths.items():
    model = keras.saving.load_model(path)
    backbone = model.backbone(inputs[method], training=False)
    results[method + "/backbone"] = keras.ops.convert_to_numpy(backbone)
    for i, weight in enumerate(model.weights):
        results[f"{method}/{i}"] = keras.ops.convert_to_numpy(weight)
np.savez(out, **results)
print("LOADED", keras.backend.backend())
"""


def _train_briefly(method, rng, encoder=None):
    length = int(CROP_SECONDS[method] * 100)
    model = build_method(method, size="tiny", input_leads=12, encoder=encoder)
    x = rng.normal(size=(8, length, 12)).astype("float32")
    data = x if method in ("cpc", "jepa") else (x, x[:, ::-1] + 0.01)
    # Eagerly: two steps need moved weights, not a traced graph (tracing
    # seven models cost ~30 s of this test's CPU).
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    model.fit(data, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return model, x[:2]


@pytest.mark.backend_agnostic
def test_models_saved_here_load_under_the_other_backends(tmp_path):
    rng = np.random.default_rng(0)
    saved_from = keras.backend.backend()
    paths, inputs, expected = {}, {}, {}
    for name, method, encoder in CASES:
        keras.utils.set_random_seed(0)
        model, batch = _train_briefly(method, rng, encoder)
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        paths[name], inputs[name] = path, batch
        expected[name + "/backbone"] = keras.ops.convert_to_numpy(
            model.backbone(batch, training=False)
        )
        for i, weight in enumerate(model.weights):
            # By position: variable paths are named differently per backend.
            expected[f"{name}/{i}"] = keras.ops.convert_to_numpy(weight)
    inputs_path = str(tmp_path / "inputs.npz")
    np.savez(inputs_path, **inputs)

    others = [b for b in ("tensorflow", "jax", "torch") if b != saved_from]
    for backend in others:
        out = str(tmp_path / f"loaded_{backend}.npz")
        process = subprocess.run(
            [sys.executable, "-c", _LOADER, json.dumps([paths, inputs_path, out])],
            env=subprocess_env(backend),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert process.returncode == 0, process.stderr[-4000:]
        assert f"LOADED {backend}" in process.stdout
        loaded = dict(np.load(out))
        # Same number of weights, equal in the same order.
        assert sorted(loaded) == sorted(expected), backend
        for key, value in expected.items():
            if key.endswith("/backbone"):
                np.testing.assert_allclose(
                    loaded[key], value, rtol=1e-4, atol=1e-5, err_msg=backend
                )
            else:
                np.testing.assert_array_equal(
                    loaded[key], value, err_msg=f"{backend}: {key}"
                )
