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
