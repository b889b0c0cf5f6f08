"""Search spaces of the self-supervised methods for KerasTuner.

`define_search_space(hp, method, size)` declares the hyperparameters that
matter for each method on `hp` and returns the chosen values:

- all methods: `learning_rate` (log scale), `crop_seconds`, encoder
  width/depth and projection dimension (CPC: encoder filters and LSTM units);
- SimCLR/BYOL/SwAV: augmentation strengths of the paper's best setting
  RandomResizedCrop + TimeOut (`rrc_min_ratio`, the lower bound of the crop
  ratio, and `timeout_max_ratio`, the upper bound of the masked fraction);
- SimCLR: `temperature`; SwAV: `temperature`, `num_prototypes`; BYOL: the EMA
  `tau`; CPC: `prediction_steps`, `num_negatives`; JEPA: the transformer's
  width and depth (the predictor half as wide), the context share
  `min_keep_ratio` (kept tokens drawn from `[r, r + 0.1]`), the masked
  blocks' `min_block_size` and the EMA `momentum`;
- with `encoder="s4"` the encoder (SimCLR/BYOL/SwAV) or CPC's context network
  is an `S4Encoder` searched over `s4_d_model`, `s4_num_layers`, `s4_d_state`
  and `s4_dropout` (instead of the xresnet width/depth or the LSTM units);
  JEPA's `S4TokenEncoder` over the first three (its dropout stays 0, see
  `keras_ecg.models.method_factory._S4_JEPA_CONFIGS`), instead of the
  transformer's width and depth.

Ranges are sized per encoder `size` (`"tiny"` for tests, `"small"` for CPU,
`"paper"`); they bracket the paper's values (lr 1e-3, temperature 0.5/0.1,
tau 0.996/0.99, crop 2.5 s / 10 s at 100 Hz; JEPA: keep 0.15-0.25, blocks of
10 tokens, momentum 0.998).
"""

from keras_ecg.models.method_factory import _S4_CONFIGS
from keras_ecg.models.method_factory import CROP_SECONDS
from keras_ecg.models.method_factory import ENCODER_SIZES
from keras_ecg.models.method_factory import METHODS
from keras_ecg.models.method_factory import resolve_encoder

# Per-size choices: (stage widths, blocks per stage, projection dims,
# prototypes, CPC widths, CPC negatives, transformer widths and depths).
_SIZE_CHOICES = {
    "tiny": dict(
        widths=[8, 16],
        blocks=(1, 1),
        projection_dims=[8, 16],
        prototypes=[8, 16],
        cpc_widths=[8, 16],
        negatives=[4, 8],
        transformer_widths=[8, 16],
        transformer_depths=(1, 1),
    ),
    "small": dict(
        widths=[32, 64],
        blocks=(1, 2),
        projection_dims=[32, 64, 128],
        prototypes=[16, 32, 64],
        cpc_widths=[64, 128],
        negatives=[16, 32, 64],
        transformer_widths=[32, 64],
        transformer_depths=(2, 4),
    ),
    "paper": dict(
        widths=[64, 128],
        blocks=(1, 3),
        projection_dims=[64, 128, 256],
        prototypes=[100, 300, 1000],
        cpc_widths=[256, 512],
        negatives=[64, 128],
        transformer_widths=[192, 384],
        transformer_depths=(4, 8),
    ),
}


# S4 encoders per size: widths, (min, max) layers, state sizes. They bracket
# the ECG-CPC reference's d_model 512, 4 layers, d_state 8 at "paper".
_S4_CHOICES = {
    "tiny": dict(d_model=[8, 16], num_layers=(1, 2), d_state=[4, 8]),
    "small": dict(d_model=[64, 128, 256], num_layers=(1, 4), d_state=[8, 16, 64]),
    "paper": dict(d_model=[256, 512], num_layers=(2, 6), d_state=[8, 16, 64]),
}


def _s4_space(hp, size, dropout=True):
    """The S4 encoder hyperparameters (defaults: `build_method`'s S4 config);
    `dropout=False` leaves the dropout out of the search."""
    choices, config = _S4_CHOICES[size], _S4_CONFIGS[size]
    low, high = choices["num_layers"]
    space = {
        "d_model": hp.Choice(
            "s4_d_model", choices["d_model"], default=config["d_model"]
        ),
        "num_layers": hp.Int(
            "s4_num_layers",
            low,
            high,
            default=min(max(config["num_layers"], low), high),
        ),
        "d_state": hp.Choice("s4_d_state", choices["d_state"], default=8),
    }
    if dropout:
        space["dropout"] = hp.Float(
            "s4_dropout", 0.0, 0.3, step=0.1, default=config["dropout"]
        )
    return space


