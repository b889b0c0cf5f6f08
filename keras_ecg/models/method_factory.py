"""Builds each self-supervised method with the paper's or a CPU-sized setup.

`build_method` and `make_method_dataset` keep the CLI, the examples and the
benchmarks on one definition of "the paper's SimCLR", "a small CPC", etc.
"""

METHODS = ("simclr", "byol", "swav", "cpc", "jepa")
ENCODER_SIZES = ("paper", "small", "tiny")
# Encoder architectures: "xresnet1d" and "s4" map (batch, T, leads) to a
# pooled vector (SimCLR/BYOL/SwAV); for CPC the name is its context network
# ("lstm", or a causal "s4" stack), behind CPC's per-timestep encoder;
# "transformer" is JEPA's patch transformer, "s4" JEPA's S4 over the same
# patch tokens (`S4TokenEncoder`).
ENCODERS = ("xresnet1d", "lstm", "transformer", "s4")
DEFAULT_ENCODER = {
    "simclr": "xresnet1d",
    "byol": "xresnet1d",
    "swav": "xresnet1d",
    "cpc": "lstm",
    "jepa": "transformer",
}
# Which encoders each method can use (the first is its default).
METHOD_ENCODERS = {
    "simclr": ("xresnet1d", "s4"),
    "byol": ("xresnet1d", "s4"),
    "swav": ("xresnet1d", "s4"),
    "cpc": ("lstm", "s4"),
    "jepa": ("transformer", "s4"),
}
# Methods pretrained on plain crops (one view, no augmentation).
SINGLE_CROP_METHODS = ("cpc", "jepa")

# Paper: xresnet1d50, kernel 5, all stage widths 64 (SimCLR/BYOL/SwAV); CPC with
# the 4-layer per-timestep MLP encoder and a 2-layer LSTM with 512 units.
_XRESNET_CONFIGS = {
    "paper": dict(
        block_depths=(3, 4, 6, 3), widths=(64, 64, 64, 64), expansion=4, kernel_size=5
    ),
    "small": dict(
        block_depths=(1, 1, 1, 1),
        widths=(32, 32, 64, 64),
        expansion=1,
        kernel_size=5,
        stem_filters=(16, 16, 32),
    ),
    "tiny": dict(
        block_depths=(1, 1),
        widths=(16, 16),
        expansion=1,
        kernel_size=5,
        stem_filters=(8, 8, 16),
    ),
}
# "paper": per-timestep MLP encoder (kernels/strides 1) with BatchNorm at
# PyTorch's defaults, predicting only k = 12 with one bias-free 512 -> 512 map:
# the reference `main_cpc_lightning.py --fc-encoder` (`CPCModel`, `cpc_loss`).
# The CPU-sized configs use the paper's alternative strided conv encoder
# (kernels 10,4,4,4, strides 2,2,2,2), which runs the LSTM over 16x fewer
# steps, and keep the settings the benchmarks/README results were measured
# with: Keras' BatchNorm defaults and predictions for every k = 1..12.
_STRIDED = dict(kernel_sizes=(10, 4, 4, 4), strides=(2, 2, 2, 2))
_KERAS_BN = dict(batch_norm_momentum=0.99, batch_norm_epsilon=1e-3)
_CPC_CONFIGS = {
    "paper": dict(
        encoder=dict(
            filters=(512,) * 4,
            kernel_sizes=(1,) * 4,
            strides=(1,) * 4,
            batch_norm_momentum=0.9,
            batch_norm_epsilon=1e-5,
        ),
        context_units=512,
        context_layers=2,
        predict_all_steps=False,
    ),
    "small": dict(
        encoder=dict(filters=(128,) * 4, **_STRIDED, **_KERAS_BN),
        context_units=128,
        context_layers=1,
        predict_all_steps=True,
    ),
    "tiny": dict(
        encoder=dict(filters=(16,) * 4, **_STRIDED, **_KERAS_BN),
        context_units=16,
        context_layers=1,
        predict_all_steps=True,
    ),
}
# S4 encoders. "paper": the reference's S4 model (tmehari/ssm_ecg,
# `train_ecg_model.py --model s4` and `pretraining.py --s4` defaults): 4
# post-norm LayerNorm blocks, d_model 512, d_state 8, dropout 0.2, dt in
# [0.001, 0.1], A, B and dt frozen at their HiPPO initialisation (its
# `HippoSSKernel` registers them as buffers). SimCLR/BYOL/SwAV: bidirectional
# and mean-pooled, as its supervised S4 model; CPC: causal, unpooled.
_S4_CONFIGS = {
    "paper": dict(d_model=512, num_layers=4, d_state=8, dropout=0.2, train_ssm=False),
    # Full time resolution (no downsampling as in xresnet1d): d_model 64 keeps
    # a small-size SimCLR step on 128 x 250 x 12 views at ~1 step/s on 2 CPU
    # cores (d_model 128: ~0.5). No dropout: the reference's 0.2 drops whole
    # channels, twice per block; on 64 of them it cost the S4 encoder trained
    # from scratch on the PTB-XL subset 0.04 test macro AUC (seed 0: 0.779 vs
    # 0.819; README, S4 paragraph).
    "small": dict(d_model=64, num_layers=2, d_state=8, dropout=0.0),
    "tiny": dict(d_model=16, num_layers=1, d_state=4, dropout=0.1),
}
# (hidden width, output width) of the small/tiny projection heads (BatchNorm
# heads); the tuning search spaces reuse the hidden widths.
_HEAD_DIMS = {"paper": (512, 16), "small": (256, 64), "tiny": (32, 16)}


