"""fastai's xresnet adapted to 1D ECG, as used by Mehari & Strodthoff (2022)."""

import keras
import numpy as np

from keras_ecg.distribute import torch_backend
from keras_ecg.layers.global_pooling import GlobalPooling1D
from keras_ecg.presets.preset_mixin import PresetMixin
from keras_ecg.utils import is_eager_torch_tensor

ENCODER_POOLING_MODES = ("concat", "avg", "max", None)


def _kaiming_normal():
    # torch's `kaiming_normal_` (fan_in, gain sqrt(2), untruncated), as fastai.
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal"
    )


class _ConvBN:
    """One fastai `ConvLayer` of the graph, kept for the torch fast path."""

    def __init__(self, conv, bn, strides, pad, activation):
        self.conv = conv
        self.bn = bn
        self.strides = strides
        self.pad = pad
        self.activation = activation


def _conv_bn(
    x, filters, kernel_size, strides, name, activation=True, zero=False, plan=None
):
    """fastai `ConvLayer`: conv (no bias) -> BN -> [ReLU].

    Symmetric `(k - 1) // 2` zero padding then a valid conv reproduces torch's
    padding exactly (Keras "same" pads asymmetrically with stride 2). The
    layers are appended to `plan` (a list) as a `_ConvBN`.
    """
    pad = (kernel_size - 1) // 2
    if pad:
        x = keras.layers.ZeroPadding1D(pad, name=f"{name}_pad")(x)
    conv = keras.layers.Conv1D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        use_bias=False,
        kernel_initializer=_kaiming_normal(),
        name=f"{name}_conv",
    )
    # fastai: beta starts at 1e-3; gamma at 0 for the last BN of a residual
    # branch so every block starts as the identity ("BatchZero").
    bn = keras.layers.BatchNormalization(
        momentum=0.9,
        epsilon=1e-5,
        beta_initializer=keras.initializers.Constant(1e-3),
        gamma_initializer="zeros" if zero else "ones",
        name=f"{name}_bn",
    )
    x = bn(conv(x))
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    if plan is not None:
        plan.append(_ConvBN(conv, bn, strides, pad, activation))
    return x


def _res_block(x, in_channels, width, expansion, strides, kernel_size, name):
    """Basic (expansion 1) or bottleneck (expansion > 1) block, ResNet-D shortcut.

    Returns the block output and its `_Block` plan for the torch fast path.
    """
    out_channels = width * expansion
    branch, projection = [], []
    if expansion == 1:
        y = _conv_bn(x, width, kernel_size, strides, f"{name}_1", plan=branch)
        y = _conv_bn(
            y, out_channels, kernel_size, 1, f"{name}_2", False, True, plan=branch
        )
    else:
        y = _conv_bn(x, width, 1, 1, f"{name}_1", plan=branch)
        y = _conv_bn(y, width, kernel_size, strides, f"{name}_2", plan=branch)
        y = _conv_bn(y, out_channels, 1, 1, f"{name}_3", False, True, plan=branch)
    shortcut = x
    if strides != 1:
        # ResNet-D: downsample by average pooling, not by a strided 1x1 conv.
        # "same" averages only real samples, i.e. torch's ceil_mode=True.
        shortcut = keras.layers.AveragePooling1D(
            2, strides=2, padding="same", name=f"{name}_shortcut_pool"
        )(shortcut)
    if in_channels != out_channels:
        shortcut = _conv_bn(
            shortcut,
            out_channels,
            1,
            1,
            f"{name}_shortcut",
            activation=False,
            plan=projection,
        )
    x = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    x = keras.layers.ReLU(name=f"{name}_out")(x)
    return x, _Block(branch, strides != 1, projection[0] if projection else None)


class _Block:
    """A residual block of the graph, kept for the torch fast path."""

    def __init__(self, branch, pool_shortcut, projection):
        self.branch = branch
        self.pool_shortcut = pool_shortcut
        self.projection = projection