def _crop_choices(method, size):
    """Crop durations in seconds: the paper's and half of it (tiny: smaller)."""
    base = CROP_SECONDS[method]
    if size == "tiny":
        return [base / 4, base / 2]
    return [base / 2, base]


def define_search_space(hp, method, size="small", encoder=None):
    """Declares `method`'s hyperparameters on `hp` and returns their values.

    Args:
        hp: a `keras_tuner.HyperParameters`.
        method: `"simclr"`, `"byol"`, `"swav"`, `"cpc"` or `"jepa"`.
        size: `"tiny"`, `"small"` or `"paper"`; scales the architecture ranges.
        encoder: `None` (the method's default) or a name of
            `keras_ecg.models.method_factory.ENCODERS` the method can use.

    Returns:
        A dict with `learning_rate`, `crop_seconds`, `encoder_name`,
        `encoder` (width/depth settings: xresnet `width` /
        `blocks_per_stage`, CPC `width` / `context_units`, S4 `d_model`,
        `num_layers`, `d_state`, `dropout`, with CPC's `width` too),
        `projection_dim`, `augmentation` (`None` for CPC and JEPA, else
        `rrc_min_ratio` / `timeout_max_ratio`) and `method_kwargs` (forwarded
        to the method's constructor).

    Example:

    ```python
    hp = keras_tuner.HyperParameters()
    space = define_search_space(hp, "simclr", size="small")
    ```
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
    if size not in ENCODER_SIZES:
        raise ValueError(f"Unknown size {size!r}; expected one of {ENCODER_SIZES}.")
    encoder = resolve_encoder(method, encoder)
    choices = _SIZE_CHOICES[size]
    space = {
        "learning_rate": hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3
        ),
        "crop_seconds": hp.Choice("crop_seconds", _crop_choices(method, size)),
        "encoder_name": encoder,
        "method_kwargs": {},
    }
    if method == "cpc":
        space["encoder"] = {
            "width": hp.Choice("encoder_width", choices["cpc_widths"]),
        }
        if encoder == "s4":
            space["encoder"].update(_s4_space(hp, size))
        else:
            space["encoder"]["context_units"] = hp.Choice(
                "context_units", choices["cpc_widths"]
            )
        space["projection_dim"] = None
        space["augmentation"] = None
        space["method_kwargs"] = {
            "prediction_steps": hp.Int("prediction_steps", 2, 12, default=4),
            "num_negatives": hp.Choice("num_negatives", choices["negatives"]),
        }
        return space

    if method == "jepa":
        if encoder == "s4":
            space["encoder"] = _s4_space(hp, size, dropout=False)
        else:
            low, high = choices["transformer_depths"]
            space["encoder"] = {
                "width": hp.Choice("encoder_width", choices["transformer_widths"]),
                "num_layers": hp.Int("num_layers", low, high) if high > low else low,
            }
        space["projection_dim"] = None
        space["augmentation"] = None
        space["method_kwargs"] = {
            # Up to 40% kept and blocks of 10 leave room for a block even in
            # the tiny space's 25-token crops.
            "min_keep_ratio": hp.Float("min_keep_ratio", 0.1, 0.3, default=0.15),
            "min_block_size": hp.Int("min_block_size", 5, 10, default=10),
            # The first target momentum (the size's final one follows).
            "momentum": hp.Float("momentum", 0.95, 0.999, default=0.998),
        }
        return space

    if encoder == "s4":
        space["encoder"] = _s4_space(hp, size)
    else:
        low, high = choices["blocks"]
        space["encoder"] = {
            "width": hp.Choice("encoder_width", choices["widths"]),
            "blocks_per_stage": hp.Int("blocks_per_stage", low, high)
            if high > low
            else low,
        }
    space["projection_dim"] = hp.Choice("projection_dim", choices["projection_dims"])
    space["augmentation"] = {
        "rrc_min_ratio": hp.Float("rrc_min_ratio", 0.3, 0.9, default=0.5),
        "timeout_max_ratio": hp.Float("timeout_max_ratio", 0.1, 0.5, default=0.4),
    }
    if method == "simclr":
        space["method_kwargs"] = {
            "temperature": hp.Float(
                "temperature", 0.05, 1.0, sampling="log", default=0.5
            )
        }
    elif method == "swav":
        space["method_kwargs"] = {
            "temperature": hp.Float(
                "temperature", 0.05, 0.5, sampling="log", default=0.1
            ),
            "num_prototypes": hp.Choice("num_prototypes", choices["prototypes"]),
        }
    else:
        space["method_kwargs"] = {
            "tau": hp.Float("tau", 0.9, 0.999, default=0.996),
        }
    return space
