"""Augmentation presets of Mehari & Strodthoff (2022)."""

from keras_ecg.layers.augmentation.augmentation_stack import AugmentationStack
from keras_ecg.layers.augmentation.baseline_shift import BaselineShift
from keras_ecg.layers.augmentation.baseline_wander import BaselineWander
from keras_ecg.layers.augmentation.channel_resize import ChannelResize
from keras_ecg.layers.augmentation.dynamic_time_warp import DynamicTimeWarp
from keras_ecg.layers.augmentation.em_noise import EMNoise
from keras_ecg.layers.augmentation.gaussian_blur import GaussianBlur
from keras_ecg.layers.augmentation.gaussian_noise import GaussianNoise
from keras_ecg.layers.augmentation.negation import Negation
from keras_ecg.layers.augmentation.powerline_noise import PowerlineNoise
from keras_ecg.layers.augmentation.random_resized_crop import RandomResizedCrop
from keras_ecg.layers.augmentation.time_out import TimeOut

# Tokens of a setting name, after the reference code's abbreviations
# (RRC, TO, GN, ChR, DTW, GB, BlW, PlN, EM, BlS) plus `neg`.
_TOKENS = {
    "rrc": lambda fs, seed: RandomResizedCrop(seed=seed),
    "to": lambda fs, seed: TimeOut(seed=seed),
    "gn": lambda fs, seed: GaussianNoise(seed=seed),
    "chr": lambda fs, seed: ChannelResize(seed=seed),
    "dtw": lambda fs, seed: DynamicTimeWarp(seed=seed),
    "gb": lambda fs, seed: GaussianBlur(sampling_rate=fs, seed=seed),
    "neg": lambda fs, seed: Negation(seed=seed),
    "blw": lambda fs, seed: BaselineWander(sampling_rate=fs, seed=seed),
    "pln": lambda fs, seed: PowerlineNoise(sampling_rate=fs, seed=seed),
    "em": lambda fs, seed: EMNoise(seed=seed),
    "bls": lambda fs, seed: BaselineShift(sampling_rate=fs, seed=seed),
}

# Robustness noise levels 1..6: the maximum strengths `c_max` of baseline
# wander, electromyographic noise, powerline noise and baseline shift, copied
# from the reference code (tmehari/ecg-selfsupervised, eval.py,
# `t_params_by_level`, used with `--test_noised --noise_level`). The levels are
# non-decreasing in every component. The reference squares the powerline
# amplitude (see `PowerlineNoise`), so its effective powerline noise at these
# settings is weaker than here.
NOISE_LEVELS = {
    1: {"bw_cmax": 0.05, "em_cmax": 0.25, "pl_cmax": 0.1, "bs_cmax": 0.5},
    2: {"bw_cmax": 0.1, "em_cmax": 0.5, "pl_cmax": 0.2, "bs_cmax": 1.0},
    3: {"bw_cmax": 0.1, "em_cmax": 1.0, "pl_cmax": 0.2, "bs_cmax": 2.0},
    4: {"bw_cmax": 0.2, "em_cmax": 1.0, "pl_cmax": 0.4, "bs_cmax": 2.0},
    5: {"bw_cmax": 0.2, "em_cmax": 1.5, "pl_cmax": 0.4, "bs_cmax": 2.5},
    6: {"bw_cmax": 0.3, "em_cmax": 2.0, "pl_cmax": 0.5, "bs_cmax": 3.0},
}


def _seed(seed, index):
    return None if seed is None else seed + index


def setting_tokens(name):
    """The transformation tokens of a setting name, checked (no layer built).

    Args:
        name: setting name, e.g. `"rrc_to"` (see `paper_augmentations`).

    Returns:
        The lower-case tokens in order, e.g. `["rrc", "to"]`.

    Raises:
        ValueError: `name` is empty or has an unknown token.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            "paper_augmentations: `name` must be a non-empty string. "
            f"Received: {name!r}"
        )
    tokens = name.strip().lower().replace("-", "_").replace("+", "_").split("_")
    unknown = [t for t in tokens if t not in _TOKENS]
    if unknown:
        raise ValueError(
            f"paper_augmentations: unknown transformation(s) {unknown} in "
            f"{name!r}. Known tokens: {sorted(_TOKENS)}."
        )
    return tokens


def paper_augmentations(name="rrc_to", sampling_rate=100, seed=None):
    """Returns the augmentation stack of a setting of the paper.

    A setting name joins transformation tokens with `_`, in the order they are
    applied: `rrc` RandomResizedCrop, `to` TimeOut, `gn` GaussianNoise, `chr`
    ChannelResize, `dtw` DynamicTimeWarp, `gb` GaussianBlur, `neg` Negation,
    `blw` BaselineWander, `pln` PowerlineNoise, `em` EMNoise, `bls`
    BaselineShift, each with its paper/reference default parameters. The
    paper's best setting is `"rrc_to"` (RandomResizedCrop + TimeOut, the
    reference README's pretraining command); `"gn_chr_rrc"` is the reference
    code's default `--trafos`.

    Args:
        name: setting name, e.g. `"rrc_to"`. Case-insensitive.
        sampling_rate: sampling rate (Hz) for the physiological noises.
            Defaults to `100` (the paper's rate).
        seed: optional integer seed; layer `i` gets `seed + i`.

    Returns:
        An `AugmentationStack`.

    Example:

    ```python
    augment = keras_ecg.layers.paper_augmentations("rrc_to")
    views = augment(x), augment(x)
    ```
    """
    tokens = setting_tokens(name)
    layers = [_TOKENS[t](sampling_rate, _seed(seed, i)) for i, t in enumerate(tokens)]
    return AugmentationStack(
        layers, seed=_seed(seed, len(layers)), name=f"augment_{'_'.join(tokens)}"
    )


def physiological_noise(level, sampling_rate=100, seed=None):
    """Returns the robustness-test noise stack of a noise level (1..6).

    Applies, in the reference order, `BaselineWander`, `PowerlineNoise`,
    `EMNoise` and `BaselineShift` with the maximum strengths of
    `NOISE_LEVELS[level]` (from the reference code's `eval.py`). Strengths are
    in the units of the input (mV for raw PTB-XL).

    Args:
        level: integer noise level in `1..6` (higher is noisier).
        sampling_rate: sampling rate of the input (Hz). Defaults to `100`.
        seed: optional integer seed; layer `i` gets `seed + i`.

    Returns:
        An `AugmentationStack`.

    Example:

    ```python
    noisy = keras_ecg.layers.physiological_noise(3, sampling_rate=100)(x)
    ```
    """
    if isinstance(level, bool) or level not in NOISE_LEVELS:
        raise ValueError(
            f"physiological_noise: `level` must be one of {sorted(NOISE_LEVELS)}. "
            f"Received: {level!r}"
        )
    p = NOISE_LEVELS[level]
    layers = [
        BaselineWander(
            c_max=p["bw_cmax"], sampling_rate=sampling_rate, seed=_seed(seed, 0)
        ),
        PowerlineNoise(
            c_max=p["pl_cmax"], sampling_rate=sampling_rate, seed=_seed(seed, 1)
        ),
        EMNoise(c_max=p["em_cmax"], seed=_seed(seed, 2)),
        BaselineShift(
            c_max=p["bs_cmax"], sampling_rate=sampling_rate, seed=_seed(seed, 3)
        ),
    ]
    return AugmentationStack(
        layers, seed=_seed(seed, 4), name=f"physiological_noise_{level}"
    )
