import keras
import numpy as np
import pytest

from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.models.method_factory import build_encoder
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset


# JEPA's input is checked below and its loss in tests/models/jepa_test.py
# (an eager JEPA step costs seconds of op compilation under JAX).
@pytest.mark.parametrize("method", ["simclr", "byol", "swav", "cpc"])
def test_tiny_methods_take_their_pretraining_input(method):
    data = make_synthetic_ecg(num_records=8, seed=0)
    model = build_method(method, size="tiny")
    dataset = make_method_dataset(method, data, batch_size=4, seed=0)
    batch = next(iter(dataset))
    if method == "cpc":
        # CPC gets plain 10 s crops, the others a 1-tuple of two 2.5 s views.
        assert tuple(batch.shape) == (4, 1000, 12)
    else:
        (views,) = batch
        assert len(views) == 2
        assert all(tuple(v.shape) == (4, 250, 12) for v in views)
    x = batch if method == "cpc" else batch[0]
    x = keras.tree.map_structure(lambda t: keras.ops.convert_to_tensor(t.numpy()), x)
    loss = model.compute_loss(x=x, y_pred=model(x, training=False), training=False)
    assert np.isfinite(keras.ops.convert_to_numpy(loss))


def test_cpc_small_uses_strided_encoder_with_16x_downsampling():
    model = build_method("cpc", size="small")
    x = np.zeros((1, 1000, 12), "float32")
    # ceil(1000 / 16) context steps of 128 units.
    assert tuple(model.backbone(x).shape) == (1, 63, 128)
    assert model.num_negatives == 32


def test_unknown_method_and_size_are_rejected():
    with pytest.raises(ValueError, match="Unknown method"):
        build_method("moco")
    with pytest.raises(ValueError, match="Unknown size"):
        build_method("simclr", size="huge")


def _head_layout(head):
    """(input -> hidden -> output widths, BN?, hidden bias?) of a built head."""
    return (
        [d.kernel.shape for d in head.hidden_layers] + [head.output_layer.kernel.shape],
        bool(head.batch_norms),
        all(d.bias is not None for d in head.hidden_layers),
    )


def test_paper_simclr_byol_swav_heads_are_the_reference_heads(monkeypatch):
    from keras_ecg.models import method_factory

    # The heads are what is checked here: a tiny encoder keeps it fast.
    tiny_encoder = method_factory.build_encoder
    monkeypatch.setattr(
        method_factory,
        "build_encoder",
        lambda size, leads, encoder: tiny_encoder("tiny", leads, encoder),
    )
    # hhi-aml/ecg-selfsupervised on the xresnet1d50's 512 pooled features.
    simclr = build_method("simclr", size="paper")
    simclr.projection_head.build((None, 512))
    # custom_simclr_bolts.Projection: 512 -> 512 -> ReLU -> 16, no BN.
    assert _head_layout(simclr.projection_head) == (
        [(512, 512), (512, 16)],
        False,
        True,
    )
    byol = build_method("byol", size="paper")
    byol.projection_head.build((None, 512))
    byol.prediction_head.build((None, 16))
    # custom_byol_bolts.MLP: Linear(bias=False) -> BN -> ReLU -> Linear, to 16.
    assert _head_layout(byol.projection_head) == ([(512, 512), (512, 16)], True, False)
    assert _head_layout(byol.prediction_head) == ([(16, 512), (512, 16)], True, False)
    swav = build_method("swav", size="paper")
    swav.projection_head.build((None, 512))
    # CustomSwAV's defaults: hidden_mlp 2048, feat_dim 128, 3000 prototypes.
    assert _head_layout(swav.projection_head) == (
        [(512, 2048), (2048, 128)],
        True,
        True,
    )
    assert swav.num_prototypes == 3000
    # The CPU-sized heads keep BatchNorm.
    small = build_method("simclr", size="small")
    small.projection_head.build((None, 128))
    assert _head_layout(small.projection_head) == ([(128, 256), (256, 64)], True, True)


