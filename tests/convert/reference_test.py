"""Reference Lightning checkpoints -> keras-ecg models, checked numerically.

Each test builds a stand-in of one of the reference's Lightning modules
(`reference_modules`: the reference's exact parameter names and shapes),
draws random weights and BatchNorm statistics, saves its state dict as
`Trainer.save_checkpoint` would, converts the file and compares the Keras
model's outputs with the PyTorch module's on the same batch, in eval mode,
to 1e-5. The PyTorch side gets the reference's lead order (I, II, V1-V6,
III, aVR, aVL, aVF), the Keras side keras-ecg's (I, II, III, aVR, aVL, aVF,
V1-V6).
"""

import argparse
import os
import sys

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from keras_ecg.convert import ReferenceCheckpointError
from keras_ecg.convert import convert_reference
from keras_ecg.convert import convert_reference_checkpoint
from keras_ecg.convert import read_reference_checkpoint
from keras_ecg.convert import reference
from keras_ecg.data.ecg_dataset import STANDARD_LEADS
from tests.convert import reference_modules as ref

# `clinical_ts.ecg_utils.channel_stoi_default` (written out here, not taken
# from the converter).
REFERENCE_ORDER = [
    "I",
    "II",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
    "III",
    "aVR",
    "aVL",
    "aVF",
]
ATOL = RTOL = 1e-5

# Objects a checkpoint may pickle whose unpickling would call code.
CALLS = []


def record_call(*args):
    CALLS.append(args)


class Trap:
    """Unpickling it with `pickle` would call `record_call`."""

    def __reduce__(self):
        return record_call, ("unpickled",)


