"""Preset handles: local folders, and hf:// / kaggle:// downloads through the
real huggingface_hub and kagglehub code against a loopback server
(`keras_ecg.testing.hub_server.FakeHub`), then from their caches offline.

The downloads run in subprocesses: both libraries read their endpoint, cache
and offline settings from the environment when they are imported, as they do
for a user.
"""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_ecg import presets
from keras_ecg.presets import HubPackageError
from keras_ecg.presets import PresetError
from keras_ecg.testing.hub_server import FakeHub
from keras_ecg.testing.test_case import subprocess_env
from tests.presets.preset_helpers import method_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Resolves each handle, loads the task of the first that resolves and
# reports its backbone output on the saved inputs.
_CHILD = r"""
import json, sys
import numpy as np
import keras
from keras_ecg import presets

handles, inputs_path, out = json.loads(sys.argv[1])
report, outputs = {}, {}
for handle in handles:
    try:
        path = presets.get_preset_dir(handle)
    except Exception as error:
        report[handle] = {"error": type(error).__name__ + ": " + str(error)}
        continue
    files = sorted(presets.preset_info(handle)["files"])
    report[handle] = {"path": path, "files": files}
    if not outputs:
        model = presets.from_preset(handle)
        x = np.load(inputs_path)
        outputs[handle] = keras.ops.convert_to_numpy(model.backbone(x, training=False))
        report[handle]["class"] = type(model).__name__
np.savez(out, *outputs.values())
print("REPORT" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def preset_folder(tmp_path_factory):
    model, x = method_model("simclr")
    folder = tmp_path_factory.mktemp("hub") / "simclr"
    model.save_to_preset(folder)
    np.save(folder.parent / "inputs.npy", x)
    expected = np.asarray(model.backbone(x, training=False))
    return folder, folder.parent / "inputs.npy", expected


def _digests(folder):
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in os.listdir(folder)
    }


def _run_child(handles, inputs, out, env):
    process = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([handles, str(inputs), str(out)])],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    line = [ln for ln in process.stdout.splitlines() if ln.startswith("REPORT")][-1]
    return json.loads(line[len("REPORT") :])


@pytest.mark.backend_agnostic
def test_hugging_face_and_kaggle_downloads_then_offline_cache(preset_folder, tmp_path):
    folder, inputs, expected = preset_folder
    digests = _digests(folder)
    env = subprocess_env(
        backend="jax",
        HF_HOME=str(tmp_path / "hf"),
        KAGGLEHUB_CACHE=str(tmp_path / "kaggle"),
        KAGGLE_CONFIG_DIR=str(tmp_path / "kaggle_config"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_OFFLINE", None)
    with FakeHub(max_seconds=200) as hub:
        commit = hub.add_hugging_face_repo("lab/ecg-simclr", folder)
        hub.add_kaggle_model("lab/ecg-simclr/keras/tiny", 2, folder)
        env.update(HF_ENDPOINT=hub.url, **hub.kaggle_env())
        handles = [
            "hf://lab/ecg-simclr",
            f"hf://lab/ecg-simclr@{commit}",
            "hf://lab/ecg-simclr@v9",
            "hf://lab/missing",
            "kaggle://lab/ecg-simclr/keras/tiny",
            "kaggle://lab/ecg-simclr/keras/tiny/2",
            "kaggle://lab/missing/keras/tiny",
            "kaggle://lab/ecg-simclr/keras/tiny/3",
        ]
        report = _run_child(handles, inputs, tmp_path / "online.npz", env)
        requests = list(hub.requests)
    # The real download code went through the Hub's routes.
    assert ("GET", "/api/models/lab/ecg-simclr/revision/main") in requests
    assert ("HEAD", f"/lab/ecg-simclr/resolve/{commit}/model.weights.h5") in requests
    assert any(p.endswith("/DownloadModelInstanceVersion") for _, p in requests)
    assert any(p.startswith("/blobs/") for _, p in requests)

    hf, pinned = report["hf://lab/ecg-simclr"], report[f"hf://lab/ecg-simclr@{commit}"]
    assert hf["path"].startswith(str(tmp_path / "hf")) and commit in hf["path"]
    assert pinned["path"] == hf["path"]
    assert hf["class"] == "SimCLR"
    kaggle = report["kaggle://lab/ecg-simclr/keras/tiny"]
    assert kaggle["path"].startswith(str(tmp_path / "kaggle"))
    assert report["kaggle://lab/ecg-simclr/keras/tiny/2"]["path"] == kaggle["path"]
    for entry in (hf, kaggle):
        # Byte for byte the files of the preset (the README included).
        assert _digests(pathlib.Path(entry["path"])) == digests
    np.testing.assert_allclose(
        np.load(tmp_path / "online.npz")["arr_0"], expected, rtol=1e-5, atol=1e-5
    )
    assert "no revision 'v9'" in report["hf://lab/ecg-simclr@v9"]["error"]
    assert (
        "no Hugging Face model repository 'lab/missing'"
        in (report["hf://lab/missing"]["error"])
    )
    for handle in (
        "kaggle://lab/missing/keras/tiny",
        "kaggle://lab/ecg-simclr/keras/tiny/3",
    ):
        assert "no such Kaggle model, variation or version" in report[handle]["error"]

    # The server is gone: the second load comes from the caches.
    env["HF_HUB_OFFLINE"] = "1"
    offline = _run_child(
        [
            "hf://lab/ecg-simclr",
            "kaggle://lab/ecg-simclr/keras/tiny/2",
            "kaggle://lab/ecg-simclr/keras/tiny",
            "hf://lab/other",
        ],
        inputs,
        tmp_path / "offline.npz",
        env,
    )
    assert offline["hf://lab/ecg-simclr"]["path"] == hf["path"]
    assert offline["hf://lab/ecg-simclr"]["class"] == "SimCLR"
    assert offline["kaggle://lab/ecg-simclr/keras/tiny/2"]["path"] == kaggle["path"]
    np.testing.assert_allclose(
        np.load(tmp_path / "offline.npz")["arr_0"], expected, rtol=1e-5, atol=1e-5
    )
    unversioned = offline["kaggle://lab/ecg-simclr/keras/tiny"]["error"]
    assert "Kaggle cannot be reached" in unversioned
    assert "name the version" in unversioned
    missing = offline["hf://lab/other"]["error"]
    assert "offline mode (HF_HUB_OFFLINE) is on" in missing
    assert "not in the local cache" in missing


@pytest.mark.backend_agnostic
def test_local_handles(preset_folder, tmp_path):
    folder = preset_folder[0]
    assert presets.get_preset_dir(folder) == str(folder)
    assert presets.get_preset_dir(os.path.relpath(folder)) == str(folder)
    cases = {
        str(tmp_path / "absent"): "no such folder",
        str(folder / "config.json"): "is a file, not a folder",
        str(tmp_path): "metadata.json is missing; not a keras-ecg preset",
        "s3://bucket/preset": "unknown scheme 's3://'",
        "kaggle://owner/model": "expected kaggle://owner/model/framework/variation",
    }
    for handle, expected in cases.items():
        with pytest.raises(PresetError) as info:
            presets.get_preset_dir(handle)
        assert expected in str(info.value) and handle in str(info.value)
        assert "\n" not in str(info.value)
    with pytest.raises(TypeError, match="got int"):
        presets.get_preset_dir(3)


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    "package, handle",
    [("huggingface_hub", "hf://lab/x"), ("kagglehub", "kaggle://a/b/keras/c")],
)
def test_missing_hub_package_says_what_to_install(package, handle, monkeypatch):
    # A None entry makes `import package` raise ImportError, as when absent.
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(HubPackageError, match=r"pip install 'keras-ecg\[hub\]'"):
        presets.get_preset_dir(handle)


@pytest.mark.backend_agnostic
def test_preset_info(preset_folder):
    folder = preset_folder[0]
    info = presets.preset_info(folder)
    assert info["path"] == str(folder)
    assert info["components"] == ["backbone", "task", "preprocessor"]
    assert info["task"]["class_name"] == "SimCLR"
    assert info["backbone"]["registered_name"] == "keras_ecg>XResNet1D"
    assert info["backbone"]["config"]["widths"] == [16, 16]
    assert info["preprocessor"]["sampling_rate"] == 100
    assert info["preprocessor"]["standardized"] is True
    assert info["preprocessor"]["window_seconds"] == 2.0
    assert info["has_task_weights"] is True
    assert info["metadata"]["method"] == "simclr"
    assert "preprocessor" not in info["task"]["config"]