def test_paper_cpc_is_the_reference_cpc():
    model = build_method("cpc", size="paper")
    model.build((None, 1000, 12))
    # One bias-free 512 -> 512 map predicting k = 12 only.
    assert model.steps == (12,)
    assert tuple(model.predictor.kernel.shape) == (512, 512)
    assert len(model.predictor.weights) == 1
    assert model.num_negatives == 128 and model.negatives_from == "sequence"
    encoder = model.encoder
    assert encoder.filters == (512,) * 4 and encoder.strides == (1,) * 4
    # nn.BatchNorm1d defaults: momentum 0.1 (Keras 0.9), eps 1e-5.
    for bn in encoder.norm_layers:
        assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
    assert model.context.units == 512 and model.context.num_layers == 2
    # 1000 x 512 scores cost less than writing 128 x 512 gathered negatives.
    assert model._scoring_method(32, 1000) == "sequence_matrix"
    # The previous paper configuration stays available.
    assert build_method("cpc", size="paper", predict_all_steps=True).steps == tuple(
        range(1, 13)
    )
    # CPU-sized CPCs keep the settings their results were measured with.
    small = build_method("cpc", size="small")
    assert small.steps == tuple(range(1, 13))
    assert small.encoder.norm_layers[0].momentum == 0.99


def test_encoders_default_per_method_and_wrong_combinations_are_refused():
    from keras_ecg.models.encoders import CPCContext
    from keras_ecg.models.encoders import XResNet1D
    from keras_ecg.models.method_factory import DEFAULT_ENCODER
    from keras_ecg.models.method_factory import ENCODERS
    from keras_ecg.models.method_factory import resolve_encoder

    assert ENCODERS == ("xresnet1d", "lstm", "transformer", "s4")
    assert DEFAULT_ENCODER == {
        "simclr": "xresnet1d",
        "byol": "xresnet1d",
        "swav": "xresnet1d",
        "cpc": "lstm",
        "jepa": "transformer",
    }
    assert [resolve_encoder(m) for m in ("simclr", "cpc", "jepa")] == [
        "xresnet1d",
        "lstm",
        "transformer",
    ]
    # encoder=None builds what every existing call builds.
    assert isinstance(build_method("simclr", size="tiny").encoder, XResNet1D)
    assert isinstance(build_method("cpc", size="tiny").context, CPCContext)
    with pytest.raises(ValueError, match="'xresnet1d' does not fit method 'cpc'"):
        build_method("cpc", encoder="xresnet1d")
    with pytest.raises(ValueError, match="'lstm' does not fit method 'swav'"):
        build_method("swav", encoder="lstm")
    with pytest.raises(ValueError, match="'xresnet1d' does not fit method 'jepa'"):
        build_method("jepa", encoder="xresnet1d")
    with pytest.raises(ValueError, match="'lstm' does not fit method 'jepa'"):
        build_method("jepa", encoder="lstm")
    with pytest.raises(ValueError, match="Unknown encoder 'resnet'"):
        build_method("simclr", encoder="resnet")


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]