def projection_heads(method, size="small"):
    """`ProjectionHead` arguments of a method's heads at a size.

    `"paper"` gives the reference code's heads (hhi-aml/ecg-selfsupervised),
    on the xresnet1d50's 512 concat-pooled features:

    - SimCLR (`custom_simclr_bolts.Projection`, `out_dim: 16` in
      `bolts_config.yaml`): 512 -> 512 -> ReLU -> 16, no BatchNorm.
    - BYOL (`custom_byol_bolts.MLP`, projector and predictor): 512 -> 512
      without bias -> BatchNorm -> ReLU -> 16 (predictor from 16).
    - SwAV (`custom_swav_bolts.CustomResNet` with `CustomSwAV`'s defaults,
      `hidden_mlp=2048`, `feat_dim=128`): 512 -> 2048 -> BatchNorm -> ReLU ->
      128.

    `"small"` and `"tiny"` keep the BatchNorm heads of `_HEAD_DIMS` that
    their README results were measured with.

    Args:
        method: `"simclr"`, `"byol"` or `"swav"`.
        size: `"paper"`, `"small"` or `"tiny"`.

    Returns:
        dict of `ProjectionHead` keyword arguments.
    """
    _check(method, ("simclr", "byol", "swav"), "method with a projection head")
    _check(size, ENCODER_SIZES, "size")
    if size != "paper":
        hidden, output = _HEAD_DIMS[size]
        return dict(hidden_dims=(hidden,), output_dim=output)
    if method == "simclr":
        return dict(hidden_dims=(512,), output_dim=16, use_batch_norm=False)
    if method == "byol":
        return dict(hidden_dims=(512,), output_dim=16, use_bias_hidden=False)
    return dict(hidden_dims=(2048,), output_dim=128)


# Paper pretraining inputs: 2.5 s crops (250 samples at 100 Hz); CPC 10 s;
# JEPA 10 s (kweimann/ECG-JEPA: `channel_size: 5000` at 500 Hz).
CROP_SECONDS = {"simclr": 2.5, "byol": 2.5, "swav": 2.5, "cpc": 10.0, "jepa": 10.0}

