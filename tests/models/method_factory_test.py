import keras
import numpy as np
import pytest

from keras_ecg.data.synthetic import make_synthetic_ecg
from keras_ecg.models.method_factory import build_method
from keras_ecg.models.method_factory import make_method_dataset


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
