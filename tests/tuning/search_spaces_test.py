import keras_tuner as kt
import pytest

from keras_ecg.tuning.search_spaces import define_search_space


@pytest.mark.backend_agnostic
@pytest.mark.parametrize(
    "method, specific",
    [
        ("simclr", {"temperature"}),
        ("byol", {"tau"}),
        ("swav", {"temperature", "num_prototypes"}),
        ("cpc", {"prediction_steps", "num_negatives"}),
        ("jepa", {"min_keep_ratio", "min_block_size", "momentum"}),
    ],
)
def test_space_declares_the_method_hyperparameters(method, specific):
    hp = kt.HyperParameters()
    space = define_search_space(hp, method, size="small")
    assert set(space["method_kwargs"]) == specific
    assert {"learning_rate", "crop_seconds", "encoder_width"} <= set(hp.values)
    lr = hp._hps["learning_rate"][0]
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")
    # Defaults are the paper's values where it has one.
    assert space["learning_rate"] == 1e-3
    if method == "simclr":
        assert space["method_kwargs"]["temperature"] == 0.5
    if method == "byol":
        assert space["method_kwargs"]["tau"] == 0.996
    if method == "jepa":
        # kweimann/ECG-JEPA: 15-25% kept, blocks of 10 tokens, momentum 0.998.
        assert space["method_kwargs"] == {
            "min_keep_ratio": 0.15,
            "min_block_size": 10,
            "momentum": 0.998,
        }
        assert {"num_layers"} <= set(hp.values)
    if method in ("cpc", "jepa"):
        assert space["augmentation"] is None
        assert hp._hps["crop_seconds"][0].values == [5.0, 10.0]
    else:
        assert space["augmentation"] == {
            "rrc_min_ratio": 0.5,
            "timeout_max_ratio": 0.4,
        }
        assert hp._hps["crop_seconds"][0].values == [1.25, 2.5]


@pytest.mark.backend_agnostic
def test_space_is_idempotent_and_follows_hp_values():
    hp = kt.HyperParameters()
    define_search_space(hp, "swav", size="tiny")
    hp.values["num_prototypes"] = 16
    hp.values["temperature"] = 0.2
    space = define_search_space(hp, "swav", size="tiny")
    assert space["method_kwargs"] == {"num_prototypes": 16, "temperature": 0.2}
    assert hp._hps["crop_seconds"][0].values == [0.625, 1.25]


@pytest.mark.backend_agnostic
def test_space_rejects_unknown_method_and_size():
    with pytest.raises(ValueError, match="method"):
        define_search_space(kt.HyperParameters(), "moco")
    with pytest.raises(ValueError, match="size"):
        define_search_space(kt.HyperParameters(), "simclr", size="huge")