class _TorchPlan:
    """The same network, run on the torch backend with plain torch ops.

    Keras' torch backend runs each layer call through Python bookkeeping
    (~0.1-0.4 ms per call, more than the kernels of a small batch) and
    computes BatchNorm from ~15 separate ops; it also permutes every conv
    input from channels-last to torch's channels-first and back. This path
    runs the identical computation channels-first end to end with
    `torch.nn.functional` on the layers' own variables (so gradients,
    weights, BN moving statistics and saved files are exactly those of the
    Keras graph); the Keras graph stays the definition, used on the other
    backends, for symbolic calls and for any non-float32 dtype policy.
    """

    def __init__(self, stem, blocks):
        self.stem = stem
        self.blocks = blocks
        # Tests switch it off to compare with the Keras graph.
        self.enabled = True

    def applies(self, model, inputs, mask):
        if not self.enabled or mask is not None:
            return False
        return (
            is_eager_torch_tensor(inputs)
            and inputs.ndim == 3
            and model.dtype_policy.name == "float32"
        )

    def __call__(self, model, inputs, training):
        import torch
        import torch.nn.functional as F

        x = inputs.to(torch.float32).transpose(1, 2)  # (B, C, T)
        for unit in self.stem:
            x = _torch_conv_bn(x, unit, training)
        # Post-ReLU activations are >= 0: same as the graph's zero padding.
        x = F.max_pool1d(x, 3, stride=2, padding=1)
        for block in self.blocks:
            y = x
            for unit in block.branch:
                y = _torch_conv_bn(y, unit, training)
            shortcut = x
            if block.pool_shortcut:
                # Keras "same" average pooling counts only real samples.
                shortcut = F.avg_pool1d(shortcut, 2, stride=2, ceil_mode=True)
            if block.projection is not None:
                shortcut = _torch_conv_bn(shortcut, block.projection, training)
            # In place: neither the sum nor BN's output is saved for backward.
            x = torch.relu_(y + shortcut)
        pooling = model.pooling
        if pooling is None:
            return x.transpose(1, 2)
        if pooling == "avg":
            return x.mean(dim=2)
        if pooling == "max":
            return x.amax(dim=2)
        return torch.cat([x.amax(dim=2), x.mean(dim=2)], dim=1)


def _torch_conv_bn(x, unit, training):
    import torch
    import torch.nn.functional as F

    # Keras kernels are (k, in, out); torch wants (out, in, k).
    kernel = unit.conv.kernel.value.permute(2, 1, 0)
    x = F.conv1d(x, kernel, stride=unit.strides, padding=unit.pad)
    bn = unit.bn
    gamma, beta = bn.gamma.value, bn.beta.value
    if training and bn.trainable:
        # Batch statistics; Keras' moving-average update with the biased
        # variance (torch's own running update would use the unbiased one).
        if torch_backend.synchronizes(bn):
            # Synchronised BatchNorm in a multi-process step: global moments.
            mean, variance = torch_backend.global_moments(x, axes=(0, 2))
            scale = torch.rsqrt(variance + bn.epsilon) * gamma
            x = x * scale[:, None] + (beta - mean * scale)[:, None]
        else:
            x, mean, inv_std = torch.native_batch_norm(
                x, gamma, beta, None, None, True, 0.0, bn.epsilon
            )
            with torch.no_grad():
                variance = inv_std.square().reciprocal() - bn.epsilon
        with torch.no_grad():
            momentum = bn.momentum
            moving_mean = bn.moving_mean.value
            moving_variance = bn.moving_variance.value
            moving_mean.mul_(momentum).add_(mean, alpha=1.0 - momentum)
            moving_variance.mul_(momentum).add_(variance, alpha=1.0 - momentum)
    else:
        x = F.batch_norm(
            x,
            bn.moving_mean.value,
            bn.moving_variance.value,
            gamma,
            beta,
            training=False,
            eps=bn.epsilon,
        )
    return torch.relu_(x) if unit.activation else x


