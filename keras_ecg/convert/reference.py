"""The paper's released PyTorch Lightning checkpoints as keras-ecg models.

Mehari & Strodthoff's reference code (hhi-aml/ecg-selfsupervised) saves its
pretrained models as PyTorch Lightning checkpoints. This module reads one
(without running any code it pickles, see `torch_checkpoint`), detects the
method, builds the same network with `build_method(method, size="paper")`
and copies every weight explicitly:

- Conv1d `(out, in, k)` -> Keras `Conv1D` kernel `(k, in, out)`; Linear
  `(out, in)` -> `Dense` kernel `(in, out)`.
- BatchNorm weight / bias / running mean / running variance -> gamma / beta /
  moving mean / moving variance. Both frameworks normalise with
  `(x - mean) / sqrt(var + eps)`; every keras-ecg BatchNorm filled here is
  checked to use PyTorch's defaults (epsilon 1e-5, momentum 0.9 = PyTorch's
  0.1). `num_batches_tracked` (PyTorch's step counter, only read when
  `momentum=None`) is not used.
- LSTM: PyTorch's gate blocks (i, f, g, o) are Keras' (i, f, c, o) in the same
  order (g = c, the cell candidate); kernels are transposed and PyTorch's two
  bias vectors summed into Keras' one.
- The reference's `ResNetSimCLR` replaces the first stem convolution by one
  WITH a bias; keras-ecg's xresnet has none. The bias is folded into the
  following BatchNorm: `BN(conv(x) + b)` with moving mean `m` equals
  `BN(conv(x))` with moving mean `m - b` in inference, and in training the
  batch mean cancels `b` exactly, so the moving mean keeps tracking the same
  quantity.
- Inputs: the reference orders its 12 leads I, II, V1-V6, III, aVR, aVL, aVF
  (`clinical_ts.ecg_utils.channel_stoi_default`). The input channels of the
  first layer are permuted so the converted model takes keras-ecg's order
  (`STANDARD_LEADS`: I, II, III, aVR, aVL, aVF, V1-V6) and computes exactly
  the reference's function.

Every key of the checkpoint is either copied, folded, a duplicate of a copied
one (PyTorch saves shared modules under each name: `convs` / `convpath.0`,
`model.features` / `model.model.features`), or listed as unused with the
reason; any other key, a missing key or a mis-shaped one is an error naming
it. Every weight of the Keras model is checked to have been written.
"""

import dataclasses
import hashlib
import os

import numpy as np

from keras_ecg.convert.torch_checkpoint import CheckpointReadError
from keras_ecg.convert.torch_checkpoint import PickledObject
from keras_ecg.convert.torch_checkpoint import load_torch_checkpoint
from keras_ecg.convert.torch_checkpoint import plain_data
from keras_ecg.data.ecg_dataset import STANDARD_LEADS

REFERENCE_REPOSITORY = "hhi-aml/ecg-selfsupervised"
REFERENCE_METHODS = ("simclr", "byol", "swav", "cpc")

# `clinical_ts.ecg_utils.channel_stoi_default`, used by every preprocessing
# function of the reference (PTB-XL, CinC, Zheng, Ribeiro) with 12 channels.
REFERENCE_LEADS = (
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
)
# The fixed "PTB-XL stats" (mV, REFERENCE_LEADS order) of the reference's CPC
# `--normalize` (`main_cpc_lightning.py`: "always use PTB-XL stats", for
# every dataset) and of its `Normalize` augmentation (`TNormalize`).
REFERENCE_PTBXL_MEAN = (
    -0.00184586,
    -0.00130277,
    0.00017031,
    -0.00091313,
    -0.00148835,
    -0.00174687,
    -0.00077071,
    -0.00207407,
    0.00054329,
    0.00155546,
    -0.00114379,
    -0.00035649,
)
REFERENCE_PTBXL_STD = (
    0.16401004,
    0.1647168,
    0.23374124,
    0.33767231,
    0.33362807,
    0.30583013,
    0.2731171,
    0.27554379,
    0.17128962,
    0.14030828,
    0.14606956,
    0.14656108,
)
SAMPLING_RATE = 100
# The reference's finetuning/evaluation windows: 250 samples, stride 125.
WINDOW_SECONDS = 2.5
STRIDE_SECONDS = 1.25

