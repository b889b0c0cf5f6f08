"""A preset saved under one backend loads under the two others.

SimCLR, CPC and BYOL method models and an ECGClassifier (every weight set to
random values) are saved as presets here, then loaded with `from_preset` in a
subprocess per other backend, which reports every weight, the task's and the
backbone's outputs on fixed inputs and the preprocessor. Runs in the
TensorFlow pass only (it starts the other backends itself), as
tests/models/cross_backend_test.py.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_ecg.testing.test_case import subprocess_env
from tests.presets.preset_helpers import classifier
from tests.presets.preset_helpers import method_model
from tests.presets.preset_helpers import numpy_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_LOADER = r"""
import json, sys
import numpy as np
import keras
from keras_ecg import presets

folders, inputs_path, out = json.loads(sys.argv[1])
inputs = np.load(inputs_path)
results, preprocessors = {}, {}
for name, folder in folders.items():
    model = presets.from_preset(folder)
    x = inputs[name]
    outputs = keras.tree.flatten(model(x, training=False))
    for i, value in enumerate(outputs):
        results[f"{name}/out{i}"] = keras.ops.convert_to_numpy(value)
    backbone = presets.from_preset(folder, component="backbone")
    results[name + "/backbone"] = keras.ops.convert_to_numpy(backbone(x))
    for i, weight in enumerate(model.weights):
        results[f"{name}/{i}"] = keras.ops.convert_to_numpy(weight)
    preprocessors[name] = model.preprocessor.get_config()
np.savez(out, **results)
print("LOADED", keras.backend.backend(), json.dumps(preprocessors))
"""


@pytest.mark.backend_agnostic
def test_presets_saved_here_load_under_the_other_backends(tmp_path):
    saved_from = keras.backend.backend()
    folders, inputs, expected, preprocessors = {}, {}, {}, {}
    models = {name: method_model(name) for name in ("simclr", "cpc", "byol")}
    models["classifier"] = classifier()
    for name, (model, x) in models.items():
        folders[name] = model.save_to_preset(str(tmp_path / name))
        inputs[name] = x
        for i, value in enumerate(numpy_tree(model(x, training=False))):
            expected[f"{name}/out{i}"] = value
        expected[name + "/backbone"] = keras.ops.convert_to_numpy(model.backbone(x))
        for i, weight in enumerate(model.weights):
            # By position: variable paths are named differently per backend.
            expected[f"{name}/{i}"] = keras.ops.convert_to_numpy(weight)
        preprocessors[name] = model.preprocessor.get_config()
    inputs_path = str(tmp_path / "inputs.npz")
    np.savez(inputs_path, **inputs)

    for backend in [b for b in ("tensorflow", "jax", "torch") if b != saved_from]:
        out = str(tmp_path / f"loaded_{backend}.npz")
        process = subprocess.run(
            [sys.executable, "-c", _LOADER, json.dumps([folders, inputs_path, out])],
            env=subprocess_env(backend),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert process.returncode == 0, process.stderr[-4000:]
        line = [ln for ln in process.stdout.splitlines() if ln.startswith("LOADED")][-1]
        assert line.split()[1] == backend
        loaded_preprocessors = json.loads(line.split(" ", 2)[2])
        for name, config in preprocessors.items():
            config = {k: v for k, v in config.items() if k != "name"}
            got = {k: v for k, v in loaded_preprocessors[name].items() if k != "name"}
            assert got == json.loads(json.dumps(config)), (backend, name)
        loaded = dict(np.load(out))
        assert sorted(loaded) == sorted(expected), backend
        for key, value in expected.items():
            if "/out" in key or key.endswith("/backbone"):
                np.testing.assert_allclose(
                    loaded[key],
                    value,
                    rtol=1e-4,
                    atol=1e-5,
                    err_msg=f"{backend}: {key}",
                )
            else:
                np.testing.assert_array_equal(
                    loaded[key], value, err_msg=f"{backend}: {key}"
                )
