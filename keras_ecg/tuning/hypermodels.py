"""KerasTuner hypermodels whose objective is a downstream probe score.

`SSLHyperModel.build(hp)` builds and compiles a self-supervised method with
hyperparameters from `keras_ecg.tuning.define_search_space`;
`SSLHyperModel.fit(hp, model, ...)` pretrains it with plain `model.fit` on the
method's `tf.data` input (crop length and augmentation strengths chosen by
`hp`), then extracts per-record embeddings of the train and validation
records with the frozen backbone and fits a fast scikit-learn probe
(logistic regression or kNN). It returns `{"probe_auc": ..., "loss": ...}`,
so tuners run with `keras_tuner.Objective("probe_auc", "max")`.

Backends: `RandomSearch`, `BayesianOptimization` and `Hyperband` run under
TensorFlow, JAX and PyTorch (KerasTuner 1.4 saves each trial's best weights as
`checkpoint.weights.h5` and reloads them into a model rebuilt by `build(hp)`,
which works for these subclassed models because `build(hp)` builds every
weight, including BYOL's target network and CPC's predictor). KerasTuner still
imports TensorFlow under every backend (for `tf.io.gfile`), and the data
pipeline is `tf.data` everywhere. Tested: RandomSearch with SimCLR and
BayesianOptimization / Hyperband with CPC on all three backends; PyTorch runs
eagerly and is the slowest (a tiny CPC trial takes minutes, its LSTM is not
compiled). Under TensorFlow, KerasTuner's unconditional `tensorboard` import
is skipped when no TensorBoard callback is given (see `make_tuner`). A model
whose pretraining diverges (NaN loss) scores `probe_auc = 0` with a warning
instead of failing the search.
"""

import math
import warnings

import keras
import keras_tuner as kt

from keras_ecg.data.durations import seconds_to_samples
from keras_ecg.evaluation.linear_probe import extract_embeddings
from keras_ecg.evaluation.linear_probe import knn_probe
from keras_ecg.evaluation.linear_probe import logistic_probe
from keras_ecg.models.method_factory import _CPC_CONFIGS
from keras_ecg.models.method_factory import _HEAD_DIMS
from keras_ecg.models.method_factory import _JEPA_MOMENTUM
from keras_ecg.models.method_factory import _JEPA_PREDICTORS
from keras_ecg.models.method_factory import _JEPA_SETTINGS
from keras_ecg.models.method_factory import _S4_CONFIGS
from keras_ecg.models.method_factory import _S4_JEPA_CONFIGS
from keras_ecg.models.method_factory import _TRANSFORMER_COMMON
from keras_ecg.models.method_factory import _TRANSFORMER_CONFIGS
from keras_ecg.models.method_factory import _XRESNET_CONFIGS
from keras_ecg.models.method_factory import make_method_dataset
from keras_ecg.models.method_factory import resolve_encoder
from keras_ecg.tuning.search_spaces import define_search_space

PROBES = ("logistic", "knn")


def build_augmentation(rrc_min_ratio, timeout_max_ratio, seed=None):
    """RandomResizedCrop + TimeOut (the paper's best setting) with given strengths.

    Args:
        rrc_min_ratio: lower bound of the RandomResizedCrop crop ratio.
        timeout_max_ratio: upper bound of the TimeOut masked fraction; the
            lower bound is half of it (the paper's default is (0.2, 0.4)).
        seed: optional integer seed.
    """
    from keras_ecg.layers.augmentation.augmentation_stack import AugmentationStack
    from keras_ecg.layers.augmentation.random_resized_crop import RandomResizedCrop
    from keras_ecg.layers.augmentation.time_out import TimeOut

    def _seed(i):
        return None if seed is None else seed + i

    return AugmentationStack(
        [
            RandomResizedCrop(
                crop_ratio_range=(float(rrc_min_ratio), 1.0), seed=_seed(0)
            ),
            TimeOut(
                crop_ratio_range=(timeout_max_ratio / 2.0, timeout_max_ratio),
                seed=_seed(1),
            ),
        ],
        seed=_seed(2),
        name="tuned_rrc_to",
    )


def _s4_encoder(encoder_space, size, input_channels, causal):
    """An `S4Encoder` with the searched width, depth, state and dropout."""
    from keras_ecg.models.encoders.s4_encoder import S4Encoder

    config = dict(_S4_CONFIGS[size])
    config.update(
        d_model=int(encoder_space["d_model"]),
        num_layers=int(encoder_space["num_layers"]),
        d_state=int(encoder_space["d_state"]),
        dropout=float(encoder_space["dropout"]),
    )
    return S4Encoder(
        input_channels=input_channels,
        bidirectional=not causal,
        pooling=None if causal else "avg",
        **config,
    )