@pytest.mark.parametrize("method", ["simclr", "byol", "swav", "cpc"])
def test_tiny_s4_methods_train_with_fit(method):
    from keras_ecg.models.encoders import S4Encoder

    # CPC predicting 2 steps, not tiny's 12: a smaller graph to compile.
    kwargs = {"prediction_steps": 2} if method == "cpc" else {}
    model = build_method(method, size="tiny", encoder="s4", **kwargs)
    s4 = model.context if method == "cpc" else model.encoder
    assert isinstance(s4, S4Encoder)
    # SimCLR/BYOL/SwAV: bidirectional and pooled; CPC: a causal sequence.
    assert s4.bidirectional == (method != "cpc")
    assert s4.pooling == (None if method == "cpc" else "avg")
    length = 200 if method == "cpc" else 64
    x = np.random.default_rng(0).normal(size=(8, length, 12)).astype("float32")
    data = x if method == "cpc" else (x, x[:, ::-1] + 0.01)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build((None, length, 12))
    before = _weights(model)
    history = model.fit(data, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = _weights(model)
    changed = [np.abs(a - b).max() > 0 for a, b in zip(after, before)]
    # Every trainable weight of the S4 stack moved (SwAV's prototypes stay
    # frozen in its first steps, so only the encoder is checked).
    s4_weights = {id(w) for w in s4.trainable_weights}
    moved = [c for w, c in zip(model.trainable_weights, changed) if id(w) in s4_weights]
    assert moved and all(moved)


def test_cpc_s4_context_at_t_sees_no_later_encoding():
    model = build_method("cpc", size="tiny", encoder="s4")
    model.build((None, 200, 12))
    encodings = np.random.default_rng(1).normal(size=(2, 40, 16)).astype("float32")
    changed = encodings.copy()
    changed[:, 25:] += 2.0
    before, after = (
        keras.ops.convert_to_numpy(model.context(e, training=False))
        for e in (encodings, changed)
    )
    np.testing.assert_allclose(after[:, :25], before[:, :25], atol=1e-6, rtol=0)
    assert np.abs(after[:, 25:] - before[:, 25:]).max() > 1e-2


def test_small_s4_encoder_has_no_dropout():
    # The reference's channel dropout 0.2 on the 64 channels of `small` cost
    # the S4 encoder trained from scratch 0.04 PTB-XL test macro AUC (README).
    for method in ("simclr", "byol", "swav"):
        encoder = build_method(method, size="small", encoder="s4").encoder
        assert encoder.dropout == 0.0
        assert not [
            layer
            for layer in encoder._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.SpatialDropout1D)
        ]
    context = build_method("cpc", size="small", encoder="s4").context
    assert context.dropout == 0.0


def test_build_encoder_overrides_replace_the_size_configuration():
    encoder = build_encoder("small", 12, "s4", dropout=0.2, d_model=32)
    assert (encoder.dropout, encoder.d_model, encoder.num_layers) == (0.2, 32, 2)
    assert encoder.bidirectional and encoder.pooling == "avg"
    xresnet = build_encoder("tiny", 12, "xresnet1d", pooling="avg")
    assert xresnet.pooling == "avg"


def test_paper_s4_configurations_are_the_reference():
    # tmehari/ssm_ecg: train_ecg_model.py --model s4 (bidirectional S4Model)
    # and pretraining.py --fc-encoder --mlp --s4 --negatives-from-same-seq-only.
    simclr = build_method("simclr", size="paper", encoder="s4")
    encoder = simclr.encoder
    assert (encoder.d_model, encoder.num_layers, encoder.d_state) == (512, 4, 8)
    assert (encoder.dropout, encoder.dt_min, encoder.dt_max) == (0.2, 1e-3, 1e-1)
    assert encoder.bidirectional and not encoder.prenorm and encoder.norm == "layer"
    # Mean pooling; A, B and dt are buffers in the reference (only C, D train).
    assert encoder.pooling == "avg" and encoder.output_dim == 512
    assert not encoder.train_ssm
    cpc = build_method("cpc", size="paper", encoder="s4")
    cpc.build((None, 1000, 12))
    assert cpc.encoder.filters == (512,) * 4 and cpc.encoder.strides == (1,) * 4
    context = cpc.context
    assert (context.d_model, context.num_layers, context.d_state) == (512, 4, 8)
    assert not context.bidirectional and context.pooling is None
    assert context.input_channels == 512 and not context.train_ssm
    # --mlp: Linear(512, 512) -> ReLU -> Linear(512, 512, bias=False).
    hidden = cpc.predictor_hidden
    assert tuple(hidden.kernel.shape) == (512, 512) and hidden.bias is not None
    assert tuple(cpc.predictor.kernel.shape) == (512, 512)
    assert cpc.predictor.bias is None
    assert cpc.steps == (12,) and cpc.num_negatives == 128
    assert cpc.negatives_from == "sequence"