# ---------------------------------------------------------------------------
# JEPA (kweimann/ECG-JEPA) and its transformer encoder.
# "paper": ViT-XS of configs/pretrain/ViTXS_ptbxl.yaml, the reference README's
# best encoder pretrained on PTB-XL alone (finetune / linear macro AUC 0.940 /
# 0.931 on "all" vs ViT-S's 0.930 / 0.926); its 50 ms patches (25 samples at
# 500 Hz) are 5 samples at 100 Hz, so a 10 s crop is the same 200 tokens.
# The CPU-sized configs keep the 50 ms patches and masking, narrower and
# shallower ("tiny": 100 ms patches, one block).
_TRANSFORMER_CONFIGS = {
    "paper": dict(patch_size=5, hidden_dim=192, num_layers=8, num_heads=4),
    "small": dict(patch_size=5, hidden_dim=64, num_layers=4, num_heads=4),
    "tiny": dict(patch_size=10, hidden_dim=16, num_layers=1, num_heads=2),
}
# ViT-XS's: no biases (qkv_bias, bias: False), 1 register, LayerNorm eps 1e-6.
_TRANSFORMER_COMMON = dict(
    mlp_ratio=4.0,
    use_qkv_bias=False,
    use_bias=False,
    num_registers=1,
    layer_norm_epsilon=1e-6,
)
# The predictor: half the encoder's width, as many heads (pred_dim 96,
# pred_depth 8, pred_num_heads 4 for ViT-XS).
_JEPA_PREDICTORS = {
    "paper": dict(hidden_dim=96, num_layers=8, num_heads=4),
    "small": dict(hidden_dim=32, num_layers=2, num_heads=4),
    "tiny": dict(hidden_dim=8, num_layers=1, num_heads=2),
}
# Masking (every reference config): 15-25% of the tokens kept as context,
# masked blocks of at least 10 tokens (500 ms).
_JEPA_SETTINGS = dict(min_keep_ratio=0.15, max_keep_ratio=0.25, min_block_size=10)
# Target momentum, linear from the first to the second value over the run.
# "paper": the reference's 0.998 -> 0.9995, an average over the last ~500 to
# ~2000 steps of its 100k. A CPU-sized run of ~200 steps (20 epochs of the
# PTB-XL subset) would keep ~78% of the random initialisation in the target,
# i.e. in the backbone (prod of m_k = exp(-200 x 0.00125)); 0.98 -> 0.998
# keeps ~11%.
_JEPA_MOMENTUM = {
    "paper": (0.998, 0.9995),
    "small": (0.98, 0.998),
    "tiny": (0.98, 0.998),
}
# The reference's AdamW (betas 0.9 / 0.99, eps 1e-6), its learning-rate warm-up
# share (10k of 100k steps) and floor, and the mean of its cosine weight-decay
# schedule 0.01 -> 0.1 (Keras' decay is a constant).
JEPA_OPTIMIZER = dict(
    beta_1=0.9,
    beta_2=0.99,
    epsilon=1e-6,
    weight_decay=0.055,
    warmup_fraction=0.1,
    final_learning_rate=1e-6,
)
# Its decay applies to dense / convolution kernels only: not to an S4 block's
# A, B, dt, C and D either (D as a whole name: "d", TensorFlow's ".../d:0").
_NO_WEIGHT_DECAY = [
    "bias",
    "gamma",
    "beta",
    "registers",
    "mask_token",
    "log_dt",
    "log_a_real",
    "a_imag",
    "b_real",
    "b_imag",
    "c_real",
    "c_imag",
    r"(^|/)d(:\d+)?$",
]

# JEPA with `encoder="s4"` (`S4TokenEncoder`). No S4-JEPA has been published:
# "paper" combines ECG-CPC's S4 stack (tmehari/ssm_ecg: d_model 512, 4
# post-norm blocks, d_state 8, A, B and dt frozen) with ViT-XS's tokens (50 ms
# patches of all 12 leads, 200 per 10 s crop at 100 Hz) and JEPA's setup (no
# dropout, as every ECG-JEPA config: the target encoder runs in training
# mode, and dropout there would make the regression targets noisy). "small" /
# "tiny" keep the S4 sizes of the other methods (A, B, dt trained; tiny's
# 100 ms patches). The predictor is the transformer JEPA's of the same size
# (ViT-XS's 96-wide, 8-block one at "paper"), so that the two JEPAs differ in
# their encoder only.
_S4_JEPA_CONFIGS = {
    size: dict(
        {k: v for k, v in _S4_CONFIGS[size].items() if k != "dropout"},
        patch_size=_TRANSFORMER_CONFIGS[size]["patch_size"],
        dropout=0.0,
    )
    for size in ENCODER_SIZES
}