def _inputs(length, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    x_reference = rng.normal(size=(batch, 12, length)).astype("float32")
    order = [REFERENCE_ORDER.index(name) for name in STANDARD_LEADS]
    x_keras = np.ascontiguousarray(x_reference.transpose(0, 2, 1)[:, :, order])
    return torch.from_numpy(x_reference), x_keras


def _reference_module(method, length, seed=0):
    torch.manual_seed(seed)
    module = ref.MODULES[method]()
    generator = torch.Generator().manual_seed(seed + 1)
    # Records of different amplitudes and baselines: BatchNorm statistics
    # of a varied batch (on near-identical records, a head's BatchNorm would
    # divide by a tiny spread and magnify float32 rounding).
    calibration = torch.randn(16, 12, length, generator=generator)
    amplitude = torch.exp(torch.randn(16, 1, 1, generator=generator))
    baseline = torch.randn(16, 12, 1, generator=generator)
    calibration = calibration * amplitude + baseline
    ref.randomize(module, generator, calibration)
    return module


def _save(tmp_path, module, name="model.ckpt", hyper_parameters=None, **extra):
    path = os.path.join(str(tmp_path), name)
    torch.save(ref.lightning_checkpoint(module, hyper_parameters, **extra), path)
    return path


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return keras.ops.convert_to_numpy(x)


def _close(actual, expected):
    np.testing.assert_allclose(_np(actual), _np(expected), rtol=RTOL, atol=ATOL)


def _normalize(x):
    x = _np(x)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_simclr_matches_the_reference_module(tmp_path):
    module = _reference_module("simclr", 250)
    hyper_parameters = {
        "batch_size": 4096,
        "config": {
            "model": {"out_dim": 16, "base_model": "xresnet1d50", "widen": 1.0},
            "trafos": ["RandomResizedCrop", "TimeOut"],
        },
        # Pickled objects of the training code, as the reference's
        # save_hyperparameters() stores its transformation objects.
        "transformations": [Trap()],
    }
    CALLS.clear()
    path = _save(tmp_path, module, hyper_parameters=hyper_parameters)
    conversion = convert_reference(path)
    assert CALLS == [], "reading the checkpoint ran code it pickles"
    model = conversion.model
    assert conversion.method == "simclr"
    x_reference, x_keras = _inputs(250)
    with torch.no_grad():
        features, projection = module(x_reference)
        raw_projection = module.projection.model(features)
    out = model(x_keras, training=False)
    _close(out["embeddings"], features)
    _close(out["projections"], raw_projection)
    _close(_normalize(out["projections"]), projection)

    metadata = conversion.metadata
    conversion_info = metadata["conversion"]
    assert list(conversion_info["folded_keys"]) == ["encoder.features.0.0.bias"]
    unused = conversion_info["unused_keys"]
    assert {"encoder.l1.weight", "encoder.l2.bias"} <= set(unused)
    # Every BatchNorm's counter, under both names of a ResBlock branch.
    assert "encoder.features.4.0.convs.0.1.num_batches_tracked" in unused
    assert "encoder.features.4.0.convpath.0.0.1.num_batches_tracked" in unused
    # ResBlock branches are saved twice (convs and convpath.0): 16 blocks x
    # 3 ConvLayers x (conv weight + 4 BatchNorm tensors).
    assert conversion_info["duplicate_keys"] == 16 * 3 * 5
    assert any(
        n.endswith("record_call")
        for n in conversion_info["pickled_classes_not_imported"]
    )
    assert metadata["source"]["epoch"] == 41
    assert metadata["paper_ptbxl_all_macro_auc"] == {"finetune": 0.927, "linear": 0.883}
    # Pretrained without Normalize: records in mV, no statistics.
    preprocessor = model.preprocessor
    assert preprocessor.sampling_rate == 100
    assert list(preprocessor.lead_names) == list(STANDARD_LEADS)
    assert preprocessor.mean is None and preprocessor.std is None
    assert preprocessor.window_length == 250 and preprocessor.stride == 125


def test_byol_online_and_target_networks_match_the_reference(tmp_path):
    module = _reference_module("byol", 250)
    path = _save(tmp_path, module)
    model = convert_reference_checkpoint(path, method="byol")
    x_reference, x_keras = _inputs(250)
    with torch.no_grad():
        online = module.online_network(x_reference)
        target = module.target_network(x_reference)
    assert not np.allclose(_np(online[1]), _np(target[1]))  # two networks
    out = model(x_keras, training=False)
    _close(out["embeddings"], online[0])
    _close(out["projections"], online[1])
    _close(out["predictions"], online[2])
    target_features = model.target_encoder(x_keras, training=False)
    _close(target_features, target[0])
    _close(model.target_projection_head(target_features, training=False), target[1])


def test_swav_matches_the_reference_module(tmp_path):
    module = _reference_module("swav", 250)
    path = _save(tmp_path, module)
    model = convert_reference_checkpoint(path)
    assert type(model).__name__ == "SwAV" and model.num_prototypes == 3000
    x_reference, x_keras = _inputs(250)
    with torch.no_grad():
        features, embedding, _ = module.model(x_reference)
        # The scores of the reference's next step: it first renormalises the
        # prototypes (CustomSwAV.shared_step).
        prototypes = F.normalize(module.model.prototypes.weight, dim=1)
        scores = embedding @ prototypes.T
    _close(model.encoder(x_keras, training=False), features)
    out = model(x_keras, training=False)
    _close(out["embeddings"][0], embedding)
    _close(out["scores"][0], scores)


def test_cpc_matches_the_reference_module(tmp_path):
    module = _reference_module("cpc", 40)
    # main_cpc_lightning.py assigns an argparse.Namespace to self.hparams.
    hyper_parameters = argparse.Namespace(
        executable="cpc",
        fc_encoder=True,
        normalize=True,
        steps_predicted=12,
        n_false_negatives=64,
        negatives_from_same_seq_only=True,
        mlp=False,
        gru=False,
        bias=False,
    )
    path = _save(tmp_path, module, hyper_parameters=hyper_parameters)
    conversion = convert_reference(path)
    model = conversion.model
    assert conversion.method == "cpc"
    assert model.num_negatives == 64 and model.prediction_steps == 12
    assert model.steps == (12,) and model.negatives_from == "sequence"
    x_reference, x_keras = _inputs(40)
    with torch.no_grad():
        encoded, context, predictions = module.model_cpc(x_reference)
    out = model(x_keras, training=False)
    _close(out["encodings"], encoded)
    _close(out["context"], context)
    _close(out["predictions"][:, :, 0, :], predictions)
    # --normalize: the reference's fixed PTB-XL statistics (values from
    # main_cpc_lightning.py), in keras-ecg's lead order.
    preprocessor = model.preprocessor
    v2 = STANDARD_LEADS.index("V2")
    avr = STANDARD_LEADS.index("aVR")
    assert preprocessor.mean[v2] == pytest.approx(-0.00091313)
    assert preprocessor.std[v2] == pytest.approx(0.33767231)
    assert preprocessor.mean[avr] == pytest.approx(0.00155546)
    assert preprocessor.std[avr] == pytest.approx(0.14030828)
    assert conversion.metadata["conversion"]["folded_keys"] == {}


@pytest.fixture(scope="module")
def cpc_state():
    return _reference_module("cpc", 16).state_dict()


@pytest.fixture(scope="module")
def paper_cpc():
    return reference._build("cpc", {})


@pytest.fixture
def built_once(monkeypatch, paper_cpc):
    """The error tests fail while copying weights, after the model is built:
    they share one build of the paper CPC (its weights are never read)."""
    monkeypatch.setattr(reference, "_build", lambda method, kwargs: paper_cpc)


def _save_state(tmp_path, state, **checkpoint):
    path = os.path.join(str(tmp_path), "edited.ckpt")
    torch.save({"state_dict": state, **checkpoint}, path)
    return path


def test_missing_key_is_named(tmp_path, cpc_state, built_once):
    state = dict(cpc_state)
    del state["model_cpc.rnn.weight_hh_l1"]
    with pytest.raises(ReferenceCheckpointError, match="'model_cpc.rnn.weight_hh_l1'"):
        convert_reference_checkpoint(_save_state(tmp_path, state))


def test_misshaped_key_is_named_with_both_shapes(tmp_path, cpc_state, built_once):
    state = dict(cpc_state, **{"model_cpc.proj.weight": torch.zeros(512, 256)})
    with pytest.raises(
        ReferenceCheckpointError,
        match=r"'model_cpc.proj.weight' has shape \(512, 256\), expected \(512, 512\)",
    ):
        convert_reference_checkpoint(_save_state(tmp_path, state))


def test_unexpected_key_is_an_error_not_dropped(tmp_path, cpc_state, built_once):
    # A predictor bias (--bias) would change the outputs: never dropped.
    state = dict(cpc_state, **{"model_cpc.proj.bias": torch.ones(512)})
    with pytest.raises(ReferenceCheckpointError, match="unexpected key.*proj.bias"):
        convert_reference_checkpoint(_save_state(tmp_path, state))


def test_method_must_match_the_checkpoint(tmp_path, cpc_state):
    path = _save_state(tmp_path, cpc_state)
    with pytest.raises(ReferenceCheckpointError, match="cpc module.*not simclr"):
        convert_reference_checkpoint(path, method="simclr")
    with pytest.raises(ReferenceCheckpointError, match="unknown method 'moco'"):
        convert_reference_checkpoint(path, method="moco")


def test_unsupported_cpc_configuration_is_refused(tmp_path, cpc_state):
    hyper_parameters = {"executable": "cpc", "fc_encoder": False}
    path = _save_state(tmp_path, cpc_state, hyper_parameters=hyper_parameters)
    with pytest.raises(ReferenceCheckpointError, match="strided convolutional"):
        convert_reference_checkpoint(path)


@pytest.mark.backend_agnostic
def test_files_that_are_not_reference_checkpoints(tmp_path):
    other = _save_state(tmp_path, {"backbone.weight": torch.zeros(2, 2)})
    with pytest.raises(ReferenceCheckpointError, match="not a checkpoint of the"):
        convert_reference_checkpoint(other)
    finetuned = _save_state(
        tmp_path, {"features.0.0.weight": torch.zeros(1), "l1.weight": torch.zeros(1)}
    )
    with pytest.raises(ReferenceCheckpointError, match="bare ResNetSimCLR state"):
        convert_reference_checkpoint(finetuned)
    cpc_classifier = _save_state(
        tmp_path, {"model_cpc.head.1.weight": torch.zeros(71, 1536)}
    )
    with pytest.raises(ReferenceCheckpointError, match="finetuned CPC classifier"):
        convert_reference_checkpoint(cpc_classifier)
    listing = os.path.join(str(tmp_path), "list.pt")
    torch.save([torch.zeros(2)], listing)
    with pytest.raises(ReferenceCheckpointError, match="no 'state_dict'"):
        convert_reference_checkpoint(listing)
    text = os.path.join(str(tmp_path), "notes.ckpt")
    with open(text, "w") as f:
        f.write("not a checkpoint")
    with pytest.raises(ReferenceCheckpointError, match="not a checkpoint written"):
        convert_reference_checkpoint(text)
    with pytest.raises(ReferenceCheckpointError, match="no such file"):
        convert_reference_checkpoint(os.path.join(str(tmp_path), "missing.ckpt"))


@pytest.mark.backend_agnostic
def test_reading_keeps_pickled_objects_inert(tmp_path):
    CALLS.clear()
    path = _save_state(
        tmp_path,
        {"model_cpc.proj.weight": torch.ones(3, 3)},
        hyper_parameters=argparse.Namespace(lr=1e-4, trap=Trap()),
        epoch=3,
    )
    checkpoint = read_reference_checkpoint(path)
    assert CALLS == []
    assert checkpoint.hyper_parameters["lr"] == 1e-4
    assert checkpoint.hyper_parameters["trap"].pickled_name.endswith("record_call")
    assert checkpoint.epoch == 3
    np.testing.assert_array_equal(
        checkpoint.state_dict["model_cpc.proj.weight"], np.ones((3, 3))
    )


@pytest.mark.backend_agnostic
def test_lightning_attribute_dict_is_read_as_a_dict(tmp_path, monkeypatch):
    # Lightning's AttributeDict, saved from a stand-in module that is gone
    # when the file is read: it is never imported.
    import types

    parsing = types.ModuleType("pytorch_lightning.utilities.parsing")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = parsing.__name__
    AttributeDict.__qualname__ = "AttributeDict"
    parsing.AttributeDict = AttributeDict
    for name in ("pytorch_lightning", "pytorch_lightning.utilities"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, parsing.__name__, parsing)
    hyper_parameters = AttributeDict(executable="cpc", n_false_negatives=32)
    path = _save_state(
        tmp_path,
        {"model_cpc.proj.weight": torch.ones(2, 2)},
        hyper_parameters=hyper_parameters,
    )
    monkeypatch.delitem(sys.modules, parsing.__name__)
    checkpoint = read_reference_checkpoint(path)
    assert checkpoint.hyper_parameters == {"executable": "cpc", "n_false_negatives": 32}
    assert type(checkpoint.hyper_parameters) is dict


class Blocked:
    """Pickles a call of a function from `os`."""

    def __reduce__(self):
        return os.getcwd, ()


@pytest.mark.backend_agnostic
def test_functions_of_blocked_modules_are_refused(tmp_path):
    path = _save_state(
        tmp_path,
        {"model_cpc.proj.weight": torch.ones(2, 2)},
        hyper_parameters=Blocked(),
    )
    with pytest.raises(ReferenceCheckpointError, match="cannot be read safely"):
        read_reference_checkpoint(path)


def test_keras_batch_norm_settings_are_checked_against_pytorchs():
    # A keras-ecg BatchNorm with Keras' defaults (epsilon 1e-3, momentum
    # 0.99) would compute another function than the reference's.
    bn = keras.layers.BatchNormalization()
    bn.build((None, 4))
    state = {f"bn.{name}": np.ones(4, "float32") for name in ("weight", "bias")}
    checkpoint = reference.ReferenceCheckpoint(path="x.ckpt", state_dict=state)
    reader = reference._StateDictReader(checkpoint)
    with pytest.raises(AssertionError, match="epsilon 0.001 / momentum 0.99"):
        reference._copy_batch_norm(reader, "bn.", bn)


@pytest.mark.backend_agnostic
def test_missing_torch_names_the_extra(tmp_path, monkeypatch):
    path = _save_state(tmp_path, {"model_cpc.proj.weight": torch.ones(2, 2)})
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    with pytest.raises(ImportError, match=r"keras-ecg\[torch\]"):
        read_reference_checkpoint(path)