def test_jepa_crops_are_plain_even_with_an_augmentation():
    from keras_ecg.layers.augmentation import GaussianNoise

    data = make_synthetic_ecg(num_records=4, seed=1)
    loud = GaussianNoise(100.0, seed=0)
    dataset = make_method_dataset("jepa", data, batch_size=4, augmentation=loud)
    batch = keras.ops.convert_to_numpy(next(iter(dataset)))
    # One plain 10 s crop per record, as the reference's 5000 samples at 500 Hz.
    assert batch.shape == (4, 1000, 12)
    # The synthetic records are in mV: no crop carries 100-sigma noise.
    assert np.abs(batch).max() < 20


def test_paper_jepa_is_the_reference_vit_xs():
    from keras_ecg.models import JEPA
    from keras_ecg.models.encoders import ECGTransformer

    model = build_method("jepa", size="paper")
    assert isinstance(model, JEPA) and isinstance(model.encoder, ECGTransformer)
    model.build((None, 1000, 12))
    encoder, predictor = model.encoder, model.predictor
    # configs/pretrain/ViTXS_ptbxl.yaml: dim 192, depth 8, 4 heads, no biases,
    # 1 register; pred_dim 96, pred_depth 8, 4 heads; patches of 50 ms.
    assert (encoder.hidden_dim, encoder.num_layers, encoder.num_heads) == (192, 8, 4)
    assert (encoder.use_bias, encoder.use_qkv_bias) == (False, False)
    assert (encoder.num_registers, encoder.layer_norm_epsilon) == (1, 1e-6)
    assert encoder.patch_size == 5 and encoder.num_tokens(1000) == 200
    assert (predictor.hidden_dim, predictor.num_layers, predictor.num_heads) == (
        96,
        8,
        4,
    )
    assert (model.min_keep_ratio, model.max_keep_ratio, model.min_block_size) == (
        0.15,
        0.25,
        10,
    )
    assert (model.momentum, model.final_momentum) == (0.998, 0.9995)
    # The reference counts 3,600,000 learnable encoder parameters at 500 Hz
    # (patches of 25 x 12 samples); ours differ by the patch embedding only.
    params = sum(int(np.prod(w.shape)) for w in encoder.trainable_weights)
    assert params + (25 - 5) * 12 * 192 == 3_600_000
    # 200 tokens: 50 context slots (25%), 170 target slots (85%).
    assert model.slot_counts(200) == (50, 170)
    # CPU-sized runs are short: a faster-moving target.
    small = build_method("jepa", size="small")
    assert (small.momentum, small.final_momentum) == (0.98, 0.998)
    assert small.min_block_size == 10 and small.encoder.patch_size == 5


def test_jepa_pretraining_optimizer_is_the_reference_adamw():
    from keras_ecg.models.method_factory import jepa_learning_rate
    from keras_ecg.models.method_factory import pretraining_optimizer

    optimizer = pretraining_optimizer("jepa", learning_rate=1e-3, total_steps=1000)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.99, 1e-6)
    assert optimizer.weight_decay == 0.055
    schedule = jepa_learning_rate(1e-3, 1000)

    def rate(step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    # utils/schedules.py cosine_schedule: a linear warm-up from 1e-6 over the
    # first 100 steps, then a cosine to 1e-6.
    np.testing.assert_allclose(rate(0), 1e-6, rtol=1e-4)
    np.testing.assert_allclose(rate(50), 1e-6 + (1e-3 - 1e-6) * 0.5, rtol=1e-4)
    np.testing.assert_allclose(rate(100), 1e-3, rtol=1e-4)
    halfway = 1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + np.cos(np.pi * 450 / 900))
    np.testing.assert_allclose(rate(550), halfway, rtol=1e-4)
    np.testing.assert_allclose(rate(1000), 1e-6, rtol=1e-3)
    assert jepa_learning_rate(2e-3) == 2e-3  # no known length: constant
    # Weight decay on dense / convolution kernels only: with zero gradients
    # Adam moves nothing and the decay scales by 1 - lr * 0.055.
    model = build_method("jepa", size="tiny")
    model.build((None, 1000, 12))
    variables = model.trainable_variables
    assert {v.name for v in variables} == {"kernel", "gamma", "registers", "mask_token"}
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    constant = pretraining_optimizer("jepa", learning_rate=0.5)
    constant.apply_gradients([(keras.ops.zeros(v.shape), v) for v in variables])
    for variable, old in zip(variables, before):
        factor = 1 - 0.5 * 0.055 if variable.name == "kernel" else 1.0
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable), old * factor, rtol=1e-6, atol=1e-9
        )
    # The other methods keep Keras' AdamW defaults.
    simclr = pretraining_optimizer("simclr", 2e-3)
    assert (simclr.beta_2, simclr.weight_decay) == (0.999, 0.004)