def build_transformer_encoder(size="small", input_leads=12, pooling="avg"):
    """An `ECGTransformer` (JEPA's encoder) of a size.

    Args:
        size: `"paper"` (ViT-XS at 100 Hz), `"small"` or `"tiny"`.
        input_leads: number of leads.
        pooling: the downstream pooling, `"avg"` (default), `"register"` or
            None (see `ECGTransformer`).
    """
    from keras_ecg.models.encoders.ecg_transformer import ECGTransformer

    _check(size, ENCODER_SIZES, "encoder size")
    return ECGTransformer(
        input_leads=input_leads,
        pooling=pooling,
        name="encoder",
        **_TRANSFORMER_CONFIGS[size],
        **_TRANSFORMER_COMMON,
    )


def build_s4_token_encoder(size="small", input_leads=12, pooling="avg"):
    """An `S4TokenEncoder` (JEPA's S4 encoder) of a size (`_S4_JEPA_CONFIGS`).

    Args:
        size: `"paper"`, `"small"` or `"tiny"`.
        input_leads: number of leads.
        pooling: the downstream pooling (default `"avg"`, as the transformer).
    """
    from keras_ecg.models.encoders.s4_token_encoder import S4TokenEncoder

    _check(size, ENCODER_SIZES, "encoder size")
    return S4TokenEncoder(
        input_leads=input_leads,
        pooling=pooling,
        bidirectional=True,
        name="encoder",
        **_S4_JEPA_CONFIGS[size],
    )


def build_jepa(size="small", input_leads=12, encoder="transformer", **kwargs):
    """`JEPA` with the encoder and predictor of a size.

    Args:
        size: `"paper"`, `"small"` or `"tiny"`.
        input_leads: number of leads.
        encoder: `"transformer"` (`ECGTransformer`, ViT-XS at `"paper"`) or
            `"s4"` (a bidirectional `S4TokenEncoder` over the same 50 ms
            tokens, see `_S4_JEPA_CONFIGS`).
        **kwargs: forwarded to `JEPA` (masking, momentum, `seed`, ...).
    """
    from keras_ecg.layers.jepa_predictor import JEPAPredictor
    from keras_ecg.models.jepa import JEPA

    _check(size, ENCODER_SIZES, "size")
    _check(encoder, METHOD_ENCODERS["jepa"], "JEPA encoder")
    momentum, final_momentum = _JEPA_MOMENTUM[size]
    settings = dict(_JEPA_SETTINGS, momentum=momentum, final_momentum=final_momentum)
    settings.update(kwargs)
    predictor = JEPAPredictor(
        name="predictor",
        mlp_ratio=_TRANSFORMER_COMMON["mlp_ratio"],
        use_qkv_bias=_TRANSFORMER_COMMON["use_qkv_bias"],
        use_bias=_TRANSFORMER_COMMON["use_bias"],
        **_JEPA_PREDICTORS[size],
    )
    if encoder == "s4":
        context_encoder = build_s4_token_encoder(size, input_leads)
    else:
        context_encoder = build_transformer_encoder(size, input_leads)
    return JEPA(encoder=context_encoder, predictor=predictor, **settings)


def jepa_learning_rate(learning_rate=1e-3, total_steps=None):
    """kweimann/ECG-JEPA's learning rate over `total_steps` (`cosine_schedule`).

    A linear warm-up from `1e-6 * learning_rate / 1e-3` over the first 10% of
    the steps to `learning_rate`, then a cosine decay back to that floor
    (the reference: 1e-6 -> 1e-3 over 10k steps, -> 1e-6 at 100k).

    Args:
        learning_rate: the peak.
        total_steps: steps of the run; None (or 0): the constant peak.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`, or the float peak.
    """
    import keras

    rate = float(learning_rate)
    if not total_steps:
        return rate
    total = max(int(total_steps), 2)
    warmup = min(int(round(JEPA_OPTIMIZER["warmup_fraction"] * total)), total - 1)
    floor = JEPA_OPTIMIZER["final_learning_rate"] * rate / 1e-3
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=floor if warmup else rate,
        decay_steps=total - warmup,
        alpha=floor / rate,
        warmup_target=rate if warmup else None,
        warmup_steps=warmup,
    )


