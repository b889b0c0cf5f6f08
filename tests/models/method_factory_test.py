import keras
import numpy as np
import pytest

from keras_ecg.data.synthetic import make_synthetic_ecg
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
        method_factory, "build_encoder", lambda size, leads: tiny_encoder("tiny", leads)
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
