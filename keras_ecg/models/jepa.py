"""ECG-JEPA (Weimann & Conrad 2025): joint-embedding predictive pretraining."""

import keras
from keras import ops

from keras_ecg.distribute import gather_across_replicas
from keras_ecg.distribute import num_replicas
from keras_ecg.distribute import replicated_seed_generator
from keras_ecg.distribute import scale_loss_for_replicas
from keras_ecg.losses.jepa_loss import jepa_loss
from keras_ecg.models.ema_target import EMATargetMixin
from keras_ecg.models.ema_target import clone_from_config
from keras_ecg.models.encoders.ecg_transformer import gather_tokens
from keras_ecg.models.jepa_masks import keep_count_bounds
from keras_ecg.models.jepa_masks import keep_mask_to_indices
from keras_ecg.models.jepa_masks import sample_keep_count
from keras_ecg.models.jepa_masks import sample_keep_masks
from keras_ecg.models.self_supervised_model import SelfSupervisedModel
from keras_ecg.models.simclr import _regularization_loss
from keras_ecg.utils import is_eager_torch_tensor


@keras.saving.register_keras_serializable(package="keras_ecg")
class JEPA(EMATargetMixin, SelfSupervisedModel):
    """JEPA: predict the representations of masked time blocks from the rest.

    kweimann/ECG-JEPA (`models/JEPA.py`, `data/masks.py`, `pretrain.py`) as
    one `keras.Model` trained with plain `fit` on `(batch, T, leads)` crops
    (the reference: 10 s, no augmentation). Each training step:

    1. Masks (`keras_ecg.models.jepa_masks`): one keep ratio
       `U(min_keep_ratio, max_keep_ratio)` for the batch, so every sample
       keeps `ceil(ratio * N)` of the `N` tokens; per sample, the masked
       tokens form blocks of at least `min_block_size` tokens drawn as the
       reference's `MaskCollator`. Kept tokens are the context, masked ones
       the targets (disjoint, together the whole sequence). Drawn in-graph
       from the model's `seed_generator` (reproducible for a fixed `seed`,
       valid under JAX `jit` / `tf.function`), for the GLOBAL batch in a
       data-parallel step (each replica keeps its rows), so a distributed
       run draws what one device would.
    2. The context `encoder` encodes only the context tokens; the
       `predictor` predicts, from them and the target positions, the
       target tokens.
    3. The target encoder (a config clone of `encoder`, never trained by
       gradients) is first moved by the EMA
       `target = m_k * target + (1 - m_k) * encoder` with the linear
       schedule `m_k = momentum + (final_momentum - momentum) * min(k / K, 1)`
       (`k` = `ema_step`, `K` = `total_steps`), then encodes the full
       sequence; its final-normed tokens at the target positions are the
       regression targets (no gradient).
    4. The loss is the mean absolute error over target tokens and features
       (`keras_ecg.losses.jepa_loss`).

    The EMA is updated before the targets are computed, with the context
    encoder's weights of this step (before the optimizer applies its
    gradients), exactly as the reference's `update_momentum_encoder` at the
    start of its forward pass. The target copy, the step counter `ema_step`,
    `total_steps_variable` and the inference of `K` in `fit` (when
    `total_steps` is None) are BYOL's (`keras_ecg.models.ema_target`).

    Downstream, `backbone` is the TARGET encoder (the reference's
    `finetune.py` loads `target_encoder.*`), pooled as its `pooling` says.
    It is frozen (`trainable=False`) inside JEPA; `train_downstream`
    unfreezes it for finetuning (set `backbone.trainable = True` when
    finetuning it yourself).

    The encoder interface (what `JEPA` needs from `encoder`; implemented by
    `keras_ecg.models.encoders.ECGTransformer`):

    - `encoder(x, return_tokens=True, training=...)`: tokens
      `(batch, N, hidden_dim)` of `x` `(batch, T, leads)`.
    - `encoder(x, token_indices=idx, token_valid=valid, return_tokens=True,
      training=...)`: the context tokens `(batch, K, hidden_dim)` at the
      positions `idx` (int32 `(batch, K)`, increasing over the valid slots),
      computed without any information from the other positions;
      `valid` (boolean `(batch, K)`) flags padding slots, whose outputs are
      ignored and which real tokens must not see. A transformer drops the
      other tokens; an encoder that cannot drop tokens (a state-space
      model) replaces every token outside the valid `idx` by a learned mask
      token, runs over the full sequence and returns its outputs at `idx`.
    - `encoder.num_tokens(T)`: `N` for inputs of `T` samples (static).
    - `encoder.hidden_dim`: the token width.
    - `get_config()` / `from_config()` describing the whole architecture
      (the target encoder is built from it).

    Inputs: `(batch, T, leads)` with a static `T` that `encoder.num_tokens`
    accepts. Calling the model returns a dict with the `"predictions"`
    `(batch, M, hidden_dim)` and the masks: `"context_indices"`,
    `"context_valid"` `(batch, K)`, `"target_indices"`, `"target_valid"`
    `(batch, M)`, with `K = ceil(max_keep_ratio * N)` and
    `M = N - ceil(min_keep_ratio * N)` slots.

    Args:
        encoder: the context encoder (default `ECGTransformer()`, ViT-XS).
        predictor: default `keras_ecg.layers.JEPAPredictor()`.
        min_keep_ratio: smallest fraction of tokens kept as context.
        max_keep_ratio: largest fraction of tokens kept as context.
        min_block_size: smallest block of masked tokens drawn at once.
        momentum: EMA decay of the target at the first step.
        final_momentum: EMA decay at step `K` and after.
        total_steps: `K`; None infers it in `fit`.
        seed: int seed of the masks; None draws one from Python's `random`
            when the model is created (reproducible after
            `keras.utils.set_random_seed`).
        **kwargs: base `keras.Model` arguments (`name`, `preprocessor`, ...).

    Example:

    >>> import numpy as np
    >>> from keras_ecg.layers import JEPAPredictor
    >>> from keras_ecg.models.encoders import ECGTransformer
    >>> model = JEPA(
    ...     ECGTransformer(patch_size=10, hidden_dim=16, num_layers=1, num_heads=2),
    ...     JEPAPredictor(hidden_dim=8, num_layers=1, num_heads=2),
    ...     min_block_size=3, seed=0)
    >>> model.compile(optimizer="adam")
    >>> x = np.random.randn(8, 250, 12).astype("float32")
    >>> history = model.fit(x, batch_size=4, epochs=1, verbose=0)
    >>> tuple(model.backbone(x).shape)
    (8, 16)
    """

    def __init__(
        self,
        encoder=None,
        predictor=None,
        min_keep_ratio=0.15,
        max_keep_ratio=0.25,
        min_block_size=10,
        momentum=0.998,
        final_momentum=0.9995,
        total_steps=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 < float(min_keep_ratio) <= float(max_keep_ratio) < 1.0:
            raise ValueError(
                "JEPA: need 0 < min_keep_ratio <= max_keep_ratio < 1, got "
                f"{min_keep_ratio} and {max_keep_ratio}."
            )
        if int(min_block_size) < 1:
            raise ValueError(
                f"JEPA: min_block_size must be >= 1, got {min_block_size}."
            )
        for name, value in (("momentum", momentum), ("final_momentum", final_momentum)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"JEPA: {name} must be in [0, 1], got {value}.")
        if total_steps is not None and int(total_steps) < 1:
            raise ValueError(f"JEPA: total_steps must be >= 1, got {total_steps}.")
        if encoder is None:
            from keras_ecg.models.encoders.ecg_transformer import ECGTransformer

            encoder = ECGTransformer(dtype=self.dtype_policy, name="encoder")
        if predictor is None:
            from keras_ecg.layers.jepa_predictor import JEPAPredictor

            predictor = JEPAPredictor(dtype=self.dtype_policy, name="predictor")
        self.encoder = encoder
        self.predictor = predictor
        self.min_keep_ratio = float(min_keep_ratio)
        self.max_keep_ratio = float(max_keep_ratio)
        self.min_block_size = int(min_block_size)
        self.momentum = float(momentum)
        self.final_momentum = float(final_momentum)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.seed = seed
        self.target_encoder = clone_from_config(encoder, "target_encoder")
        # Updated once per step under TF MirroredStrategy, so all replicas
        # draw the same global-batch masks.
        self.seed_generator = replicated_seed_generator(seed, name="jepa_masks")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.momentum_tracker = keras.metrics.Mean(name="momentum")
        self._warned_unknown_steps = False
        self._pending_total_steps = 0.0

    @property
    def backbone(self):
        """The target encoder, as the reference evaluates it downstream."""
        return self.target_encoder

    @property
    def metrics(self):
        return [self.loss_tracker, self.momentum_tracker]

    @property
    def online_weights(self):
        """The context encoder's weights, aligned with `target_weights`."""
        return self.encoder.weights

    @property
    def target_weights(self):
        """The target encoder's weights (all non-trainable)."""
        return self.target_encoder.weights

    def build(self, input_shape):
        # Length-agnostic, so the backbone accepts any multiple of a patch.
        input_shape = (input_shape[0], None) + tuple(input_shape[2:])
        for encoder in (self.encoder, self.target_encoder):
            if not encoder.built:
                encoder.build(input_shape)
        if not self.predictor.built:
            self.predictor.build((None, None, int(self.encoder.hidden_dim)))
        self._create_ema_state("JEPA")
        # Frozen as a layer too (it has no BatchNorm that would need training
        # mode), so that `backbone.trainable = True` unfreezes it downstream:
        # under TensorFlow, setting an already-True flag is a no-op.
        self.target_encoder.trainable = False
        self.built = True

    def momentum_at(self, step):
        """The EMA decay `m_k` at step `k` under the current `total_steps`."""
        progress = self.schedule_progress(step)
        return self.momentum + (self.final_momentum - self.momentum) * progress

    def _initial_decay_text(self):
        return f"momentum={self.momentum}"

    def slot_counts(self, num_tokens):
        """`(context slots, target slots)` for sequences of `num_tokens` tokens."""
        low, high = keep_count_bounds(
            num_tokens, self.min_keep_ratio, self.max_keep_ratio
        )
        return high, num_tokens - low

    def sample_masks(self, batch_size, num_tokens):
        """Draws one batch of masks (see the class docstring).

        Args:
            batch_size: rows of this replica's batch (int or scalar tensor).
            num_tokens: tokens per sequence.

        Returns:
            `(context_indices, context_valid, target_indices, target_valid)`.
        """
        num_tokens = int(num_tokens)
        if num_tokens - self.slot_counts(num_tokens)[0] < self.min_block_size:
            raise ValueError(
                f"JEPA: {num_tokens} tokens keep up to "
                f"{self.slot_counts(num_tokens)[0]} as context, leaving fewer "
                f"masked tokens than min_block_size={self.min_block_size}; use "
                "longer inputs or a smaller min_block_size / max_keep_ratio."
            )
        total, offset = batch_size, 0
        if num_replicas() > 1:
            # Drawn for the global batch (each replica keeps its rows), so the
            # masks are those one device would draw.
            rows, offset = gather_across_replicas(
                ops.zeros((batch_size,), "float32"), return_offset=True
            )
            total = ops.shape(rows)[0]
        num_keep = sample_keep_count(
            num_tokens, self.min_keep_ratio, self.max_keep_ratio, self.seed_generator
        )
        keep = sample_keep_masks(
            total, num_tokens, num_keep, self.min_block_size, self.seed_generator
        )
        if total is not batch_size:
            keep = keep[offset : offset + batch_size]
        context_slots, target_slots = self.slot_counts(num_tokens)
        context_indices, context_valid = keep_mask_to_indices(keep, context_slots)
        target_indices, target_valid = keep_mask_to_indices(
            keep, target_slots, select_kept=False
        )
        return context_indices, context_valid, target_indices, target_valid

    def call(self, inputs, training=None):
        timesteps = inputs.shape[1]
        if timesteps is None:
            raise ValueError(
                "JEPA: the number of time steps must be static; give the input "
                "a fixed length (e.g. fixed-length crops)."
            )
        num_tokens = self.encoder.num_tokens(timesteps)
        batch_size = inputs.shape[0]
        if batch_size is None:
            batch_size = ops.shape(inputs)[0]
        masks = self.sample_masks(batch_size, num_tokens)
        context_indices, context_valid, target_indices, target_valid = masks
        context = self.encoder(
            inputs,
            token_indices=context_indices,
            token_valid=context_valid,
            return_tokens=True,
            training=training,
        )
        predictions = self.predictor(
            context,
            context_indices,
            target_indices,
            context_valid=context_valid,
            target_valid=target_valid,
            training=training,
        )
        return {
            "predictions": predictions,
            "context_indices": context_indices,
            "context_valid": context_valid,
            "target_indices": target_indices,
            "target_valid": target_valid,
        }

    def target_tokens(self, x, target_indices, training=False):
        """The target encoder's tokens of `x` at `target_indices` (no gradient)."""
        tokens = self.target_encoder(x, return_tokens=True, training=training)
        return ops.stop_gradient(gather_tokens(tokens, target_indices))

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if x is None:
            raise ValueError("JEPA.compute_loss needs the input batch `x`.")
        if y_pred is None:
            y_pred = self(x, training=training)
        predictions = y_pred["predictions"]
        eager_torch = is_eager_torch_tensor(predictions)
        self._sync_target(eager_torch)
        momentum = self.momentum_at(self.ema_step.value)
        if training:
            # As the reference: the target moves first (with this step's
            # context-encoder weights), then computes the targets.
            self._ema_update(momentum, eager_torch)
        targets = self.target_tokens(x, y_pred["target_indices"], training=training)
        loss = jepa_loss(predictions, targets, y_pred["target_valid"])
        self.momentum_tracker.update_state(momentum)
        regularization = _regularization_loss(self)
        if regularization is not None:
            loss = loss + regularization
        self.loss_tracker.update_state(loss)
        return scale_loss_for_replicas(loss)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "predictor": keras.saving.serialize_keras_object(self.predictor),
                "min_keep_ratio": self.min_keep_ratio,
                "max_keep_ratio": self.max_keep_ratio,
                "min_block_size": self.min_block_size,
                "momentum": self.momentum,
                "final_momentum": self.final_momentum,
                "total_steps": self.total_steps,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "predictor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
