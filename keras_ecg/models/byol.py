"""BYOL (Grill et al. 2020) for ECG, as a backend-agnostic `keras.Model`."""

import math

import keras
from keras import ops

from keras_ecg.distribute import scale_loss_for_replicas
from keras_ecg.losses.byol_loss import byol_loss
from keras_ecg.models.ema_target import EMATargetMixin
from keras_ecg.models.ema_target import clone_from_config
from keras_ecg.models.ema_target import fit_steps_per_epoch
from keras_ecg.models.self_supervised_model import SelfSupervisedModel
from keras_ecg.models.simclr import _build_layer
from keras_ecg.models.simclr import _is_shape
from keras_ecg.models.simclr import _regularization_loss
from keras_ecg.models.simclr import _split_views
from keras_ecg.models.simclr import _view_shape
from keras_ecg.utils import is_eager_torch_tensor

# The name this module exported before the EMA code moved to `ema_target`.
_steps_per_epoch = fit_steps_per_epoch


@keras.saving.register_keras_serializable(package="keras_ecg")
class BYOL(EMATargetMixin, SelfSupervisedModel):
    """BYOL: an online network predicts a slowly moving target network.

    The online network (`encoder` -> `projection_head` -> `prediction_head`)
    is trained to predict, for each of two views, the target projection of
    the other view with the symmetric normalised regression loss
    (`keras_ecg.losses.byol_loss`: both directions summed, averaged over the
    batch). The target (an independent copy of encoder + projector built by a
    config round trip) is never trained by gradients: its variables are
    non-trainable and, in every training step, updated in-graph by
    `target = tau_k * target + (1 - tau_k) * online` with the cosine schedule
    `tau_k = 1 - (1 - tau) * (cos(pi * k / K) + 1) / 2`, `k` the step count
    and `K = total_steps`.

    Design choices:

    - The EMA runs inside `compute_loss`, i.e. before the optimizer applies
      this step's gradients, so it uses the *pre-update* online weights
      `theta_k` (the ones that produced this step's loss):
      `xi_{k+1} = tau_k xi_k + (1 - tau_k) theta_k`. The paper and the
      reference update after the optimizer step (`theta_{k+1}`); the
      difference is a one-step lag. As a consequence the first step leaves
      the target unchanged (`xi_1 = theta_0 = xi_0`).
    - Only target variables whose online counterpart is trainable are
      averaged. The target's BatchNorm runs in training mode like the online
      one (batch statistics, as in BYOL); its moving statistics are updated
      by its own forward pass, not averaged.
    - `k` is the model's own non-trainable step counter (`ema_step`), not
      `optimizer.iterations`, which the JAX trainer does not expose inside
      `compute_loss`. It is saved with the model, so resumed training
      continues the schedule.
    - If `total_steps` is None, `fit` sets `K` = steps already taken + the
      steps of this `fit` call (`(epochs - initial_epoch) x steps per epoch`,
      from `steps_per_epoch`, the dataset cardinality or the array length).
      If that is unknown, tau stays at `tau` and a warning is emitted once.
    - The target starts as an exact copy of the online network: copied when
      the model is built eagerly (calling it, `build`, loading); when Keras
      builds it symbolically inside `fit`, an in-graph copy happens at the
      first training step instead (flag variable `target_synced`).

    Inputs: a tuple of two views, each `(batch, timesteps, leads)` (a
    `tf.data` dataset yields `((view_1, view_2),)`), or one batch tensor when
    an `augmenter` makes the two views. Calling the model on views returns a
    dict of per-view lists: `"views"`, `"embeddings"`, `"projections"` and
    `"predictions"` (online network); on a single tensor without augmenter,
    the `"embeddings"`, `"projections"`, `"predictions"` tensors.

    Args:
        encoder: the network to pretrain, `(batch, timesteps, leads)` to
            `(batch, features)`; exposed as `backbone`.
        projection_head: online projector; defaults to
            `ProjectionHead(hidden_dims=(512,), output_dim=128)` (with BN, as
            the reference's MLP).
        prediction_head: online predictor; same default as the projector.
        tau: base EMA decay `tau_0` of the target network.
        total_steps: number of training steps `K` of the cosine tau schedule;
            None infers it in `fit` (see above).
        augmenter: optional Keras layer; when given and the input is a single
            tensor, two views are made with `augmenter(x, training=True)`.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Example:

    >>> import keras, numpy as np
    >>> encoder = keras.Sequential([
    ...     keras.layers.Conv1D(8, 5, activation="relu"),
    ...     keras.layers.GlobalAveragePooling1D()])
    >>> model = BYOL(encoder, tau=0.99)
    >>> model.compile(optimizer="adam")
    >>> views = np.random.normal(size=(2, 16, 250, 12)).astype("float32")
    >>> _ = model.fit((views[0], views[1]), batch_size=8, epochs=2, verbose=0)
    >>> int(model.total_steps_variable.numpy())
    4
    """

    def __init__(
        self,
        encoder,
        projection_head=None,
        prediction_head=None,
        tau=0.996,
        total_steps=None,
        augmenter=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(tau) <= 1.0:
            raise ValueError(f"BYOL: tau must be in [0, 1], got {tau}.")
        if total_steps is not None and int(total_steps) < 1:
            raise ValueError(f"BYOL: total_steps must be >= 1, got {total_steps}.")
        if projection_head is None or prediction_head is None:
            from keras_ecg.layers.projection_head import ProjectionHead

            if projection_head is None:
                projection_head = ProjectionHead(
                    hidden_dims=(512,),
                    output_dim=128,
                    name="projection_head",
                    dtype=self.dtype_policy,
                )
            if prediction_head is None:
                prediction_head = ProjectionHead(
                    hidden_dims=(512,),
                    output_dim=128,
                    name="prediction_head",
                    dtype=self.dtype_policy,
                )
        self.encoder = encoder
        self.projection_head = projection_head
        self.prediction_head = prediction_head
        self.augmenter = augmenter
        self.tau = float(tau)
        self.total_steps = None if total_steps is None else int(total_steps)
        self.target_encoder = clone_from_config(encoder, "target_encoder")
        self.target_projection_head = clone_from_config(
            projection_head, "target_projection_head"
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.tau_tracker = keras.metrics.Mean(name="tau")
        self._warned_unknown_steps = False
        self._pending_total_steps = 0.0

    @property
    def backbone(self):
        """The online encoder, `(batch, timesteps, leads) -> (batch, features)`."""
        return self.encoder

    @property
    def metrics(self):
        return [self.loss_tracker, self.tau_tracker]

    @property
    def online_weights(self):
        """Online encoder + projector weights, aligned with `target_weights`."""
        return self.encoder.weights + self.projection_head.weights

    @property
    def target_weights(self):
        """Target encoder + projector weights (all non-trainable)."""
        return self.target_encoder.weights + self.target_projection_head.weights

    def build(self, input_shape):
        view_shape = _view_shape(input_shape, self.augmenter)
        if self.augmenter is not None and not self.augmenter.built:
            if _is_shape(input_shape):
                self.augmenter.build(tuple(input_shape))
        feature_shape = _build_layer(self.encoder, view_shape)
        projection_shape = _build_layer(self.projection_head, feature_shape)
        _build_layer(self.prediction_head, projection_shape)
        _build_layer(self.target_encoder, view_shape)
        _build_layer(self.target_projection_head, feature_shape)
        self._create_ema_state("BYOL")
        self.built = True

    def tau_at(self, step):
        """The EMA decay `tau_k` at step `k` under the current `total_steps`."""
        progress = self.schedule_progress(step)
        return 1.0 - (1.0 - self.tau) * (ops.cos(math.pi * progress) + 1.0) / 2.0

    def _initial_decay_text(self):
        return f"tau={self.tau}"

    def call(self, inputs, training=None):
        views, multi_view = _split_views(inputs, self.augmenter, 2)
        embeddings = [self.encoder(v, training=training) for v in views]
        projections = [self.projection_head(h, training=training) for h in embeddings]
        predictions = [self.prediction_head(z, training=training) for z in projections]
        if not multi_view:
            return {
                "embeddings": embeddings[0],
                "projections": projections[0],
                "predictions": predictions[0],
            }
        return {
            "views": views,
            "embeddings": embeddings,
            "projections": projections,
            "predictions": predictions,
        }

    def _target_projection(self, view, training):
        features = self.target_encoder(view, training=training)
        return ops.stop_gradient(
            self.target_projection_head(features, training=training)
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y_pred is None:
            y_pred = self(x, training=training)
        predictions = y_pred["predictions"]
        if not isinstance(predictions, (list, tuple)) or len(predictions) != 2:
            count = len(predictions) if isinstance(predictions, (list, tuple)) else 1
            raise ValueError(
                f"BYOL needs exactly two views per sample, got {count}: feed a "
                "tuple of two views (a dataset yielding ((view_1, view_2),)) or "
                "construct the model with an `augmenter`."
            )
        eager_torch = is_eager_torch_tensor(predictions[0])
        self._sync_target(eager_torch)
        views = y_pred["views"]
        z_1 = self._target_projection(views[0], training)
        z_2 = self._target_projection(views[1], training)
        loss = byol_loss(predictions[0], predictions[1], z_1, z_2)
        tau = self.tau_at(self.ema_step.value)
        if training:
            # Pre-update online weights: the optimizer applies this step's
            # gradients only after compute_loss returns.
            self._ema_update(tau, eager_torch)
        self.tau_tracker.update_state(tau)
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
                "projection_head": keras.saving.serialize_keras_object(
                    self.projection_head
                ),
                "prediction_head": keras.saving.serialize_keras_object(
                    self.prediction_head
                ),
                "tau": self.tau,
                "total_steps": self.total_steps,
                "augmenter": keras.saving.serialize_keras_object(self.augmenter)
                if self.augmenter is not None
                else None,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "projection_head", "prediction_head", "augmenter"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
