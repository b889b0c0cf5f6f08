"""`preset_info`: what a preset holds, read from its JSON files."""

import pytest

from keras_ecg import presets
from tests.presets.preset_helpers import method_model


@pytest.fixture(scope="module")
def preset_folder(tmp_path_factory):
    model, _ = method_model("simclr")
    folder = tmp_path_factory.mktemp("info") / "simclr"
    model.save_to_preset(folder)
    return folder


@pytest.mark.backend_agnostic
def test_preset_info(preset_folder):
    folder = preset_folder
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
