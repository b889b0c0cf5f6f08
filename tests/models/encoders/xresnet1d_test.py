import math

import keras
import numpy as np
import pytest

from keras_ecg.models.encoders import XResNet1D
from keras_ecg.models.encoders import paper_xresnet1d50
from keras_ecg.models.encoders import xresnet1d18
from keras_ecg.models.encoders import xresnet1d34
from keras_ecg.models.encoders import xresnet1d50
from keras_ecg.models.encoders import xresnet1d101
from keras_ecg.testing import assert_config_round_trip
from keras_ecg.testing import assert_saved_model_round_trip

TINY = dict(block_depths=(1, 1), widths=(8, 8), expansion=1, stem_filters=(8, 8, 8))


def _randomize(model, rng):
    """Random weights everywhere (BN gammas too) so no branch is trivially zero."""
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        w.assign(value.astype("float32"))


# --- independent numpy re-statement of the reference (torch) xresnet1d ---------


def _np_conv(x, kernel, stride):
    k = kernel.shape[0]
    pad = (k - 1) // 2
    x = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
    out_len = (x.shape[1] - k) // stride + 1
    out = np.zeros((x.shape[0], out_len, kernel.shape[2]))
    for t in range(out_len):
        window = x[:, t * stride : t * stride + k, :]  # (B, k, Cin)
        out[:, t] = np.einsum("bkc,kco->bo", window, kernel)
    return out


def _np_bn(x, gamma, beta, mean, var, eps=1e-5):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def _np_conv_bn(model, x, name, stride, relu=True, batch_stats=None):
    """`batch_stats`: a dict; when given, BN normalises with the batch's own
    mean and biased variance (training mode) and records them under `name`."""
    (kernel,) = model.get_layer(f"{name}_conv").get_weights()
    gamma, beta, mean, var = model.get_layer(f"{name}_bn").get_weights()
    x = _np_conv(x, kernel, stride)
    if batch_stats is not None:
        mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
        batch_stats[name] = (mean, var)
    x = _np_bn(x, gamma, beta, mean, var)
    return np.maximum(x, 0.0) if relu else x


def _np_maxpool_3_2_1(x):
    # torch MaxPool1d(3, stride=2, padding=1): -inf padding.
    x = np.pad(x, ((0, 0), (1, 1), (0, 0)), constant_values=-np.inf)
    out_len = (x.shape[1] - 3) // 2 + 1
    return np.stack([x[:, 2 * t : 2 * t + 3].max(axis=1) for t in range(out_len)], 1)


def _np_avgpool_ceil(x):
    # torch AvgPool1d(2, ceil_mode=True): a trailing half window averages 1 sample.
    out_len = math.ceil(x.shape[1] / 2)
    return np.stack([x[:, 2 * t : 2 * t + 2].mean(axis=1) for t in range(out_len)], 1)


def _np_forward(
    model, x, stem_filters, block_depths, widths, expansion, batch_stats=None
):
    def conv_bn(x, name, stride, relu=True):
        return _np_conv_bn(model, x, name, stride, relu, batch_stats)

    for i in range(len(stem_filters)):
        x = conv_bn(x, f"stem_{i + 1}", 2 if i == 0 else 1)
    x = _np_maxpool_3_2_1(x)
    channels = stem_filters[-1]
    for s, (depth, width) in enumerate(zip(block_depths, widths, strict=True)):
        for b in range(depth):
            name = f"stage{s + 1}_block{b + 1}"
            stride = 2 if (s > 0 and b == 0) else 1
            if expansion == 1:
                y = conv_bn(x, f"{name}_1", stride)
                y = conv_bn(y, f"{name}_2", 1, relu=False)
            else:
                y = conv_bn(x, f"{name}_1", 1)
                y = conv_bn(y, f"{name}_2", stride)
                y = conv_bn(y, f"{name}_3", 1, relu=False)
            shortcut = _np_avgpool_ceil(x) if stride != 1 else x
            if channels != width * expansion:
                shortcut = conv_bn(shortcut, f"{name}_shortcut", 1, False)
            x = np.maximum(y + shortcut, 0.0)
            channels = width * expansion
    return x


