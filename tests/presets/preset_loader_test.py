"""`save_to_preset` -> `from_preset` round trips on the active backend, and the
one-line errors of a bad preset."""

import json
import os
import shutil

import h5py
import keras
import numpy as np
import pytest

from keras_ecg import presets
from keras_ecg.models import BYOL
from keras_ecg.models import ECGClassifier
from keras_ecg.models import ECGPreprocessor
from keras_ecg.models import SimCLR
from keras_ecg.models.encoders import CPCEncoder
from keras_ecg.models.encoders import ECGTransformer
from keras_ecg.models.encoders import S4Encoder
from keras_ecg.models.encoders import S4TokenEncoder
from keras_ecg.models.encoders import XResNet1D
from keras_ecg.presets import PresetError
from tests.presets.preset_helpers import assert_same_outputs
from tests.presets.preset_helpers import assert_same_weights
from tests.presets.preset_helpers import classifier
from tests.presets.preset_helpers import method_model
from tests.presets.preset_helpers import randomize


def _round_trip(model, path, component="auto"):
    presets.save_to_preset(model, path)
    return presets.from_preset(path, component=component)


@pytest.mark.parametrize(
    "method, encoder",
    [
        ("simclr", None),
        ("cpc", None),
        ("byol", None),
        ("jepa", None),
        ("cpc", "s4"),
        ("jepa", "s4"),
    ],
)
def test_method_model_round_trip(method, encoder, tmp_path):
    model, x = method_model(method, encoder=encoder)
    loaded = _round_trip(model, tmp_path / method)
    assert type(loaded) is type(model)
    assert_same_weights(loaded, model)
    if method != "jepa":
        # JEPA's call draws fresh masks; its backbone is compared below.
        assert_same_outputs(loaded(x, training=False), model(x, training=False))
    assert loaded.preprocessor.get_config() == model.preprocessor.get_config()
    # The backbone alone, from the same preset.
    backbone = presets.from_preset(tmp_path / method, component="backbone")
    assert_same_weights(backbone, model.backbone)
    assert_same_outputs(backbone(x, training=False), model.backbone(x, training=False))


def test_byol_target_network_round_trips(tmp_path):
    model, _ = method_model("byol")
    online = [keras.ops.convert_to_numpy(w) for w in model.online_weights]
    target = [keras.ops.convert_to_numpy(w) for w in model.target_weights]
    # Random weights: the target differs from the online network, as after
    # training with an EMA.
    assert any(not np.array_equal(o, t) for o, t in zip(online, target))
    loaded = BYOL.from_preset(model.save_to_preset(tmp_path / "byol"))
    for expected, variable in zip(target, loaded.target_weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected)
    assert int(keras.ops.convert_to_numpy(loaded.ema_step)) == int(
        keras.ops.convert_to_numpy(model.ema_step)
    )


def test_classifier_round_trip_keeps_classes_and_preprocessing(tmp_path):
    model, x = classifier()
    loaded = ECGClassifier.from_preset(model.save_to_preset(tmp_path / "clf"))
    assert_same_weights(loaded, model)
    assert_same_outputs(loaded(x, training=False), model(x, training=False))
    assert loaded.class_names == ("NORM", "MI", "STTC")
    assert loaded.label_set == "superdiagnostic"
    assert loaded.preprocessor.get_config() == model.preprocessor.get_config()


@pytest.mark.parametrize(
    "encoder_class", ["xresnet", "cpc_encoder", "s4", "vit", "s4_tokens"]
)
def test_encoder_alone_round_trip(encoder_class, tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 160, 12)).astype("float32")
    if encoder_class == "xresnet":
        encoder = XResNet1D(block_depths=(1,), widths=(8,), stem_filters=(8,))
    elif encoder_class == "s4":
        encoder = S4Encoder(d_model=8, num_layers=1, d_state=4, pooling="avg")
        encoder.build((None, None, 12))
    elif encoder_class == "s4_tokens":
        encoder = S4TokenEncoder(patch_size=10, d_model=8, num_layers=1, d_state=4)
        encoder.build((None, None, 12))
    elif encoder_class == "vit":
        encoder = ECGTransformer(patch_size=10, hidden_dim=8, num_layers=1)
        encoder.build((None, None, 12))
    else:
        encoder = CPCEncoder(filters=(8, 8), kernel_sizes=(4, 4), strides=(2, 2))
        encoder.build((None, None, 12))
    randomize(encoder)
    encoder.save_to_preset(tmp_path / "enc")
    assert sorted(os.listdir(tmp_path / "enc")) == [
        "README.md",
        "config.json",
        "metadata.json",
        "model.weights.h5",
    ]
    loaded = type(encoder).from_preset(tmp_path / "enc")
    assert type(loaded) is type(encoder)
    assert_same_weights(loaded, encoder)
    assert_same_outputs(loaded(x, training=False), encoder(x, training=False))
    assert presets.from_preset(tmp_path / "enc").__class__ is type(encoder)


