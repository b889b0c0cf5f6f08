"""What `save_to_preset` writes: keras-hub's file layout, which weights go to
which file, metadata.json, and how an earlier preset in the folder is
replaced."""

import datetime
import json
import os

import h5py
import keras
import numpy as np
import pytest

from keras_ecg import presets
from keras_ecg.models import ECGPreprocessor
from keras_ecg.models import build_method
from keras_ecg.models.encoders import XResNet1D
from keras_ecg.version import __version__
from tests.presets.preset_helpers import method_model


def _datasets(path):
    """Shapes of every array in an HDF5 weights file."""
    shapes = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                shapes.append(tuple(obj.shape))
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    return shapes


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_layout_and_what_each_weights_file_holds(tmp_path):
    model, _ = method_model("simclr")
    path = presets.save_to_preset(model, tmp_path / "simclr")
    assert sorted(os.listdir(path)) == [
        "README.md",
        "config.json",
        "metadata.json",
        "model.weights.h5",
        "preprocessor.json",
        "task.json",
        "task.weights.h5",
    ]
    # keras-hub: model.weights.h5 is the backbone, task.weights.h5 the rest.
    backbone = sorted(tuple(w.shape) for w in model.backbone.weights)
    assert sorted(_datasets(path / "model.weights.h5")) == backbone
    head = sorted(tuple(w.shape) for w in model.projection_head.weights)
    assert sorted(_datasets(path / "task.weights.h5")) == head
    config, task = _read(path / "config.json"), _read(path / "task.json")
    assert config["registered_name"] == "keras_ecg>XResNet1D"
    assert task["registered_name"] == "keras_ecg>SimCLR"
    assert task["config"]["encoder"]["config"] == config["config"]
    assert "compile_config" not in json.dumps(task)
    assert _read(path / "preprocessor.json")["config"]["mean"] == list(
        model.preprocessor.mean
    )


def test_metadata(tmp_path):
    model, _ = method_model("cpc")
    before = datetime.datetime.now().replace(microsecond=0)
    model.save_to_preset(tmp_path / "cpc", metadata={"description": "a test"})
    metadata = _read(tmp_path / "cpc" / "metadata.json")
    expected_backbone = sum(int(np.prod(w.shape)) for w in model.backbone.weights)
    expected_task = sum(int(np.prod(w.shape)) for w in model.weights)
    assert metadata["keras_ecg_preset_format"] == presets.FORMAT_VERSION
    assert metadata["keras_ecg_version"] == __version__
    assert metadata["keras_version"] == keras.version()
    assert metadata["backend"] == keras.backend.backend()
    assert metadata["parameter_count"] == expected_backbone
    assert metadata["task_parameter_count"] == expected_task
    assert expected_task > expected_backbone
    assert metadata["backbone_class"] == "Sequential"
    assert metadata["task_class"] == "keras_ecg>CPC"
    assert metadata["method"] == "cpc"
    assert metadata["description"] == "a test"
    saved = datetime.datetime.strptime(metadata["date_saved"], "%Y-%m-%d@%H:%M:%S")
    assert before <= saved <= datetime.datetime.now()


def test_bad_metadata_and_models_are_refused(tmp_path):
    model, _ = method_model("simclr")
    with pytest.raises(ValueError, match=r"\['backend'\] are written by"):
        model.save_to_preset(tmp_path / "a", metadata={"backend": "mine"})
    with pytest.raises(ValueError, match="JSON-serializable"):
        model.save_to_preset(tmp_path / "a", metadata={"x": object()})
    with pytest.raises(ValueError, match="must be a keras_ecg.models.ECGPreprocessor"):
        model.save_to_preset(tmp_path / "a", preprocessor="100 Hz")
    unbuilt = build_method("simclr", size="tiny")
    with pytest.raises(ValueError, match="SimCLR is not built"):
        presets.save_to_preset(unbuilt, tmp_path / "b")
    assert not os.path.exists(tmp_path / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        model.save_to_preset(tmp_path / "file")


def test_given_preprocessor_wins_in_both_files(tmp_path):
    model, _ = method_model("simclr")
    other = ECGPreprocessor(sampling_rate=500, window_seconds=5.0)
    model.save_to_preset(tmp_path / "p", preprocessor=other)
    assert _read(tmp_path / "p" / "preprocessor.json")["config"]["sampling_rate"] == 500
    loaded = presets.from_preset(tmp_path / "p")
    assert loaded.preprocessor.sampling_rate == 500
    assert loaded.preprocessor.window_seconds == 5.0
    # The model itself is unchanged.
    assert model.preprocessor.sampling_rate == 100


def test_resaving_replaces_the_earlier_preset(tmp_path):
    model, _ = method_model("simclr")
    path = tmp_path / "p"
    model.save_to_preset(path)
    (path / "notes.txt").write_text("mine")
    encoder = XResNet1D(block_depths=(1,), widths=(8,), stem_filters=(8,))
    encoder.save_to_preset(path)
    # The task files of the earlier save are gone, other files stay.
    assert sorted(os.listdir(path)) == [
        "README.md",
        "config.json",
        "metadata.json",
        "model.weights.h5",
        "notes.txt",
    ]
    assert isinstance(presets.from_preset(path), XResNet1D)
    assert "XResNet1D" in (path / "README.md").read_text()
    # A model card written by a person is kept.
    (path / "README.md").write_text("# My card\n")
    model.save_to_preset(path)
    assert (path / "README.md").read_text() == "# My card\n"
    assert not any(name.startswith(".keras-ecg-saving") for name in os.listdir(path))