def pretraining_optimizer(method, learning_rate=1e-3, total_steps=None):
    """The optimizer `keras-ecg pretrain` trains `method` with.

    SimCLR, BYOL, SwAV and CPC: `AdamW(learning_rate)` (Keras' defaults
    otherwise). JEPA: the reference's AdamW (`JEPA_OPTIMIZER`): betas 0.9 /
    0.99, epsilon 1e-6, weight decay 0.055 on dense and convolution kernels
    only and, when `total_steps` is known, `jepa_learning_rate`'s warm-up and
    cosine decay.

    Args:
        method: one of `METHODS`.
        learning_rate: the peak learning rate.
        total_steps: optimizer steps of the run (JEPA's schedule); None:
            constant.

    Returns:
        An unbuilt `keras.optimizers.AdamW`.
    """
    import keras

    _check(method, METHODS, "method")
    if method != "jepa":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    settings = JEPA_OPTIMIZER
    optimizer = keras.optimizers.AdamW(
        learning_rate=jepa_learning_rate(learning_rate, total_steps),
        beta_1=settings["beta_1"],
        beta_2=settings["beta_2"],
        epsilon=settings["epsilon"],
        weight_decay=settings["weight_decay"],
    )
    optimizer.exclude_from_weight_decay(var_names=_NO_WEIGHT_DECAY)
    return optimizer


# ---------------------------------------------------------------------------


def resolve_encoder(method, encoder=None):
    """The encoder name `method` uses: `encoder`, or the method's default.

    Args:
        method: one of `METHODS`.
        encoder: one of `ENCODERS`, or `None` for `DEFAULT_ENCODER[method]`.

    Raises:
        ValueError: an unknown method or encoder, or an encoder the method
            cannot use (e.g. CPC with `"xresnet1d"`).

    Example:

    >>> resolve_encoder("cpc")
    'lstm'
    """
    _check(method, METHODS, "method")
    if encoder is None:
        return DEFAULT_ENCODER[method]
    _check(encoder, ENCODERS, "encoder")
    allowed = METHOD_ENCODERS[method]
    if encoder not in allowed:
        raise ValueError(
            f"Encoder {encoder!r} does not fit method {method!r}; {method} takes "
            f"one of {allowed}."
        )
    return encoder


def encoder_of(model):
    """The `ENCODERS` name of a built method's encoder, or None if unknown.

    For CPC, the name of its context network (`"lstm"` or `"s4"`).

    Example:

    >>> encoder_of(build_method("cpc", size="tiny"))
    'lstm'
    """
    from keras_ecg.models.encoders.cpc_encoder import CPCContext
    from keras_ecg.models.encoders.ecg_transformer import ECGTransformer
    from keras_ecg.models.encoders.s4_encoder import S4Encoder
    from keras_ecg.models.encoders.s4_token_encoder import S4TokenEncoder
    from keras_ecg.models.encoders.xresnet1d import XResNet1D

    kinds = (
        (S4Encoder, "s4"),
        (S4TokenEncoder, "s4"),
        (CPCContext, "lstm"),
        (XResNet1D, "xresnet1d"),
        (ECGTransformer, "transformer"),
    )
    part = getattr(model, "context", None)
    if part is None:
        part = getattr(model, "encoder", None)
    for cls, name in kinds:
        if isinstance(part, cls):
            return name
    return None


