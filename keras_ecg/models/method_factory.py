"""Builds each self-supervised method with the paper's or a CPU-sized setup.

`build_method` and `make_method_dataset` keep the CLI, the examples and the
benchmarks on one definition of "the paper's SimCLR", "a small CPC", etc.
"""

METHODS = ("simclr", "byol", "swav", "cpc")
ENCODER_SIZES = ("paper", "small", "tiny")

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


# Paper pretraining inputs: 2.5 s crops (250 samples at 100 Hz); CPC 10 s.
CROP_SECONDS = {"simclr": 2.5, "byol": 2.5, "swav": 2.5, "cpc": 10.0}


def build_encoder(size="small", input_leads=12):
    """An `XResNet1D` encoder with concat pooling for SimCLR/BYOL/SwAV."""
    from keras_ecg.models.encoders.xresnet1d import XResNet1D

    _check(size, ENCODER_SIZES, "encoder size")
    return XResNet1D(
        input_leads=input_leads, pooling="concat", **_XRESNET_CONFIGS[size]
    )


def build_method(
    method, size="small", input_leads=12, synchronized_batch_norm=False, **kwargs
):
    """Returns an uncompiled self-supervised model.

    Args:
        method: one of `"simclr"`, `"byol"`, `"swav"`, `"cpc"`.
        size: `"paper"` (the paper's reference code's configuration: see
            `projection_heads` and `_CPC_CONFIGS`), `"small"` (CPU-sized) or
            `"tiny"` (tests).
        input_leads: number of leads.
        synchronized_batch_norm: TensorFlow: every BatchNorm (encoder and
            heads) computes its statistics over the global batch of a
            distributed step (see `keras_ecg.distribute`); the encoder keeps
            the option in its config.
        **kwargs: forwarded to the method's constructor (temperature, tau, ...).
    """
    from keras_ecg.layers.projection_head import ProjectionHead

    if synchronized_batch_norm:
        from keras_ecg.distribute import synchronize_batch_norm

        model = build_method(method, size, input_leads, **kwargs)
        synchronize_batch_norm(model)
        model.encoder.synchronized_batch_norm = True
        return model
    _check(method, METHODS, "method")
    _check(size, ENCODER_SIZES, "size")
    if method == "cpc":
        from keras_ecg.models.cpc import CPC
        from keras_ecg.models.encoders.cpc_encoder import CPCContext
        from keras_ecg.models.encoders.cpc_encoder import CPCEncoder

        config = _CPC_CONFIGS[size]
        # The paper's 128 negatives per prediction cost GBs of activations at
        # 1000 timesteps; the CPU-sized configs score fewer.
        kwargs.setdefault("num_negatives", 128 if size == "paper" else 32)
        kwargs.setdefault("predict_all_steps", config["predict_all_steps"])
        return CPC(
            encoder=CPCEncoder(**config["encoder"]),
            context=CPCContext(
                units=config["context_units"], num_layers=config["context_layers"]
            ),
            **kwargs,
        )
    encoder = build_encoder(size, input_leads)
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

    SimCLR/BYOL/SwAV get two augmented views of a random crop; CPC gets plain
    crops (the paper pretrains CPC without augmentation). Records shorter than
    the crop are left out with one warning (`drop_short_records`); the crop is
    never shrunk to fit them.

    Args:
        method: `"simclr"`, `"byol"`, `"swav"` or `"cpc"`.
        data: an `ECGDataset`.
        batch_size: records per batch (full batches only).
        augmentation: augmentation layer for the views (not CPC).
        crop_seconds: crop duration; defaults to `CROP_SECONDS[method]` (the
            paper's 2.5 s, CPC 10 s), converted with `data.sampling_rate`.
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
        num_views=1 if method == "cpc" else 2,
        augmentation=None if method == "cpc" else augmentation,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        drop_remainder=True,
        standardizer=standardizer,
    )


def _check(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; expected one of {allowed}.")