def test_preprocessor_component_and_fresh_weights(tmp_path):
    model, x = method_model("simclr")
    model.save_to_preset(tmp_path / "p")
    loaded = presets.from_preset(tmp_path / "p", component="preprocessor")
    assert isinstance(loaded, ECGPreprocessor)
    assert loaded.get_config() == model.preprocessor.get_config()
    fresh = presets.from_preset(tmp_path / "p", load_weights=False)
    assert type(fresh) is SimCLR
    # Same architecture, its own initial weights (not the random ones).
    assert [w.shape for w in fresh.weights] == [w.shape for w in model.weights]
    kernel = keras.ops.convert_to_numpy(fresh.backbone.weights[0])
    assert not np.allclose(
        kernel, keras.ops.convert_to_numpy(model.backbone.weights[0])
    )
    with pytest.raises(ValueError, match="unknown component 'head'"):
        presets.from_preset(tmp_path / "p", component="head")


def test_classifier_from_any_preset_backbone_with_new_head(tmp_path):
    model, x = method_model("simclr")
    model.save_to_preset(tmp_path / "simclr")
    clf = ECGClassifier.from_preset(tmp_path / "simclr", num_classes=4, pooling="avg")
    assert clf.num_classes == 4 and clf(x).shape == (2, 4)
    assert_same_weights(clf.backbone, model.backbone)
    assert clf.preprocessor.get_config() == model.preprocessor.get_config()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A SimCLR preset to damage, copied per test."""
    model, _ = method_model("simclr")
    return model.save_to_preset(tmp_path_factory.mktemp("saved") / "simclr")


def _copy(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "preset")


def _one_line_error(path, component="auto"):
    with pytest.raises(PresetError) as info:
        presets.from_preset(path, component=component)
    message = str(info.value)
    assert "\n" not in message
    assert f"preset {path}" in message
    return message


@pytest.mark.parametrize(
    "name, expected",
    [
        ("config.json", "config.json is missing; the preset is incomplete"),
        ("model.weights.h5", "model.weights.h5 is missing"),
        ("metadata.json", "metadata.json is missing; not a keras-ecg preset"),
    ],
)
def test_missing_file(saved, tmp_path, name, expected):
    path = _copy(saved, tmp_path)
    os.remove(path / name)
    assert expected in _one_line_error(path)


def test_missing_task_and_preprocessor_parts(saved, tmp_path):
    path = _copy(saved, tmp_path)
    os.remove(path / "task.json")
    os.remove(path / "preprocessor.json")
    assert "task.json is missing; the preset holds no task model" in _one_line_error(
        path, "task"
    )
    assert "preprocessor.json is missing" in _one_line_error(path, "preprocessor")
    # "auto" falls back to the backbone.
    assert isinstance(presets.from_preset(path), XResNet1D)


def test_corrupt_files(saved, tmp_path):
    path = _copy(saved, tmp_path)
    (path / "task.json").write_text('{"class_name": "SimCLR", "config": ')
    assert "task.json is not readable JSON" in _one_line_error(path, "task")
    (path / "task.json").write_text("[1, 2]")
    assert "task.json holds a list, expected a JSON object" in _one_line_error(path)
    (path / "model.weights.h5").write_bytes(b"not an HDF5 file")
    assert "model.weights.h5 does not fit the model" in _one_line_error(
        path, "backbone"
    )


def test_weights_of_another_architecture(saved, tmp_path):
    path = _copy(saved, tmp_path)
    other = XResNet1D(block_depths=(1,), widths=(8,), stem_filters=(8,))
    keras.saving.save_weights(other, str(path / "model.weights.h5"))
    message = _one_line_error(path, "backbone")
    assert "model.weights.h5 does not fit the model" in message
    with h5py.File(path / "model.weights.h5") as f:
        assert f  # a valid file, only the wrong weights


def test_newer_format_and_unknown_class(saved, tmp_path):
    path = _copy(saved, tmp_path)
    metadata = json.loads((path / "metadata.json").read_text())
    metadata["keras_ecg_preset_format"] = presets.FORMAT_VERSION + 1
    metadata["keras_ecg_version"] = "9.0.0"
    (path / "metadata.json").write_text(json.dumps(metadata))
    message = _one_line_error(path)
    assert f"preset format {presets.FORMAT_VERSION + 1}" in message
    assert "keras-ecg 9.0.0" in message and "upgrade keras-ecg" in message

    path = shutil.copytree(saved, tmp_path / "unknown")
    config = json.loads((path / "task.json").read_text())
    config["registered_name"] = "keras_ecg>FutureMethod"
    config["class_name"] = "FutureMethod"
    (path / "task.json").write_text(json.dumps(config))
    message = _one_line_error(path, "task")
    assert "task.json needs the class 'keras_ecg>FutureMethod'" in message


def test_task_weights_of_another_model(saved, tmp_path):
    path = _copy(saved, tmp_path)
    encoder = XResNet1D(block_depths=(1, 1), widths=(16, 16), stem_filters=(8, 8, 16))
    other = SimCLR(encoder)  # the default 512 -> 16 head, not the tiny one
    other(np.zeros((1, 250, 12), "float32"))
    other.save_to_preset(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "task.weights.h5", path / "task.weights.h5")
    message = _one_line_error(path, "task")
    assert "task.weights.h5 does not fit the model" in message
    # Keras' reason, from the line after its "...for object <...>:".
    assert "expected" in message and "variables" in message