def build_encoder(size="small", input_leads=12, encoder="xresnet1d", **overrides):
    """A pooled encoder for SimCLR/BYOL/SwAV: `(batch, T, leads) -> (batch, F)`.

    Args:
        size: `"paper"`, `"small"` or `"tiny"`.
        input_leads: number of leads.
        encoder: `"xresnet1d"` (concat pooling, the paper's) or `"s4"` (a
            bidirectional `S4Encoder`, mean-pooled as the reference's
            supervised S4 model).
        **overrides: constructor arguments that replace the size's (e.g.
            `dropout=0.2` for an S4 encoder), for ablations.
    """
    _check(size, ENCODER_SIZES, "encoder size")
    _check(encoder, ("xresnet1d", "s4"), "pooled encoder")
    if encoder == "s4":
        from keras_ecg.models.encoders.s4_encoder import S4Encoder

        config = dict(bidirectional=True, pooling="avg", **_S4_CONFIGS[size])
        return S4Encoder(input_channels=input_leads, **dict(config, **overrides))
    from keras_ecg.models.encoders.xresnet1d import XResNet1D

    config = dict(pooling="concat", **_XRESNET_CONFIGS[size])
    return XResNet1D(input_leads=input_leads, **dict(config, **overrides))


def build_cpc_context(size="small", encoder="lstm", input_channels=None):
    """CPC's context network: `CPCContext` (LSTM) or a causal `S4Encoder`.

    Args:
        size: `"paper"`, `"small"` or `"tiny"`.
        encoder: `"lstm"` or `"s4"`.
        input_channels: width of CPC's encodings (the S4 stack's input);
            defaults to the size's CPC encoder width.
    """
    _check(size, ENCODER_SIZES, "size")
    _check(encoder, METHOD_ENCODERS["cpc"], "CPC context")
    config = _CPC_CONFIGS[size]
    if encoder == "lstm":
        from keras_ecg.models.encoders.cpc_encoder import CPCContext

        return CPCContext(
            units=config["context_units"], num_layers=config["context_layers"]
        )
    from keras_ecg.models.encoders.s4_encoder import S4Encoder

    if input_channels is None:
        input_channels = config["encoder"]["filters"][-1]
    return S4Encoder(
        input_channels=input_channels,
        bidirectional=False,
        pooling=None,
        name="s4_context",
        **_S4_CONFIGS[size],
    )


def build_method(
    method,
    size="small",
    input_leads=12,
    synchronized_batch_norm=False,
    encoder=None,
    **kwargs,
):
    """Returns an uncompiled self-supervised model.

    Args:
        method: one of `"simclr"`, `"byol"`, `"swav"`, `"cpc"`, `"jepa"`.
        size: `"paper"` (the paper's reference code's configuration: see
            `projection_heads`, `_CPC_CONFIGS` and `_S4_CONFIGS`; JEPA:
            kweimann/ECG-JEPA's ViT-XS, see `build_jepa`), `"small"`
            (CPU-sized) or `"tiny"` (tests).
        input_leads: number of leads.
        synchronized_batch_norm: TensorFlow, torch: every BatchNorm (encoder
            and heads) computes its statistics over the global batch of a
            distributed step (see `keras_ecg.distribute`); the encoder keeps
            the option in its config.
        encoder: `None` (the method's default, `DEFAULT_ENCODER`) or one of
            `METHOD_ENCODERS[method]`. `"s4"`: SimCLR/BYOL/SwAV get a
            bidirectional, mean-pooled `S4Encoder`; CPC gets the ECG-CPC
            configuration, a causal `S4Encoder` as its context network
            behind its usual encoder, with an MLP predictor; JEPA gets an
            `S4TokenEncoder` (S4 over 50 ms patch tokens, see `build_jepa`).
        **kwargs: forwarded to the method's constructor (temperature, tau, ...).

    Raises:
        ValueError: an unknown method, size or encoder, or an encoder the
            method cannot use.
    """
    from keras_ecg.layers.projection_head import ProjectionHead

    if method == "jepa":
        # JEPA's encoders (transformer, S4 with LayerNorm) have no BatchNorm.
        encoder = resolve_encoder(method, encoder)
        return build_jepa(size, input_leads, encoder=encoder, **kwargs)
    if synchronized_batch_norm:
        from keras_ecg.distribute import synchronize_batch_norm

        model = build_method(method, size, input_leads, encoder=encoder, **kwargs)
        synchronize_batch_norm(model)
        for part in ("encoder", "context"):
            if hasattr(getattr(model, part, None), "synchronized_batch_norm"):
                getattr(model, part).synchronized_batch_norm = True
        return model
    encoder = resolve_encoder(method, encoder)
    _check(size, ENCODER_SIZES, "size")
    if method == "cpc":
        from keras_ecg.models.cpc import CPC
        from keras_ecg.models.encoders.cpc_encoder import CPCEncoder

        config = _CPC_CONFIGS[size]
        # The paper's 128 negatives per prediction cost GBs of activations at
        # 1000 timesteps; the CPU-sized configs score fewer.
        kwargs.setdefault("num_negatives", 128 if size == "paper" else 32)
        kwargs.setdefault("predict_all_steps", config["predict_all_steps"])
        if encoder == "s4":
            # ECG-CPC (`pretraining.py --fc-encoder --mlp --s4
            # --negatives-from-same-seq-only`): a causal S4 stack as the
            # context network and an MLP predictor as wide as the stack
            # (`--mlp`: Linear(512, 512) -> ReLU -> Linear(512, 512, no
            # bias)). The CPU-sized configs keep their LSTM CPC's strided
            # encoder and k = 1..12 predictions: only the context network and
            # the predictor differ.
            kwargs.setdefault("predictor_hidden_units", _S4_CONFIGS[size]["d_model"])
        return CPC(
            encoder=CPCEncoder(**config["encoder"]),
            context=build_cpc_context(size, encoder),
            **kwargs,
        )
    encoder = build_encoder(size, input_leads, encoder)
    if method == "simclr":
        from keras_ecg.models.simclr import SimCLR

        return SimCLR(
            encoder,
            projection_head=ProjectionHead(**projection_heads("simclr", size)),
            **kwargs,
        )
    if method == "byol":
        from keras_ecg.models.byol import BYOL

        heads = projection_heads("byol", size)
        return BYOL(
            encoder,
            projection_head=ProjectionHead(**heads),
            prediction_head=ProjectionHead(**heads),
            **kwargs,
        )
    from keras_ecg.models.swav import SwAV

    # The reference trains with CustomSwAV's default of 3000 prototypes.
    kwargs.setdefault("num_prototypes", 3000 if size == "paper" else 32)
    return SwAV(
        encoder,
        projection_head=ProjectionHead(**projection_heads("swav", size)),
        **kwargs,
    )