# The paper's PTB-XL "all statements" test macro AUCs (fold 10) of the
# released models pretrained on "All" (Mehari & Strodthoff 2022, as cited in
# kweimann/ECG-JEPA's README): finetuned / linear evaluation.
PAPER_PTBXL_ALL_MACRO_AUC = {
    "simclr": {"finetune": 0.927, "linear": 0.883},
    "byol": {"finetune": 0.929, "linear": 0.878},
    "cpc": {"finetune": 0.942, "linear": 0.927},
}

_MODULES = {
    "simclr": "custom_simclr_bolts.CustomSimCLR",
    "byol": "custom_byol_bolts.CustomBYOL",
    "swav": "custom_swav_bolts.CustomSwAV",
    "cpc": "main_cpc_lightning.LightningCPC",
}
# PyTorch's BatchNorm defaults, which the reference never changes.
_TORCH_BN_EPSILON = 1e-5
_KERAS_BN_MOMENTUM = 0.9  # PyTorch's momentum=0.1
# PyTorch LSTM gate blocks (i, f, g, o) in Keras' order (i, f, c, o).
_LSTM_GATES_TORCH_TO_KERAS = (0, 1, 2, 3)


class ReferenceCheckpointError(ValueError):
    """A checkpoint that is not one of the reference's, or does not match the
    configuration keras-ecg builds (the message names the file and key)."""


@dataclasses.dataclass
class ReferenceCheckpoint:
    """A reference Lightning checkpoint, read as data.

    Attributes:
        path: the file.
        state_dict: parameter and buffer name -> float32/int numpy array.
        hyper_parameters: Lightning's `hyper_parameters` as plain data (an
            `argparse.Namespace` becomes a dict), or None.
        epoch: the training epoch it was saved at, or None.
        global_step: the optimizer step it was saved at, or None.
        lightning_version: `pytorch-lightning_version`, or None.
        pickled_classes: names of the classes and functions the file pickles
            that were not imported (read as `PickledObject`s).
    """

    path: str
    state_dict: dict
    hyper_parameters: dict | None = None
    epoch: int | None = None
    global_step: int | None = None
    lightning_version: str | None = None
    pickled_classes: tuple = ()


@dataclasses.dataclass
class ReferenceConversion:
    """What `convert_reference` returns.

    Attributes:
        model: the keras-ecg model (`SimCLR`, `BYOL`, `SwAV` or `CPC`, built
            by `build_method(method, size="paper")`), its `preprocessor` set.
        method: `"simclr"`, `"byol"`, `"swav"` or `"cpc"`.
        metadata: JSON-serialisable description of the source, the input the
            model expects and how every checkpoint key was used.
    """

    model: object
    method: str
    metadata: dict


