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


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("method", ["simclr", "cpc"])
@pytest.mark.parametrize("size", ["tiny", "small", "paper"])
def test_s4_space_brackets_the_build_method_configuration(method, size):
    from keras_ecg.models.method_factory import _S4_CONFIGS

    hp = kt.HyperParameters()
    space = define_search_space(hp, method, size=size, encoder="s4")
    assert space["encoder_name"] == "s4"
    s4 = {k: space["encoder"][k] for k in ("d_model", "num_layers", "d_state")}
    # Defaults: build_method's S4 configuration of that size (d_state 8, the
    # reference's, and the size's dropout).
    config = _S4_CONFIGS[size]
    assert s4["d_model"] == config["d_model"] and s4["d_state"] == 8
    assert s4["num_layers"] == config["num_layers"]
    assert space["encoder"]["dropout"] == pytest.approx(config["dropout"])
    assert config["dropout"] == {"tiny": 0.1, "small": 0.0, "paper": 0.2}[size]
    names = set(hp.values)
    assert {"s4_d_model", "s4_num_layers", "s4_d_state", "s4_dropout"} <= names
    # S4 replaces the xresnet width/depth, and CPC's LSTM units.
    assert "blocks_per_stage" not in names and "context_units" not in names
    assert ("encoder_width" in names) == (method == "cpc")
    dropout = hp._hps["s4_dropout"][0]
    assert (dropout.min_value, dropout.max_value) == (0.0, 0.3)
    if size == "paper":
        # The reference's d_model 512, 4 layers, d_state 8 are reachable.
        assert 512 in hp._hps["s4_d_model"][0].values
        layers = hp._hps["s4_num_layers"][0]
        assert layers.min_value <= 4 <= layers.max_value


@pytest.mark.backend_agnostic
def test_space_refuses_an_encoder_the_method_cannot_use():
    with pytest.raises(ValueError, match="does not fit method 'cpc'"):
        define_search_space(kt.HyperParameters(), "cpc", encoder="xresnet1d")
    # The default encoders keep their spaces.
    hp = kt.HyperParameters()
    space = define_search_space(hp, "cpc", size="tiny")
    assert space["encoder_name"] == "lstm" and "context_units" in hp.values


@pytest.mark.backend_agnostic
def test_jepa_s4_space_searches_the_s4_token_encoder():
    from keras_ecg.models.method_factory import _S4_JEPA_CONFIGS

    hp = kt.HyperParameters()
    space = define_search_space(hp, "jepa", size="small", encoder="s4")
    assert space["encoder_name"] == "s4"
    config = _S4_JEPA_CONFIGS["small"]
    assert space["encoder"] == {
        "d_model": config["d_model"],
        "num_layers": config["num_layers"],
        "d_state": 8,
    }
    names = set(hp.values)
    assert {"s4_d_model", "s4_num_layers", "s4_d_state"} <= names
    # JEPA's S4 runs without dropout; no transformer width / depth either.
    assert not {"s4_dropout", "encoder_width", "num_layers"} & names
    assert set(space["method_kwargs"]) == {
        "min_keep_ratio",
        "min_block_size",
        "momentum",
    }