@keras.saving.register_keras_serializable(package="keras_ecg")
class XResNet1D(PresetMixin, keras.Model):
    """1D xresnet encoder (fastai xresnet with ResNet-B/C/D tweaks).

    Stem of three conv-BN-ReLU layers (the first with stride 2), a stride-2 max
    pool, then one stage per entry of `block_depths`; every stage but the first
    halves the time axis. Blocks are basic (two `kernel_size` convs) for
    `expansion == 1` and bottleneck (1x1, `kernel_size`, 1x1 expanding by
    `expansion`) otherwise; the shortcut average-pools then applies a 1x1 conv
    + BN when the shape changes; the last BN of each residual branch starts at
    zero gamma. Inputs are `(batch, timesteps, input_leads)` of any length.

    On the torch backend, eager calls run the same network with plain
    `torch.nn.functional` ops, channels-first, on the layers' own variables
    (about twice the training speed of the layer-by-layer Keras graph);
    outputs, gradients, BatchNorm statistics and saved files are unchanged.

    `encoder.save_to_preset(folder)` saves it alone as a preset backbone;
    `XResNet1D.from_preset(handle)` loads the backbone of any preset whose
    backbone is an XResNet1D (e.g. a pretrained SimCLR's).

    Args:
        block_depths: number of residual blocks per stage.
        widths: bottleneck width per stage; a stage outputs
            `widths[i] * expansion` channels.
        expansion: 1 for basic blocks, 4 for bottleneck blocks.
        kernel_size: kernel size of the residual-branch convs.
        stem_filters: filters of the three stem convs.
        stem_kernel_size: kernel size of the stem convs.
        pooling: `"concat"` (global max and average, concatenated; the paper's
            representation), `"avg"`, `"max"`, or `None` for the feature map
            `(batch, timesteps', channels)`.
        input_leads: number of input channels.
        synchronized_batch_norm: compute the BatchNorm statistics over the
            global batch of a distributed step (TensorFlow: Keras'
            `BatchNormalization(synchronized=True)`; torch: moments
            all-reduced over the processes, see
            `keras_ecg.distribute.synchronize_batch_norm`); JAX's are global
            anyway.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, `trainable`).

    Example:

    >>> import numpy as np
    >>> encoder = XResNet1D(block_depths=(1, 1), widths=(8, 8), expansion=1,
    ...                     stem_filters=(8, 8, 8))
    >>> encoder(np.zeros((2, 250, 12), "float32")).shape
    (2, 16)
    >>> encoder.output_dim
    16
    """

    preset_component = "backbone"

    def __init__(
        self,
        block_depths=(3, 4, 6, 3),
        widths=(64, 128, 256, 512),
        expansion=4,
        kernel_size=5,
        stem_filters=(32, 32, 64),
        stem_kernel_size=5,
        pooling="concat",
        input_leads=12,
        synchronized_batch_norm=False,
        **kwargs,
    ):
        block_depths = tuple(int(d) for d in block_depths)
        widths = tuple(int(w) for w in widths)
        stem_filters = tuple(int(f) for f in stem_filters)
        if not block_depths or len(block_depths) != len(widths):
            raise ValueError(
                "XResNet1D: block_depths and widths must be non-empty and of equal "
                f"length, got block_depths={block_depths}, widths={widths}."
            )
        if min(block_depths) < 1 or min(widths) < 1:
            raise ValueError(
                "XResNet1D: block_depths and widths must be positive, got "
                f"block_depths={block_depths}, widths={widths}."
            )
        if len(stem_filters) < 1 or min(stem_filters) < 1:
            raise ValueError(
                f"XResNet1D: stem_filters must be positive, got {stem_filters}."
            )
        if int(expansion) < 1 or int(kernel_size) < 1 or int(stem_kernel_size) < 1:
            raise ValueError(
                "XResNet1D: expansion, kernel_size and stem_kernel_size must be "
                f"positive, got {expansion}, {kernel_size}, {stem_kernel_size}."
            )
        if pooling not in ENCODER_POOLING_MODES:
            raise ValueError(
                f"XResNet1D: unknown pooling {pooling!r}; expected one of "
                f"{ENCODER_POOLING_MODES}."
            )
        if int(input_leads) < 1:
            raise ValueError(
                f"XResNet1D: input_leads must be positive, got {input_leads}."
            )

        # === Functional model ===
        inputs = keras.Input(shape=(None, int(input_leads)), name="ecg")
        x = inputs
        stem, blocks = [], []
        for i, filters in enumerate(stem_filters):
            strides = 2 if i == 0 else 1
            x = _conv_bn(
                x, filters, stem_kernel_size, strides, f"stem_{i + 1}", plan=stem
            )
        # Post-ReLU activations are >= 0, so zero padding acts as torch's
        # -inf padding of MaxPool1d(3, 2, padding=1).
        x = keras.layers.ZeroPadding1D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling1D(3, strides=2, name="stem_pool")(x)
        channels = stem_filters[-1]
        for stage, (depth, width) in enumerate(zip(block_depths, widths, strict=True)):
            for block in range(depth):
                strides = 2 if (stage > 0 and block == 0) else 1
                x, block_plan = _res_block(
                    x,
                    channels,
                    width,
                    int(expansion),
                    strides,
                    int(kernel_size),
                    name=f"stage{stage + 1}_block{block + 1}",
                )
                blocks.append(block_plan)
                channels = width * int(expansion)
        if pooling is not None:
            x = GlobalPooling1D(pooling, name="pool")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        # A plain object: Keras neither tracks nor saves what it holds.
        self._torch_plan = _TorchPlan(stem, blocks)
        from keras_ecg.distribute import synchronize_batch_norm

        synchronize_batch_norm(self, synchronized_batch_norm)

        # === Config ===
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.block_depths = block_depths
        self.widths = widths
        self.expansion = int(expansion)
        self.kernel_size = int(kernel_size)
        self.stem_filters = stem_filters
        self.stem_kernel_size = int(stem_kernel_size)
        self.pooling = pooling
        self.input_leads = int(input_leads)
        self.feature_channels = channels

    def call(self, inputs, training=None, mask=None):
        if isinstance(inputs, np.ndarray) and keras.backend.backend() == "torch":
            # `predict_on_batch` and direct calls hand NumPy batches through;
            # the Keras graph would convert them anyway, the fast path needs
            # the tensor (without it, inference ran at 0.72x the reference).
            inputs = keras.ops.convert_to_tensor(inputs)
        if self._torch_plan.applies(self, inputs, mask):
            return self._torch_plan(self, inputs, bool(training))
        return super().call(inputs, training=training, mask=mask)

    @property
    def output_dim(self):
        """Size of the representation (channels of the feature map if unpooled)."""
        return self.feature_channels * (2 if self.pooling == "concat" else 1)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "block_depths": list(self.block_depths),
            "widths": list(self.widths),
            "expansion": self.expansion,
            "kernel_size": self.kernel_size,
            "stem_filters": list(self.stem_filters),
            "stem_kernel_size": self.stem_kernel_size,
            "pooling": self.pooling,
            "input_leads": self.input_leads,
            "synchronized_batch_norm": self.synchronized_batch_norm,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def xresnet1d18(**kwargs):
    """xresnet1d18: basic blocks, depths (2, 2, 2, 2)."""
    return XResNet1D(block_depths=(2, 2, 2, 2), expansion=1, **kwargs)


def xresnet1d34(**kwargs):
    """xresnet1d34: basic blocks, depths (3, 4, 6, 3)."""
    return XResNet1D(block_depths=(3, 4, 6, 3), expansion=1, **kwargs)


def xresnet1d50(**kwargs):
    """xresnet1d50: bottleneck blocks (expansion 4), depths (3, 4, 6, 3)."""
    return XResNet1D(block_depths=(3, 4, 6, 3), expansion=4, **kwargs)


def xresnet1d101(**kwargs):
    """xresnet1d101: bottleneck blocks (expansion 4), depths (3, 4, 23, 3)."""
    return XResNet1D(block_depths=(3, 4, 23, 3), expansion=4, **kwargs)


def paper_xresnet1d50(**kwargs):
    """The SimCLR/BYOL/SwAV encoder of Mehari & Strodthoff (2022).

    xresnet1d50 with kernel size 5 and width 64 in every stage (the reference
    code's `block_szs = [64, 64, 64, 64]`): 256 output channels, so a 512-dim
    representation with the default concat pooling.
    """
    kwargs.setdefault("kernel_size", 5)
    kwargs.setdefault("widths", (64, 64, 64, 64))
    return xresnet1d50(**kwargs)