def make_method_dataset(
    method,
    data,
    batch_size,
    augmentation=None,
    crop_seconds=None,
    seed=0,
    standardizer=None,
):
    """The tf.data pretraining input each method expects.

    SimCLR/BYOL/SwAV get two augmented views of a random crop; CPC and JEPA
    get plain crops (the paper pretrains CPC, kweimann/ECG-JEPA pretrains
    JEPA, without augmentation). Records shorter than
    the crop are left out with one warning (`drop_short_records`); the crop is
    never shrunk to fit them.

    Args:
        method: `"simclr"`, `"byol"`, `"swav"`, `"cpc"` or `"jepa"`.
        data: an `ECGDataset`.
        batch_size: records per batch (full batches only).
        augmentation: augmentation layer for the views (not CPC / JEPA).
        crop_seconds: crop duration; defaults to `CROP_SECONDS[method]` (the
            paper's 2.5 s, CPC and JEPA 10 s), converted with
            `data.sampling_rate`.
        seed: seeds the order, the crops and the augmentation draws.
        standardizer: optional fitted `LeadStandardizer` applied to every
            crop in the pipeline (no standardised copy of `data`).
    """
    from keras_ecg.data.durations import drop_short_records
    from keras_ecg.data.durations import seconds_to_samples
    from keras_ecg.data.pipelines import make_pretraining_dataset

    _check(method, METHODS, "method")
    crop_seconds = CROP_SECONDS[method] if crop_seconds is None else crop_seconds
    crop_length = seconds_to_samples(crop_seconds, data.sampling_rate, "crop_seconds")
    data = drop_short_records(data, crop_length, f"{crop_seconds:g} s crop")
    return make_pretraining_dataset(
        data,
        crop_length=crop_length,
        num_views=1 if method in SINGLE_CROP_METHODS else 2,
        augmentation=None if method in SINGLE_CROP_METHODS else augmentation,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        drop_remainder=True,
        standardizer=standardizer,
    )


def _check(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {allowed}.")