# Basic blocks: identity shortcut, then pool + 1x1 conv shortcut.
BASIC = dict(
    block_depths=(1, 1),
    widths=(4, 5),
    expansion=1,
    stem_filters=(3, 4, 4),
    kernel_size=3,
    stem_kernel_size=5,
    input_leads=2,
)
# Bottleneck: 1x1 conv shortcut at stride 1, then pool only (6 == 3 * 2).
BOTTLENECK = dict(
    block_depths=(2, 1),
    widths=(3, 3),
    expansion=2,
    stem_filters=(4, 5),
    kernel_size=5,
    stem_kernel_size=3,
    input_leads=2,
)


@pytest.mark.parametrize("config", [BASIC, BOTTLENECK], ids=["basic", "bottleneck"])
def test_forward_matches_numpy_reference(config):
    rng = np.random.default_rng(0)
    model = XResNet1D(pooling=None, **config)
    _randomize(model, rng)
    # Odd length exercises the ceil-mode shortcut pooling and the padding.
    x = rng.normal(size=(2, 37, 2)).astype("float32")
    actual = keras.ops.convert_to_numpy(model(x, training=False))
    expected = _np_forward(
        model,
        x.astype("float64"),
        config["stem_filters"],
        config["block_depths"],
        config["widths"],
        config["expansion"],
    )
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", [BASIC, BOTTLENECK], ids=["basic", "bottleneck"])
def test_training_forward_and_moving_statistics_match_numpy(config):
    # Training mode: every BN normalises with its batch statistics and moves
    # its moving mean / variance by 0.1 towards the batch mean / biased
    # variance (Keras' update). On torch this runs the plain-torch fast path.
    rng = np.random.default_rng(4)
    model = XResNet1D(pooling=None, **config)
    _randomize(model, rng)
    before = {
        layer.name[: -len("_bn")]: [w.copy() for w in layer.get_weights()]
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    x = rng.normal(size=(3, 37, 2)).astype("float32")
    batch_stats = {}
    expected = _np_forward(
        model,
        x.astype("float64"),
        config["stem_filters"],
        config["block_depths"],
        config["widths"],
        config["expansion"],
        batch_stats=batch_stats,
    )
    actual = keras.ops.convert_to_numpy(model(x, training=True))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    assert set(batch_stats) == set(before)
    for name, (mean, var) in batch_stats.items():
        _, _, moving_mean, moving_var = model.get_layer(f"{name}_bn").get_weights()
        _, _, old_mean, old_var = before[name]
        np.testing.assert_allclose(
            moving_mean, 0.9 * old_mean + 0.1 * mean, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            moving_var, 0.9 * old_var + 0.1 * var, rtol=1e-4, atol=1e-5
        )


def test_frozen_encoder_uses_moving_statistics_in_training_mode():
    # Keras semantics kept by every backend's path: a non-trainable BN runs in
    # inference mode and leaves its statistics alone, even with training=True.
    rng = np.random.default_rng(5)
    model = XResNet1D(**BOTTLENECK)
    _randomize(model, rng)
    model.trainable = False
    weights = [w.copy() for w in model.get_weights()]
    x = rng.normal(size=(3, 37, 2)).astype("float32")
    trained = keras.ops.convert_to_numpy(model(x, training=True))
    inferred = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(trained, inferred, rtol=1e-6, atol=1e-6)
    for old, new in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="the fast path is torch-only"
)
@pytest.mark.parametrize("pooling", ["concat", "avg", "max", None])
@pytest.mark.parametrize("config", [BASIC, BOTTLENECK], ids=["basic", "bottleneck"])
def test_torch_fast_path_equals_keras_graph(config, pooling):
    # Same outputs, weight gradients and moving statistics as the Keras graph.
    import torch

    rng = np.random.default_rng(6)
    fast = XResNet1D(pooling=pooling, **config)
    _randomize(fast, rng)
    graph = XResNet1D(pooling=pooling, **config)
    graph.set_weights(fast.get_weights())
    graph._torch_plan.enabled = False
    x = torch.from_numpy(rng.normal(size=(3, 37, 2)).astype("float32"))
    probe = None
    results = []
    for model in (fast, graph):
        inferred = model(x, training=False)
        out = model(x, training=True)
        if probe is None:
            probe = torch.from_numpy(rng.normal(size=tuple(out.shape))).float()
        for v in model.trainable_weights:
            v.value.grad = None
        (out * probe).sum().backward()
        grads = [v.value.grad.numpy().copy() for v in model.trainable_weights]
        results.append((inferred.detach(), out.detach(), grads, model.get_weights()))
    (inf_f, out_f, grads_f, w_f), (inf_g, out_g, grads_g, w_g) = results
    np.testing.assert_allclose(inf_f, inf_g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_f, out_g, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads_f, grads_g, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    for a, b in zip(w_f, w_g, strict=True):  # moving statistics moved alike
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="the fast path is torch-only"
)
def test_numpy_batches_take_the_torch_fast_path():
    # predict_on_batch and direct calls pass NumPy to `call`: they must run
    # the fast path too (they did not, at 0.72x the reference's inference).
    rng = np.random.default_rng(7)
    fast = XResNet1D(**BOTTLENECK)
    _randomize(fast, rng)
    graph = XResNet1D(**BOTTLENECK)
    graph.set_weights(fast.get_weights())
    graph._torch_plan.enabled = False
    plan_type = type(fast._torch_plan)
    calls = []
    original = plan_type.__call__

    def counting(plan, model, inputs, training):
        calls.append(type(inputs).__name__)
        return original(plan, model, inputs, training)

    x = rng.normal(size=(3, 37, 2)).astype("float32")
    expected = keras.ops.convert_to_numpy(graph(x, training=False))
    plan_type.__call__ = counting
    try:
        on_batch = fast.predict_on_batch(x)
        called = keras.ops.convert_to_numpy(fast(x, training=False))
    finally:
        plan_type.__call__ = original
    assert calls == ["Tensor", "Tensor"]
    np.testing.assert_allclose(on_batch, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(called, expected, rtol=1e-5, atol=1e-5)


def test_last_bn_of_each_branch_starts_at_zero_gamma():
    model = XResNet1D(**BOTTLENECK)
    gammas = {
        layer.name: keras.ops.convert_to_numpy(layer.gamma)
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    zero = {n for n in gammas if n.startswith("stage") and n.endswith("_3_bn")}
    assert zero == {"stage1_block1_3_bn", "stage1_block2_3_bn", "stage2_block1_3_bn"}
    for name, gamma in gammas.items():
        np.testing.assert_array_equal(gamma, 0.0 if name in zero else 1.0)


def _num_blocks(model):
    return sum(layer.name.endswith("_add") for layer in model.layers)


@pytest.mark.parametrize(
    "factory, depths, expansion",
    [
        (xresnet1d18, (2, 2, 2, 2), 1),
        (xresnet1d34, (3, 4, 6, 3), 1),
        (xresnet1d50, (3, 4, 6, 3), 4),
        (xresnet1d101, (3, 4, 23, 3), 4),
    ],
)
def test_factories_depths_and_output_shapes(factory, depths, expansion):
    # Narrow widths keep the build cheap; depth/expansion come from the factory.
    model = factory(widths=(2, 2, 2, 3), stem_filters=(2, 2, 4), pooling=None)
    assert model.block_depths == depths
    assert _num_blocks(model) == sum(depths)
    assert model.output_dim == 3 * expansion
    # Symbolic shape inference keeps this cheap; real forwards are tested below.
    # 100 -> 50 (stem) -> 25 (max pool) -> 13 -> 7 -> 4 (stages 2-4).
    assert model.compute_output_shape((2, 100, 12)) == (2, 4, 3 * expansion)
    assert tuple(model.output.shape) == (None, None, 3 * expansion)


@pytest.mark.parametrize(
    "pooling, multiplier", [("concat", 2), ("avg", 1), ("max", 1), (None, 1)]
)
def test_pooling_modes(pooling, multiplier):
    rng = np.random.default_rng(1)
    features = XResNet1D(pooling=None, **TINY)
    _randomize(features, rng)
    model = XResNet1D(pooling=pooling, **TINY)
    model.set_weights(features.get_weights())
    assert model.output_dim == 8 * multiplier
    x = rng.normal(size=(3, 64, 12)).astype("float32")
    fmap = keras.ops.convert_to_numpy(features(x, training=False))
    expected = {
        "concat": np.concatenate([fmap.max(1), fmap.mean(1)], axis=-1),
        "avg": fmap.mean(1),
        "max": fmap.max(1),
        None: fmap,
    }[pooling]
    actual = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_variable_input_length():
    model = XResNet1D(pooling=None, **TINY)
    for length, expected in [(97, 13), (16, 2)]:
        # stem /2, max pool /2, stage 2 /2, each rounding up.
        out = model(np.ones((2, length, 12), "float32"), training=False)
        assert tuple(out.shape) == (2, expected, 8)
    pooled = XResNet1D(**TINY)
    for length in (97, 16):
        assert tuple(pooled(np.ones((2, length, 12), "float32")).shape) == (2, 16)


def _np_param_count(depths, widths, expansion, kernel, stem, stem_kernel, leads):
    bn = 4  # gamma, beta, moving mean, moving variance
    count, cin = 0, leads
    for f in stem:
        count += stem_kernel * cin * f + bn * f
        cin = f
    for depth, width in zip(depths, widths, strict=True):
        out = width * expansion
        for _ in range(depth):
            if expansion == 1:
                count += kernel * cin * width + bn * width
                count += kernel * width * out + bn * out
            else:
                count += cin * width + bn * width
                count += kernel * width * width + bn * width
                count += width * out + bn * out
            if cin != out:
                count += cin * out + bn * out
            cin = out
    return count


def test_parameter_count_hand_computed_small_config():
    model = XResNet1D(**BASIC)
    # Conv k*cin*cout, BN 4*c. Stem: 5*2*3 + 12, 5*3*4 + 16, 5*4*4 + 16 = 214.
    # Stage 1 (4 -> 4, identity): 2 * (3*4*4 + 16) = 128.
    # Stage 2 (4 -> 5): 3*4*5 + 20, 3*5*5 + 20, shortcut 4*5 + 20 = 215.
    assert model.count_params() == 214 + 128 + 215
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2 * (3 + 4 + 4 + 4 + 4 + 5 + 5 + 5)  # moving mean, var
    assert model.count_params() == _np_param_count(
        (1, 1), (4, 5), 1, 3, (3, 4, 4), 5, 2
    )


def test_paper_xresnet1d50_parameter_count_and_output():
    model = paper_xresnet1d50()
    assert model.block_depths == (3, 4, 6, 3) and model.expansion == 4
    assert model.widths == (64, 64, 64, 64) and model.kernel_size == 5
    assert model.output_dim == 512  # 2 (concat) * 64 * 4
    assert model.count_params() == _np_param_count(
        (3, 4, 6, 3), (64,) * 4, 4, 5, (32, 32, 64), 5, 12
    )
    assert tuple(model.output.shape) == (None, 512)
    assert model.compute_output_shape((2, 250, 12)) == (2, 512)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="pooling"):
        XResNet1D(pooling="mean", **TINY)
    with pytest.raises(ValueError, match="equal"):
        XResNet1D(block_depths=(1, 1), widths=(8,))


def test_config_and_saved_model_round_trip(tmp_path):
    model = XResNet1D(**TINY)
    _randomize(model, np.random.default_rng(2))
    rebuilt = assert_config_round_trip(model)
    assert rebuilt.output_dim == model.output_dim
    x = np.random.default_rng(3).normal(size=(2, 64, 12)).astype("float32")
    assert_saved_model_round_trip(model, x, tmp_path, atol=1e-5)