def test_paper_s4_jepa_is_ecg_cpc_s4_on_vit_xs_tokens():
    from keras_ecg.models import JEPA
    from keras_ecg.models.encoders import S4TokenEncoder
    from keras_ecg.models.method_factory import encoder_of

    model = build_method("jepa", size="paper", encoder="s4")
    assert isinstance(model, JEPA) and isinstance(model.encoder, S4TokenEncoder)
    assert encoder_of(model) == "s4"
    encoder = model.encoder
    # ECG-CPC's S4 (d_model 512, 4 blocks, d_state 8, A / B / dt frozen),
    # bidirectional, no dropout, over ViT-XS's 50 ms tokens.
    assert (encoder.d_model, encoder.num_layers, encoder.d_state) == (512, 4, 8)
    assert (encoder.bidirectional, encoder.train_ssm, encoder.dropout) == (
        True,
        False,
        0.0,
    )
    assert encoder.patch_size == 5 and encoder.num_tokens(1000) == 200
    model.build((None, 1000, 12))
    # The transformer JEPA's predictor (ViT-XS's), masking and momentum.
    vit = build_method("jepa", size="paper")
    assert model.predictor.get_config() == vit.predictor.get_config()
    assert (model.min_keep_ratio, model.max_keep_ratio, model.min_block_size) == (
        0.15,
        0.25,
        10,
    )
    assert (model.momentum, model.final_momentum) == (0.998, 0.9995)
    # Trainable parameters by hand: the patch map 60 -> 512 with bias, the
    # mask token, and per block the two kernels' C (2 x 512 x 4 complex), D,
    # the GLU map 512 -> 1024 and a LayerNorm.
    block = 2 * 2 * 512 * 4 + 512 + (512 * 1024 + 1024) + 2 * 512
    expected = 60 * 512 + 512 + 512 + 4 * block
    assert sum(int(np.prod(w.shape)) for w in encoder.trainable_weights) == expected
    # Frozen: dt, A (2 x 4 per channel) and B (2 x 4) of every block.
    frozen = sum(int(np.prod(w.shape)) for w in encoder.non_trainable_weights)
    assert frozen == 4 * (512 + 4 * 512 * 4)
    small = build_method("jepa", size="small", encoder="s4")
    assert (small.encoder.d_model, small.encoder.num_layers) == (64, 2)
    assert small.encoder.train_ssm and small.momentum == 0.98


def test_s4_jepa_optimizer_decays_dense_kernels_only():
    from keras_ecg.models.method_factory import pretraining_optimizer

    model = build_method("jepa", size="tiny", encoder="s4")
    model.build((None, 1000, 12))
    variables = model.trainable_variables
    names = {v.name for v in variables}
    assert {"c_real", "c_imag", "d", "log_dt", "a_imag", "mask_token"} <= names
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    optimizer = pretraining_optimizer("jepa", learning_rate=0.5)
    optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in variables])
    # The reference decays nn.Linear / nn.Conv1d weights only: here the patch
    # map's, the S4 output maps' and the predictor's kernels.
    for variable, old in zip(variables, before):
        factor = 1 - 0.5 * 0.055 if variable.name == "kernel" else 1.0
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable),
            old * factor,
            rtol=1e-6,
            atol=1e-9,
            err_msg=variable.path,
        )
