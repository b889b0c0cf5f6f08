"""Contrastive Predictive Coding (CPC) for 12-lead ECG."""

import keras
from keras import ops

from keras_ecg.distribute import gather_across_replicas
from keras_ecg.distribute import num_replicas
from keras_ecg.distribute import replicated_seed_generator
from keras_ecg.distribute import scale_loss_for_replicas
from keras_ecg.losses.info_nce import NEGATIVES_FROM
from keras_ecg.losses.info_nce import choose_cpc_scoring
from keras_ecg.losses.info_nce import cpc_info_nce_logits
from keras_ecg.losses.info_nce import info_nce_accuracy
from keras_ecg.losses.info_nce import info_nce_loss
from keras_ecg.losses.info_nce import sample_cpc_negative_indices
from keras_ecg.models.self_supervised_model import SelfSupervisedModel


@keras.saving.register_keras_serializable(package="keras_ecg")
class CPC(SelfSupervisedModel):
    """Contrastive Predictive Coding: encoder + causal context + InfoNCE.

    The encoder maps `(batch, T, leads)` to encodings `z` of shape
    `(batch, T', D)`, the context network (a unidirectional LSTM) maps them to
    `c` of shape `(batch, T', H)`. From `c_t`, one learned linear map (no
    bias) predicts `z_{t+k}` for `k = prediction_steps` only, as the paper's
    reference code (hhi-aml/ecg-selfsupervised, `CPCModel.cpc_loss`) does.
    `predict_all_steps=True` instead predicts every `k = 1 .. prediction_steps`
    with one map `W_k` per step, as van den Oord et al. 2018 did (and this
    class did by default before). With `predictor_hidden_units` the maps
    read a hidden ReLU layer of that width instead of `c_t` (the ECG-CPC
    reference's `--mlp`, "an additional hidden layer as in SimCLR":
    `Linear -> ReLU -> Linear` without bias). Each prediction is scored by dot
    product against the true
    `z_{t+k}` and `num_negatives` encodings drawn uniformly with replacement
    from the same sequence or the whole batch, the positive itself excluded.
    The loss is the InfoNCE cross-entropy averaged over positions for each
    step, then over steps; "accuracy" is the fraction of predictions whose
    positive strictly outscores every negative.

    Negatives are drawn in-graph from a `keras.random.SeedGenerator` stored on
    the model (its state is a non-trainable variable), so training is
    reproducible for a fixed `seed` and valid under JAX `jit`. The encoded
    sequence length `T'` must be static and larger than `prediction_steps`.
    `sample_weight` is ignored.

    Train with `model.compile(optimizer=...)` and `model.fit(x)` where `x` is
    `(batch, T, leads)` (paper: 1000 x 12 at 100 Hz).

    Args:
        encoder: encoder layer returning a sequence `(batch, T', D)`; defaults
            to the paper's 4 x 512 per-timestep MLP `CPCEncoder()`.
        context: context layer returning `(batch, T', H)`; defaults to
            `CPCContext(512, 2)`. It must be causal (the context at `t` may
            only see encodings up to `t`), e.g. a unidirectional
            `S4Encoder(pooling=None)`.
        prediction_steps: how many steps ahead to predict.
        num_negatives: negatives per prediction.
        negatives_from: `"sequence"` (same record, the paper's choice) or
            `"batch"` (any record of the batch).
        predict_all_steps: predict only `k = prediction_steps` (`False`, the
            default, the reference code) or every `k = 1..prediction_steps`.
        predictor_hidden_units: `None` (linear predictions from `c_t`) or
            the width of a hidden ReLU layer (with bias) before them.
        scoring: how negatives are scored, see
            `keras_ecg.losses.info_nce.cpc_info_nce_logits`; `"auto"` picks
            the cheapest by multiply-adds and memory written
            (`keras_ecg.losses.info_nce.choose_cpc_scoring`).
        seed: int seed of the negative sampler. None: a seed drawn from
            Python's `random` when the model is created, so it is
            reproducible after `keras.utils.set_random_seed` (or
            `keras_ecg.utils.enable_determinism`) and random otherwise.
        **kwargs: base `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> from keras_ecg.models.encoders import CPCContext, CPCEncoder
    >>> model = CPC(CPCEncoder((16, 16)), CPCContext(16, 1), prediction_steps=4,
    ...             num_negatives=8, seed=0)
    >>> model.compile(optimizer="adam")
    >>> x = np.random.randn(8, 100, 12).astype("float32")
    >>> history = model.fit(x, batch_size=4, epochs=1, verbose=0)
    >>> tuple(model.backbone(x).shape)
    (8, 100, 16)
    """

    def __init__(
        self,
        encoder=None,
        context=None,
        prediction_steps=12,
        num_negatives=128,
        negatives_from="sequence",
        predict_all_steps=False,
        scoring="auto",
        seed=None,
        predictor_hidden_units=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        from keras_ecg.models.encoders.cpc_encoder import CPCContext
        from keras_ecg.models.encoders.cpc_encoder import CPCEncoder

        if negatives_from not in NEGATIVES_FROM:
            raise ValueError(
                f"CPC: negatives_from must be one of {NEGATIVES_FROM}, got "
                f"{negatives_from!r}."
            )
        if scoring not in ("auto", "gather", "sequence_matrix", "batch_matrix"):
            raise ValueError(f"CPC: unknown scoring {scoring!r}.")
        if scoring == "sequence_matrix" and negatives_from != "sequence":
            raise ValueError(
                "CPC: scoring='sequence_matrix' needs negatives_from='sequence'."
            )
        if int(prediction_steps) < 1 or int(num_negatives) < 1:
            raise ValueError(
                "CPC: prediction_steps and num_negatives must be positive, got "
                f"{prediction_steps} and {num_negatives}."
            )
        self.encoder = encoder if encoder is not None else CPCEncoder()
        self.context = context if context is not None else CPCContext()
        self.prediction_steps = int(prediction_steps)
        self.num_negatives = int(num_negatives)
        self.negatives_from = negatives_from
        self.predict_all_steps = bool(predict_all_steps)
        if predictor_hidden_units is not None and int(predictor_hidden_units) < 1:
            raise ValueError(
                "CPC: predictor_hidden_units must be positive or None, got "
                f"{predictor_hidden_units}."
            )
        self.predictor_hidden_units = (
            None if predictor_hidden_units is None else int(predictor_hidden_units)
        )
        self.scoring = scoring
        self.seed = seed
        # Updated once per step under TF MirroredStrategy, so all replicas
        # draw the same global-batch negatives.
        self.seed_generator = replicated_seed_generator(seed, name="cpc_sampler")
        self.predictor = None
        self.predictor_hidden = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    @property
    def steps(self):
        """The prediction offsets `k` used by the loss."""
        if self.predict_all_steps:
            return tuple(range(1, self.prediction_steps + 1))
        return (self.prediction_steps,)

    def build(self, input_shape):
        # Length-agnostic build, so the backbone accepts any input length.
        input_shape = (input_shape[0], None) + tuple(input_shape[2:])
        if not self.encoder.built:
            self.encoder.build(input_shape)
        encoded_shape = tuple(self.encoder.compute_output_shape(input_shape))
        if not self.context.built:
            self.context.build(encoded_shape)
        context_shape = tuple(self.context.compute_output_shape(encoded_shape))
        self._encoding_dim = int(encoded_shape[-1])
        if self.predictor_hidden_units is not None:
            self.predictor_hidden = keras.layers.Dense(
                self.predictor_hidden_units,
                activation="relu",
                dtype=self.dtype_policy,
                name="predictor_hidden",
            )
            self.predictor_hidden.build(context_shape)
            context_shape = context_shape[:-1] + (self.predictor_hidden_units,)
        self.predictor = keras.layers.Dense(
            len(self.steps) * self._encoding_dim,
            use_bias=False,
            dtype=self.dtype_policy,
            name="step_predictors",
        )
        self.predictor.build(context_shape)
        self.built = True

    @property
    def backbone(self):
        """Encoder + context: `(batch, T, leads)` -> `(batch, T', H)`."""
        return keras.Sequential([self.encoder, self.context], name="cpc_backbone")

    def call(self, inputs, training=None):
        encodings = self.encoder(inputs, training=training)
        context = self.context(encodings, training=training)
        hidden = context
        if self.predictor_hidden is not None:
            hidden = self.predictor_hidden(context)
        predictions = self.predictor(hidden)
        # (batch, T', steps, D): predictions[:, t, j] estimates z_{t + steps[j]}.
        predictions = ops.reshape(
            predictions,
            tuple(ops.shape(predictions)[:-1]) + (len(self.steps), self._encoding_dim),
        )
        return {"encodings": encodings, "context": context, "predictions": predictions}

    def _scoring_method(self, batch_size, sequence_length):
        if self.scoring != "auto":
            return self.scoring
        return choose_cpc_scoring(
            sequence_length,
            self._encoding_dim,
            self.num_negatives,
            self.negatives_from,
            pool_size=batch_size if isinstance(batch_size, int) else None,
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y_pred is None:
            y_pred = self(x, training=training)
        encodings = y_pred["encodings"]
        predictions = y_pred["predictions"]
        sequence_length = encodings.shape[1]
        if sequence_length is None:
            raise ValueError(
                "CPC: the encoded sequence length must be static; give the "
                "input a fixed number of time steps (e.g. fixed-length crops)."
            )
        if sequence_length <= max(self.steps):
            raise ValueError(
                f"CPC: the encoder yields {sequence_length} steps, too few to "
                f"predict {max(self.steps)} steps ahead; use longer inputs or "
                "fewer prediction_steps."
            )
        batch_size = ops.shape(encodings)[0]
        pool, offset, local_shift = encodings, 0, 0
        pool_size = batch_size
        if self.negatives_from == "batch":
            # Under TF MirroredStrategy: negatives from the global batch.
            pool, offset = gather_across_replicas(encodings, return_offset=True)
            if pool is not encodings:
                pool_size = ops.shape(pool)[0]
        elif num_replicas() > 1:
            # Same-sequence negatives need no gathering, but drawing them for
            # the global batch (then keeping this replica's rows) makes the
            # draw identical to one device's.
            rows, offset = gather_across_replicas(
                ops.stop_gradient(encodings[:, 0, 0]), return_offset=True
            )
            pool_size = ops.shape(rows)[0]
            local_shift = offset * sequence_length
        method = self._scoring_method(pool_size, sequence_length)
        losses, accuracies = [], []
        for j, step in enumerate(self.steps):
            indices = sample_cpc_negative_indices(
                pool_size,
                sequence_length,
                step,
                self.num_negatives,
                self.negatives_from,
                seed=self.seed_generator,
            )
            if pool_size is not batch_size:
                indices = indices[offset : offset + batch_size] - local_shift
            logits = cpc_info_nce_logits(
                predictions[:, : sequence_length - step, j, :],
                encodings,
                step,
                indices,
                method=method,
                pool=pool,
            )
            losses.append(info_nce_loss(logits))
            accuracies.append(info_nce_accuracy(logits))
        loss = ops.mean(ops.stack(losses))
        if self.losses:
            # Weight regularisers of the encoder / context, if any.
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(ops.mean(ops.stack(accuracies)))
        return scale_loss_for_replicas(loss)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "context": keras.saving.serialize_keras_object(self.context),
                "prediction_steps": self.prediction_steps,
                "num_negatives": self.num_negatives,
                "negatives_from": self.negatives_from,
                "predict_all_steps": self.predict_all_steps,
                "scoring": self.scoring,
                "seed": self.seed,
                "predictor_hidden_units": self.predictor_hidden_units,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Configs without the key come from before it existed: all steps.
        config.setdefault("predict_all_steps", True)
        for key in ("encoder", "context"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