def read_reference_checkpoint(checkpoint_path):
    """Reads a reference checkpoint into numpy arrays and plain data.

    Accepts a Lightning checkpoint (a dict with `"state_dict"`) or a bare
    state dict with the Lightning module's key names.

    Args:
        checkpoint_path: path of the `.ckpt` file.

    Returns:
        A `ReferenceCheckpoint`.

    Raises:
        ReferenceCheckpointError: unreadable, or holds no state dict.
        ImportError: torch is not installed.
    """
    path = os.fspath(checkpoint_path)
    try:
        obj, foreign = load_torch_checkpoint(path)
    except CheckpointReadError as error:
        raise ReferenceCheckpointError(str(error)) from error
    import torch  # present: load_torch_checkpoint needed it

    if isinstance(obj, dict) and "state_dict" in obj:
        state = obj["state_dict"]
        info = obj
    elif (
        isinstance(obj, dict)
        and obj
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        state, info = obj, {}
    else:
        raise ReferenceCheckpointError(
            f"{path}: not a PyTorch Lightning checkpoint (no 'state_dict'; got "
            f"{_describe(obj)})."
        )
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ReferenceCheckpointError(
            f"{path}: 'state_dict' is not a mapping of names to tensors."
        )
    arrays = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        arrays[key] = tensor.numpy()
    hyper_parameters = plain_data(info.get("hyper_parameters"))
    if hyper_parameters is not None and not isinstance(hyper_parameters, dict):
        hyper_parameters = None
    return ReferenceCheckpoint(
        path=path,
        state_dict=arrays,
        hyper_parameters=hyper_parameters,
        epoch=_int_or_none(info.get("epoch")),
        global_step=_int_or_none(info.get("global_step")),
        lightning_version=_str_or_none(info.get("pytorch-lightning_version")),
        pickled_classes=tuple(foreign),
    )


def detect_reference_method(checkpoint):
    """The method of a `ReferenceCheckpoint`, from its keys and hyperparameters.

    Raises:
        ReferenceCheckpointError: the keys match none of the reference's
            SimCLR / BYOL / SwAV / CPC Lightning modules.
    """
    keys = checkpoint.state_dict.keys()

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    hparams = checkpoint.hyper_parameters or {}
    if has("model_cpc.") or hparams.get("executable") == "cpc":
        return "cpc"
    if has("online_network.") and has("target_network."):
        return "byol"
    if "model.prototypes.weight" in keys or has("model.projection_head."):
        return "swav"
    if has("encoder.features.") and has("projection.model."):
        return "simclr"
    if has("features.") and has("l1."):
        raise ReferenceCheckpointError(
            f"{checkpoint.path}: a bare ResNetSimCLR state dict (features.*, l1.*), "
            "e.g. a model finetuned by the reference's eval.py; keras-ecg converts "
            "the pretraining checkpoints of its Lightning modules: convert the "
            "pretrained checkpoint and finetune it with keras-ecg."
        )
    prefixes = sorted({k.split(".")[0] for k in keys})
    raise ReferenceCheckpointError(
        f"{checkpoint.path}: not a checkpoint of the reference's SimCLR, BYOL, "
        "SwAV or CPC Lightning modules (expected parameters under encoder + "
        "projection, online_network + target_network, model.prototypes or "
        f"model_cpc; found {', '.join(prefixes[:8]) or 'none'})."
    )


def convert_reference(checkpoint_path, method=None):
    """Converts a reference checkpoint; returns the model and its metadata.

    Args:
        checkpoint_path: a PyTorch Lightning checkpoint of
            hhi-aml/ecg-selfsupervised (`custom_simclr_bolts.py`,
            `custom_byol_bolts.py`, `custom_swav_bolts.py`,
            `main_cpc_lightning.py --fc-encoder`).
        method: `"simclr"`, `"byol"`, `"swav"` or `"cpc"`; None detects it
            from the checkpoint (a given method must match what it holds).

    Returns:
        A `ReferenceConversion`.

    Raises:
        ReferenceCheckpointError: unreadable file, not a reference
            checkpoint, another method than `method`, or a missing,
            mis-shaped or unexpected key (named in the message).
    """
    if method is not None and method not in REFERENCE_METHODS:
        raise ReferenceCheckpointError(
            f"unknown method {method!r}; expected one of {REFERENCE_METHODS}."
        )
    checkpoint = read_reference_checkpoint(checkpoint_path)
    detected = detect_reference_method(checkpoint)
    if method is not None and method != detected:
        raise ReferenceCheckpointError(
            f"{checkpoint.path}: holds the reference's {detected} module "
            f"({_MODULES[detected]}), not {method}."
        )
    method = detected
    settings = _SETTINGS[method](checkpoint)
    model = _build(method, settings.build_kwargs)
    reader = _StateDictReader(checkpoint)
    _COPY[method](reader, model)
    reader.finish(_converted_weights(method, model))
    model.preprocessor = _preprocessor(settings.standardized)
    metadata = _metadata(checkpoint, method, settings, reader)
    return ReferenceConversion(model=model, method=method, metadata=metadata)


def convert_reference_checkpoint(checkpoint_path, method=None):
    """A keras-ecg model with the weights of a reference checkpoint.

    The paper's released SimCLR, BYOL and CPC models (and any checkpoint of
    the reference's SwAV module) become the `build_method(method,
    size="paper")` model with every weight copied (see the module docstring
    for the mapping); `model.preprocessor` describes the input it expects
    (100 Hz, keras-ecg's lead order, the reference's standardisation).

    Args:
        checkpoint_path: path of the Lightning `.ckpt` file.
        method: `"simclr"`, `"byol"`, `"swav"`, `"cpc"` or None to detect it.

    Returns:
        The keras-ecg model; `convert_reference` also returns the metadata.

    Example:

    ```python
    model = convert_reference_checkpoint("simclr_all.ckpt")
    features = model.backbone(windows)  # (batch, 250, 12) in mV -> (batch, 512)
    ```
    """
    return convert_reference(checkpoint_path, method).model


# ----------------------------------------------------------------------------
# Settings read from the hyperparameters
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Settings:
    build_kwargs: dict
    standardized: bool
    standardization: str
    notes: list


def _xresnet_settings(checkpoint):
    hparams = checkpoint.hyper_parameters or {}
    config = hparams.get("config") if isinstance(hparams.get("config"), dict) else {}
    model_config = config.get("model") if isinstance(config.get("model"), dict) else {}
    base_model = model_config.get("base_model", "xresnet1d50")
    if base_model != "xresnet1d50":
        raise ReferenceCheckpointError(
            f"{checkpoint.path}: base_model {base_model!r}; keras-ecg's --size "
            "paper builds the reference's xresnet1d50."
        )
    widen = model_config.get("widen", 1.0)
    if widen is not None and float(widen) != 1.0:
        raise ReferenceCheckpointError(
            f"{checkpoint.path}: widen={widen}; keras-ecg's --size paper builds "
            "the reference's xresnet1d50 with widen=1."
        )
    trafos = config.get("trafos")
    normalize_classes = [
        name for name in checkpoint.pickled_classes if name.endswith(".TNormalize")
    ]
    notes = []
    if isinstance(trafos, (list, tuple)):
        standardized = "Normalize" in trafos or bool(normalize_classes)
        how = f"its pretraining transformations were {list(trafos)}"
    elif normalize_classes:
        standardized, how = True, "its transformations include TNormalize"
    else:
        standardized = False
        how = (
            "the checkpoint records no transformations; the paper's commands "
            "(README) pretrain with RandomResizedCrop + TimeOut, without Normalize"
        )
        notes.append("no pretraining transformations in the checkpoint")
    if standardized:
        text = (
            "standardised with the reference's fixed PTB-XL statistics "
            f"(its Normalize transformation; {how}); the preprocessor holds them"
        )
    else:
        text = (
            "none: the reference feeds the records in mV, unstandardised "
            f"({how}); the preprocessor holds no statistics (inputs stay in mV)"
        )
    return _Settings({}, standardized, text, notes)


def _cpc_settings(checkpoint):
    if any(k.startswith("model_cpc.head.") for k in checkpoint.state_dict):
        raise ReferenceCheckpointError(
            f"{checkpoint.path}: a finetuned CPC classifier (model_cpc.head.*); "
            "keras-ecg converts the pretraining checkpoint (model_cpc.proj): "
            "convert that and finetune it with keras-ecg."
        )
    hparams = checkpoint.hyper_parameters
    notes = []
    if hparams is None:
        notes.append(
            "no hyperparameters in the checkpoint: the paper's CPC command "
            "(README A1: --fc-encoder --normalize --negatives-from-same-seq-only, "
            "12 steps, 128 negatives) is assumed"
        )
        hparams = {}
    unsupported = {
        "fc_encoder": (False, "the strided convolutional encoder"),
        "mlp": (True, "an MLP predictor (--mlp)"),
        "gru": (True, "a GRU context (--gru)"),
        "bias": (True, "a predictor with bias (--bias)"),
        "skip_encoder": (True, "no encoder (--skip-encoder)"),
        "no_bn_encoder": (True, "an encoder without BatchNorm (--no-bn-encoder)"),
        "finetune": (True, "a finetuned classifier (--finetune)"),
    }
    for key, (bad, what) in unsupported.items():
        if key in hparams and bool(hparams[key]) == bad:
            raise ReferenceCheckpointError(
                f"{checkpoint.path}: a CPC with {what}; keras-ecg's --size paper "
                "builds the reference's --fc-encoder CPC (4 x 512 BatchNorm "
                "encoder, 2 x 512 LSTM, bias-free linear predictor)."
            )
    build_kwargs = {
        "prediction_steps": int(hparams.get("steps_predicted", 12)),
        "num_negatives": int(hparams.get("n_false_negatives", 128)),
        "negatives_from": "sequence"
        if hparams.get("negatives_from_same_seq_only", True)
        else "batch",
    }
    standardized = bool(hparams.get("normalize", True))
    if standardized:
        text = (
            "standardised with the reference's fixed PTB-XL statistics "
            "(main_cpc_lightning.py --normalize uses them for every dataset); "
            "the preprocessor holds them"
        )
    else:
        text = (
            "none: pretrained without --normalize, on records in mV; the "
            "preprocessor holds no statistics (inputs stay in mV)"
        )
    return _Settings(build_kwargs, standardized, text, notes)


_SETTINGS = {
    "simclr": _xresnet_settings,
    "byol": _xresnet_settings,
    "swav": _xresnet_settings,
    "cpc": _cpc_settings,
}


def _build(method, build_kwargs):
    from keras_ecg.models.method_factory import build_method

    model = build_method(method, size="paper", input_leads=12, **build_kwargs)
    # Eagerly, so BYOL's target is built (and marked synced) now.
    model.build((None, None, len(STANDARD_LEADS)))
    return model


def _preprocessor(standardized):
    from keras_ecg.models.ecg_preprocessor import ECGPreprocessor

    if standardized:
        order = _lead_permutation()
        mean = [REFERENCE_PTBXL_MEAN[i] for i in order]
        std = [REFERENCE_PTBXL_STD[i] for i in order]
    else:
        # No statistics: the reference's input is unstandardised mV, which
        # every keras-ecg pipeline then keeps.
        mean = std = None
    return ECGPreprocessor(
        sampling_rate=SAMPLING_RATE,
        lead_names=STANDARD_LEADS,
        mean=mean,
        std=std,
        window_seconds=WINDOW_SECONDS,
        stride_seconds=STRIDE_SECONDS,
    )


def _lead_permutation():
    """Reference channel index of each keras-ecg input channel."""
    return [REFERENCE_LEADS.index(name) for name in STANDARD_LEADS]


# ----------------------------------------------------------------------------
# Weight copying
# ----------------------------------------------------------------------------


class _StateDictReader:
    """Hands out checkpoint arrays by key and accounts for every key."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.state = checkpoint.state_dict
        self.used = set()
        self.folded = {}
        self.ignored = {}
        self.duplicates = {}
        self.aliases = []  # (canonical substring, alias substring)
        self.written = set()

    def get(self, key, shape):
        """The array under `key`, checked to have the PyTorch `shape`."""
        value = self.state.get(key)
        if value is None:
            found = [a for a in self._aliases(key) if a in self.state]
            if not found:
                raise ReferenceCheckpointError(
                    f"{self.checkpoint.path}: missing key {key!r} (a tensor of "
                    f"shape {tuple(shape)} in the reference configuration "
                    "keras-ecg builds)."
                )
            key, value = found[0], self.state[found[0]]
        if tuple(value.shape) != tuple(shape):
            raise ReferenceCheckpointError(
                f"{self.checkpoint.path}: key {key!r} has shape "
                f"{tuple(value.shape)}, expected {tuple(shape)} (the reference "
                "configuration keras-ecg builds, `--size paper`)."
            )
        self.used.add(key)
        for alias in self._aliases(key):
            if alias in self.state and alias not in self.used:
                if not np.array_equal(self.state[alias], value):
                    raise ReferenceCheckpointError(
                        f"{self.checkpoint.path}: {alias!r} differs from {key!r}; "
                        "the reference module holds one tensor under both names."
                    )
                self.used.add(alias)
                self.duplicates[alias] = key
        return value

    def _aliases(self, key):
        keys = {key}
        for canonical, alias in self.aliases:
            keys |= {k.replace(canonical, alias, 1) for k in keys if canonical in k}
        keys.discard(key)
        return sorted(keys)

    def ignore(self, key, reason):
        if key in self.state:
            self.used.add(key)
            self.ignored[key] = reason
        for alias in self._aliases(key):
            if alias in self.state:
                self.used.add(alias)
                self.ignored[alias] = reason

    def ignore_prefix(self, prefix, reason):
        for key in self.state:
            if key.startswith(prefix) and key not in self.used:
                self.ignore(key, reason)

    def assign(self, variable, value):
        value = np.asarray(value, dtype=variable.dtype)
        if tuple(variable.shape) != value.shape:
            raise AssertionError(
                f"keras-ecg variable {variable.path} has shape "
                f"{tuple(variable.shape)}, mapped value {value.shape}."
            )
        variable.assign(value)
        self.written.add(id(variable))

    def finish(self, variables):
        unexpected = sorted(set(self.state) - self.used)
        if unexpected:
            shown = ", ".join(unexpected[:5])
            more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
            raise ReferenceCheckpointError(
                f"{self.checkpoint.path}: unexpected key(s) {shown}{more}: the "
                "checkpoint's model differs from the reference configuration "
                "keras-ecg builds (`--size paper`)."
            )
        missed = [v.path for v in variables if id(v) not in self.written]
        if missed:
            raise AssertionError(f"keras-ecg weights left unconverted: {missed}")


def _copy_conv(reader, key, conv, permute_inputs=False):
    kernel_size, in_channels, filters = tuple(conv.kernel.shape)
    weight = reader.get(key, (filters, in_channels, kernel_size))
    kernel = weight.transpose(2, 1, 0)  # (out, in, k) -> (k, in, out)
    if permute_inputs:
        kernel = kernel[:, _lead_permutation(), :]
    reader.assign(conv.kernel, kernel)
    if conv.use_bias:
        reader.assign(conv.bias, reader.get(key[: -len("weight")] + "bias", (filters,)))


def _copy_batch_norm(reader, prefix, bn, input_bias=None, bias_key=None):
    """PyTorch BatchNorm at `prefix` -> Keras `bn`; `input_bias` (a bias added
    just before it, under `bias_key`) is folded into the moving mean."""
    if abs(bn.epsilon - _TORCH_BN_EPSILON) > 1e-12 or (
        abs(bn.momentum - _KERAS_BN_MOMENTUM) > 1e-12
    ):
        raise AssertionError(
            f"keras-ecg BatchNorm {bn.path} has epsilon {bn.epsilon} / momentum "
            f"{bn.momentum}; the reference's are PyTorch's 1e-5 / 0.1 (Keras 0.9)."
        )
    (channels,) = tuple(bn.gamma.shape)
    shape = (channels,)
    reader.assign(bn.gamma, reader.get(prefix + "weight", shape))
    reader.assign(bn.beta, reader.get(prefix + "bias", shape))
    moving_mean = reader.get(prefix + "running_mean", shape)
    if input_bias is not None:
        # In float64, rounded once when assigned.
        moving_mean = moving_mean.astype(np.float64) - input_bias
        reader.folded[bias_key] = (
            f"bias of the conv before {prefix[:-1]}: subtracted from its "
            f"running_mean (keras-ecg's {bn.path} has no conv bias)"
        )
    reader.assign(bn.moving_mean, moving_mean)
    reader.assign(bn.moving_variance, reader.get(prefix + "running_var", shape))
    reader.ignore(
        prefix + "num_batches_tracked",
        "PyTorch's BatchNorm step counter (only used with momentum=None)",
    )


def _copy_dense(reader, prefix, dense):
    in_features, units = tuple(dense.kernel.shape)
    reader.assign(dense.kernel, reader.get(prefix + "weight", (units, in_features)).T)
    if dense.use_bias:
        reader.assign(dense.bias, reader.get(prefix + "bias", (units,)))


def _copy_xresnet(reader, prefix, encoder):
    """`ResNetSimCLR.features` (fastai xresnet1d) at `prefix` -> `XResNet1D`.

    `features` holds the stem ConvLayers (0..2: conv, BN), the max pool, one
    Sequential of ResBlocks per stage and the concat pooling. A ResBlock
    keeps its branch as `convs` (also reachable as `convpath.0`) and its
    shortcut as `idpath` (`[AvgPool] [ConvLayer]`, the pool first).
    """
    for i in range(len(encoder.stem_filters)):
        conv = encoder.get_layer(f"stem_{i + 1}_conv")
        bn = encoder.get_layer(f"stem_{i + 1}_bn")
        key = f"{prefix}{i}.0."
        _copy_conv(reader, key + "weight", conv, permute_inputs=i == 0)
        bias = bias_key = None
        if i == 0:
            # ResNetSimCLR's replacement stem conv has a bias.
            bias_key = key + "bias"
            bias = reader.get(bias_key, (conv.filters,))
        _copy_batch_norm(reader, f"{prefix}{i}.1.", bn, bias, bias_key)
    first_stage = len(encoder.stem_filters) + 1  # after the max pool
    convs = 3 if encoder.expansion > 1 else 2
    layer_names = {layer.name for layer in encoder.layers}
    for stage, depth in enumerate(encoder.block_depths):
        for block in range(depth):
            name = f"stage{stage + 1}_block{block + 1}"
            block_prefix = f"{prefix}{first_stage + stage}.{block}."
            for j in range(convs):
                _copy_conv(
                    reader,
                    f"{block_prefix}convs.{j}.0.weight",
                    encoder.get_layer(f"{name}_{j + 1}_conv"),
                )
                _copy_batch_norm(
                    reader,
                    f"{block_prefix}convs.{j}.1.",
                    encoder.get_layer(f"{name}_{j + 1}_bn"),
                )
            if f"{name}_shortcut_conv" in layer_names:
                strided = stage > 0 and block == 0
                idpath = f"{block_prefix}idpath.{1 if strided else 0}."
                _copy_conv(
                    reader,
                    idpath + "0.weight",
                    encoder.get_layer(f"{name}_shortcut_conv"),
                )
                _copy_batch_norm(
                    reader, idpath + "1.", encoder.get_layer(f"{name}_shortcut_bn")
                )


def _ignore_simclr_heads(reader, prefix):
    """ResNetSimCLR's `l1` / `l2` at `prefix` (e.g. `"encoder."`)."""
    for head in ("l1.", "l2."):
        reader.ignore_prefix(
            prefix + head,
            "ResNetSimCLR's own l1/l2 head: unused by the Lightning module's "
            "forward and loss (never trained; the finetuning code replaces it)",
        )


def _copy_head(reader, prefix, head, first, last):
    """A `ProjectionHead` from `nn.Sequential` indices (first Linear, last
    Linear); a BatchNorm, if any, sits at `first + 1`."""
    _copy_dense(reader, f"{prefix}{first}.", head.hidden_layers[0])
    if head.use_batch_norm:
        _copy_batch_norm(reader, f"{prefix}{first + 1}.", head.batch_norms[0])
    _copy_dense(reader, f"{prefix}{last}.", head.output_layer)


def _copy_simclr(reader, model):
    reader.aliases = [(".convs.", ".convpath.0.")]
    _copy_xresnet(reader, "encoder.features.", model.encoder)
    _ignore_simclr_heads(reader, "encoder.")
    # Projection.model: Flatten, Linear, ReLU, Linear (no BatchNorm).
    _copy_head(reader, "projection.model.", model.projection_head, 1, 3)


def _copy_byol(reader, model):
    reader.aliases = [(".convs.", ".convpath.0.")]
    arms = (
        ("online_network.", model.encoder, model.projection_head),
        ("target_network.", model.target_encoder, model.target_projection_head),
    )
    for prefix, encoder, projector in arms:
        _copy_xresnet(reader, prefix + "encoder.features.", encoder)
        _ignore_simclr_heads(reader, prefix + "encoder.")
        # MLP.model: Linear (no bias), BatchNorm, ReLU, Linear.
        _copy_head(reader, prefix + "projector.model.", projector, 0, 3)
    _copy_head(reader, "online_network.predictor.model.", model.prediction_head, 0, 3)
    reader.ignore_prefix(
        "target_network.predictor.",
        "the target network's predictor: BYOL never uses it (keras-ecg's BYOL "
        "has no target predictor)",
    )


def _copy_swav(reader, model):
    # CustomResNet keeps ResNetSimCLR as `model` and its features also as
    # `features`: the same modules under model.features and model.model.features.
    reader.aliases = [
        ("model.features.", "model.model.features."),
        (".convs.", ".convpath.0."),
    ]
    _copy_xresnet(reader, "model.features.", model.encoder)
    _ignore_simclr_heads(reader, "model.model.")
    # projection_head: Linear, BatchNorm, ReLU, Linear.
    _copy_head(reader, "model.projection_head.", model.projection_head, 0, 3)
    prototypes = model.prototypes.prototypes
    dim, count = tuple(prototypes.shape)
    # nn.Linear(dim, count, bias=False): (count, dim); keras stores (dim, count).
    reader.assign(prototypes, reader.get("model.prototypes.weight", (count, dim)).T)


def _copy_cpc(reader, model):
    encoder, context = model.encoder, model.context
    # CPCEncoder: one Sequential(Conv1d (no bias), BatchNorm, ReLU) per layer.
    for i, conv in enumerate(encoder.conv_layers):
        _copy_conv(reader, f"model_cpc.encoder.{i}.0.weight", conv, i == 0)
        _copy_batch_norm(reader, f"model_cpc.encoder.{i}.1.", encoder.norm_layers[i])
    for layer, lstm in enumerate(context.lstm_layers):
        cell = lstm.cell
        inputs, gates = tuple(cell.kernel.shape)
        units = gates // 4
        suffix = f"_l{layer}"
        w_ih = reader.get(f"model_cpc.rnn.weight_ih{suffix}", (gates, inputs))
        w_hh = reader.get(f"model_cpc.rnn.weight_hh{suffix}", (gates, units))
        b_ih = reader.get(f"model_cpc.rnn.bias_ih{suffix}", (gates,))
        b_hh = reader.get(f"model_cpc.rnn.bias_hh{suffix}", (gates,))
        reader.assign(cell.kernel, _keras_gates(w_ih.T, units))
        reader.assign(cell.recurrent_kernel, _keras_gates(w_hh.T, units))
        reader.assign(cell.bias, _keras_gates(b_ih + b_hh, units))
    # proj: Linear(n_hidden, encoder_output_dim, bias=False); keras-ecg's
    # predictor for the single step k = steps_predicted.
    predictor = model.predictor
    hidden, out = tuple(predictor.kernel.shape)
    reader.assign(
        predictor.kernel, reader.get("model_cpc.proj.weight", (out, hidden)).T
    )


def _keras_gates(value, units):
    """Reorders the 4 gate blocks on the last axis from PyTorch's to Keras'."""
    blocks = [value[..., g * units : (g + 1) * units] for g in range(4)]
    return np.concatenate([blocks[g] for g in _LSTM_GATES_TORCH_TO_KERAS], axis=-1)


_COPY = {
    "simclr": _copy_simclr,
    "byol": _copy_byol,
    "swav": _copy_swav,
    "cpc": _copy_cpc,
}


def _converted_weights(method, model):
    """Every Keras variable the conversion must have written."""
    if method == "simclr":
        parts = [model.encoder, model.projection_head]
    elif method == "byol":
        parts = [
            model.encoder,
            model.projection_head,
            model.prediction_head,
            model.target_encoder,
            model.target_projection_head,
        ]
    elif method == "swav":
        parts = [model.encoder, model.projection_head, model.prototypes]
    else:
        parts = [model.encoder, model.context, model.predictor]
    return [v for part in parts for v in part.weights]


# ----------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------

_DEVIATIONS = {
    "simclr": [],
    "byol": [
        "the reference's EMA update (BYOLMAWeightUpdate) averages only "
        "parameters named 'weight' (its target biases and BatchNorm betas stay "
        "at their initial values); keras-ecg's BYOL averages every trainable "
        "target variable. The converted target holds the checkpoint's values; "
        "further keras-ecg training follows keras-ecg's rule",
    ],
    "swav": [
        "the reference normalises the prototypes at the start of each training "
        "step; keras-ecg's SwAVPrototypes normalise in the forward pass, so the "
        "scores equal the reference's after its renormalisation",
    ],
    "cpc": [
        "keras-ecg's CPC loss averages over positions where the reference sums "
        "them (a constant factor)",
    ],
}
_COMMON_DEVIATIONS = [
    "BatchNorm in training mode: PyTorch updates the running variance with the "
    "unbiased batch variance, Keras with the biased one (training only)",
]


def _metadata(checkpoint, method, settings, reader):
    order = _lead_permutation()
    return {
        "format": "keras-ecg reference conversion 1",
        "method": method,
        "source": {
            "repository": REFERENCE_REPOSITORY,
            "module": _MODULES[method],
            "checkpoint": os.path.basename(checkpoint.path),
            "sha256": _sha256(checkpoint.path),
            "epoch": checkpoint.epoch,
            "global_step": checkpoint.global_step,
            "pytorch_lightning_version": checkpoint.lightning_version,
        },
        "model": {
            "build": f'build_method("{method}", size="paper")',
            "settings": dict(settings.build_kwargs),
        },
        "input": {
            "sampling_rate": SAMPLING_RATE,
            "units": "mV",
            "lead_names": list(STANDARD_LEADS),
            "reference_lead_order": list(REFERENCE_LEADS),
            # Input channel j of the converted model is the reference's
            # channel reference_channel_of_input[j] (first kernel permuted).
            "reference_channel_of_input": order,
            "window_seconds": WINDOW_SECONDS,
            "stride_seconds": STRIDE_SECONDS,
            "standardization": settings.standardization,
            "standardization_statistics_in_checkpoint": False,
        },
        "conversion": {
            "folded_keys": dict(sorted(reader.folded.items())),
            "unused_keys": dict(sorted(reader.ignored.items())),
            "duplicate_keys": len(reader.duplicates),
            "pickled_classes_not_imported": list(checkpoint.pickled_classes),
            "notes": list(settings.notes),
        },
        "known_differences": _COMMON_DEVIATIONS + _DEVIATIONS[method],
        "paper_ptbxl_all_macro_auc": PAPER_PTBXL_ALL_MACRO_AUC.get(method),
    }


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _int_or_none(value):
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _str_or_none(value):
    return None if value is None else str(value)


def _describe(obj):
    if isinstance(obj, dict):
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        return f"a dict with keys {keys}" if keys else "an empty dict"
    if isinstance(obj, PickledObject):
        return f"a pickled {obj.pickled_name}"
    return f"a {type(obj).__name__}"