def build_method_from_space(method, space, size="small", input_leads=12, encoder=None):
    """Builds an uncompiled method from the values of `define_search_space`.

    `encoder` defaults to the space's `encoder_name` (else the method's
    default encoder).
    """
    from keras_ecg.layers.projection_head import ProjectionHead

    encoder_space = space["encoder"]
    encoder_name = resolve_encoder(method, encoder or space.get("encoder_name"))
    if method == "cpc":
        from keras_ecg.models.cpc import CPC
        from keras_ecg.models.encoders.cpc_encoder import CPCContext
        from keras_ecg.models.encoders.cpc_encoder import CPCEncoder

        num_layers = len(_CPC_CONFIGS[size]["encoder"]["filters"])
        width = int(encoder_space["width"])
        kwargs = dict(space["method_kwargs"])
        if encoder_name == "s4":
            context = _s4_encoder(encoder_space, size, width, causal=True)
            # ECG-CPC's MLP predictor, as wide as the S4 stack.
            kwargs.setdefault("predictor_hidden_units", context.d_model)
        else:
            context = CPCContext(
                units=int(encoder_space["context_units"]),
                num_layers=_CPC_CONFIGS[size]["context_layers"],
            )
        return CPC(
            encoder=CPCEncoder(
                filters=(width,) * num_layers,
                kernel_sizes=(1,) * num_layers,
                strides=(1,) * num_layers,
            ),
            context=context,
            **kwargs,
        )

    if method == "jepa":
        return _jepa_from_space(space, size, input_leads, encoder_name)

    if encoder_name == "s4":
        encoder = _s4_encoder(encoder_space, size, input_leads, causal=False)
    else:
        from keras_ecg.models.encoders.xresnet1d import XResNet1D

        config = dict(_XRESNET_CONFIGS[size])
        width = int(encoder_space["width"])
        stages = len(config["widths"])
        # Keep the base config's widening pattern (e.g. 32, 32, 64, 64),
        # rescaled.
        base = config["widths"][0]
        config["widths"] = tuple(max(1, w * width // base) for w in config["widths"])
        config["block_depths"] = (int(encoder_space["blocks_per_stage"]),) * stages
        encoder = XResNet1D(input_leads=input_leads, pooling="concat", **config)
    hidden = _HEAD_DIMS[size][0]
    output = int(space["projection_dim"])

    def head():
        return ProjectionHead(hidden_dims=(hidden,), output_dim=output)

    if method == "simclr":
        from keras_ecg.models.simclr import SimCLR

        return SimCLR(encoder, projection_head=head(), **space["method_kwargs"])
    if method == "byol":
        from keras_ecg.models.byol import BYOL

        return BYOL(
            encoder,
            projection_head=head(),
            prediction_head=head(),
            **space["method_kwargs"],
        )
    from keras_ecg.models.swav import SwAV

    return SwAV(encoder, projection_head=head(), **space["method_kwargs"])


def _jepa_from_space(space, size, input_leads, encoder_name="transformer"):
    """JEPA with the searched width / depth (the predictor half as wide):
    an `ECGTransformer`, or with `encoder_name="s4"` an `S4TokenEncoder`."""
    from keras_ecg.layers.jepa_predictor import JEPAPredictor
    from keras_ecg.models.encoders.ecg_transformer import ECGTransformer
    from keras_ecg.models.encoders.s4_token_encoder import S4TokenEncoder
    from keras_ecg.models.jepa import JEPA

    if encoder_name == "s4":
        config = dict(_S4_JEPA_CONFIGS[size])
        config.update(
            d_model=int(space["encoder"]["d_model"]),
            num_layers=int(space["encoder"]["num_layers"]),
            d_state=int(space["encoder"]["d_state"]),
        )
        width = config["d_model"]
        encoder = S4TokenEncoder(input_leads=input_leads, name="encoder", **config)
    else:
        width = int(space["encoder"]["width"])
        config = dict(_TRANSFORMER_CONFIGS[size], **_TRANSFORMER_COMMON)
        config.update(hidden_dim=width, num_layers=int(space["encoder"]["num_layers"]))
        encoder = ECGTransformer(input_leads=input_leads, name="encoder", **config)
    predictor = dict(_JEPA_PREDICTORS[size], hidden_dim=width // 2)
    for key in ("mlp_ratio", "use_qkv_bias", "use_bias", "layer_norm_epsilon"):
        predictor[key] = _TRANSFORMER_COMMON[key]
    settings = dict(_JEPA_SETTINGS, final_momentum=_JEPA_MOMENTUM[size][1])
    settings.update(space["method_kwargs"])
    # The searched context share r: between r and r + 0.1 kept, as the
    # reference's 0.15-0.25.
    settings["max_keep_ratio"] = settings["min_keep_ratio"] + 0.1
    return JEPA(encoder, JEPAPredictor(name="predictor", **predictor), **settings)


class SSLHyperModel(kt.HyperModel):
    """A self-supervised method as a KerasTuner hypermodel scored by a probe.

    Args:
        method: `"simclr"`, `"byol"`, `"swav"`, `"cpc"` or `"jepa"`.
        train_data: labelled `ECGDataset` to pretrain on and fit the probe on.
        val_data: labelled `ECGDataset` the probe is scored on.
        size: `"tiny"`, `"small"` or `"paper"` (architecture ranges).
        batch_size: pretraining batch size (capped at the train set size).
        probe: `"logistic"` (linear probe) or `"knn"`.
        probe_k: neighbours of the kNN probe.
        probe_stride_seconds: embedding window stride in seconds; defaults to
            half the crop.
        seed: seeds the augmentations and the pretraining pipeline.
        standardizer: optional fitted `LeadStandardizer`: the data are then
            in mV and every pretraining crop and probe window is standardised
            in the input pipeline (no standardised copies of the data).
        encoder: `None` (the method's default encoder) or an encoder name
            the method can use (`keras_ecg.models.method_factory`).
        name, tunable: `keras_tuner.HyperModel` arguments.

    Example:

    ```python
    hypermodel = SSLHyperModel("simclr", train, val, size="small")
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=keras_tuner.Objective("probe_auc", "max"),
        max_trials=5, directory="tuning")
    tuner.search(epochs=5)
    ```
    """

    def __init__(
        self,
        method,
        train_data,
        val_data,
        size="small",
        batch_size=64,
        probe="logistic",
        probe_k=5,
        probe_stride_seconds=None,
        seed=0,
        standardizer=None,
        name=None,
        tunable=True,
        encoder=None,
    ):
        super().__init__(name=name or f"{method}_hypermodel", tunable=tunable)
        self.encoder = resolve_encoder(method, encoder)
        if probe not in PROBES:
            raise ValueError(f"Unknown probe {probe!r}; expected one of {PROBES}.")
        for split, data in (("train_data", train_data), ("val_data", val_data)):
            if data is None or data.labels is None:
                raise ValueError(
                    f"SSLHyperModel: {split} must be a labelled ECGDataset (the "
                    "probe objective needs labels)."
                )
        if train_data.num_leads != val_data.num_leads:
            raise ValueError(
                f"SSLHyperModel: train has {train_data.num_leads} leads, val "
                f"{val_data.num_leads}."
            )
        self.method = method
        self.train_data = train_data
        self.val_data = val_data
        self.size = size
        self.batch_size = int(batch_size)
        self.probe = probe
        self.probe_k = int(probe_k)
        self.probe_stride_seconds = probe_stride_seconds
        self.seed = seed
        self.standardizer = standardizer
        if train_data.sampling_rate != val_data.sampling_rate:
            raise ValueError(
                f"SSLHyperModel: train is at {train_data.sampling_rate} Hz, val at "
                f"{val_data.sampling_rate} Hz."
            )

    def _space(self, hp):
        space = define_search_space(hp, self.method, self.size, self.encoder)
        space["crop_length"] = seconds_to_samples(
            float(space["crop_seconds"]), self.train_data.sampling_rate
        )
        return space

    def build(self, hp):
        space = self._space(hp)
        model = build_method_from_space(
            self.method, space, self.size, input_leads=self.train_data.num_leads
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=space["learning_rate"])
        )
        # Build every weight now: KerasTuner reloads checkpoints into this model.
        model.build((None, space["crop_length"], self.train_data.num_leads))
        return model

    def fit(self, hp, model, *args, epochs=1, callbacks=None, verbose=0, **kwargs):
        """Pretrains `model`, then returns the probe score on the val split.

        Extra `kwargs` of `tuner.search` other than `initial_epoch` are
        ignored; the data come from the constructor.
        """
        space = self._space(hp)
        augmentation = None
        if space["augmentation"] is not None:
            augmentation = build_augmentation(**space["augmentation"], seed=self.seed)
        dataset = make_method_dataset(
            self.method,
            self.train_data,
            batch_size=min(self.batch_size, len(self.train_data)),
            augmentation=augmentation,
            crop_seconds=float(space["crop_seconds"]),
            seed=self.seed,
            standardizer=self.standardizer,
        )
        history = model.fit(
            dataset,
            epochs=epochs,
            initial_epoch=kwargs.get("initial_epoch", 0),
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,
        )
        losses = history.history.get("loss") or [math.nan]
        loss = float(losses[-1])
        if not math.isfinite(loss):
            warnings.warn(
                f"{self.method} pretraining diverged (loss {loss}) with "
                f"{hp.values}; scoring probe_auc = 0.",
                stacklevel=2,
            )
            return {"probe_auc": 0.0, "loss": 1e9}
        return {
            "probe_auc": self.probe_score(model, float(space["crop_seconds"])),
            "loss": loss,
        }

    def probe_score(self, model, window_seconds):
        """Macro AUC on the val split of the probe on `model.backbone`'s embeddings."""
        backbone = model.backbone
        if not isinstance(backbone, keras.Model):
            backbone = keras.Sequential([backbone])
        stride = self.probe_stride_seconds or window_seconds / 2
        embed = dict(
            window_seconds=window_seconds,
            stride_seconds=stride,
            standardizer=self.standardizer,
        )
        train_emb = extract_embeddings(backbone, self.train_data, **embed)
        val_emb = extract_embeddings(backbone, self.val_data, **embed)
        args = (train_emb, self.train_data.labels, val_emb, self.val_data.labels)
        with warnings.catch_warnings():
            # Small val splits may lack a class; macro_auc excludes it already.
            warnings.simplefilter("ignore", UserWarning)
            if self.probe == "knn":
                result = knn_probe(*args, k=self.probe_k)
            else:
                result = logistic_probe(*args)
        return result["macro_auc"]
