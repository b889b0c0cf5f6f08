"""BYOL (Grill et al. 2020) for ECG, as a backend-agnostic `keras.Model`."""

import inspect
import math
import warnings

import keras
from keras import ops

from keras_ecg.distribute import scale_loss_for_replicas
from keras_ecg.losses.byol_loss import byol_loss
from keras_ecg.models.self_supervised_model import SelfSupervisedModel
from keras_ecg.models.simclr import _build_layer
from keras_ecg.models.simclr import _is_shape
from keras_ecg.models.simclr import _regularization_loss
from keras_ecg.models.simclr import _split_views
from keras_ecg.models.simclr import _view_shape
from keras_ecg.utils import is_eager_torch_tensor


def _clone_from_config(layer, name):
    """An independent copy of `layer`'s architecture (fresh weights)."""
    config = dict(layer.get_config())
    if "name" in config:
        config["name"] = name
    return layer.__class__.from_config(config)


def _steps_per_epoch(x, batch_size, steps_per_epoch, validation_split):
    """Best-effort number of optimizer steps per epoch of `fit`, else None."""
    if steps_per_epoch is not None:
        return int(steps_per_epoch)
    try:
        import tensorflow as tf

        if isinstance(x, tf.data.Dataset):
            cardinality = int(x.cardinality())
            return cardinality if cardinality > 0 else None
    except ImportError:  # pragma: no cover - tf.data is a core dependency
        pass
    leaves = keras.tree.flatten(x) if isinstance(x, (list, tuple, dict)) else [x]
    if leaves and all(hasattr(leaf, "shape") for leaf in leaves):
        num_samples = int(leaves[0].shape[0])
        num_samples -= int(num_samples * float(validation_split or 0.0))
        return max(1, math.ceil(num_samples / (batch_size or 32)))
    try:
        # keras.utils.PyDataset, torch DataLoader, sized generators.
        return int(len(x))
    except TypeError:
        return None


# The torch backend runs every `keras.ops` call and `assign` eagerly through
# Python (tens of microseconds each); with ~270 target variables the
# per-variable copy / EMA below cost ~10% of a BYOL step. These two do the
# same updates in place with one multi-tensor torch op each.


def _torch_sync_target(online, target, target_synced):
    import torch

    if float(target_synced.value) > 0:
        return
    with torch.no_grad():
        torch._foreach_copy_([t.value for t in target], [o.value for o in online])


def _torch_ema(pairs, tau):
    """`target = tau * target + (1 - tau) * online`, in place."""
    import torch

    if not pairs:
        return
    with torch.no_grad():
        targets = [t.value for _, t in pairs]
        # lerp: target + (1 - tau) * (online - target).
        torch._foreach_lerp_(targets, [o.value for o, _ in pairs], 1.0 - float(tau))


@keras.saving.register_keras_serializable(package="keras_ecg")
class BYOL(SelfSupervisedModel):
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
        self.target_encoder = _clone_from_config(encoder, "target_encoder")
        self.target_projection_head = _clone_from_config(
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
        online, target = self.online_weights, self.target_weights
        mismatch = len(online) != len(target) or any(
            tuple(o.shape) != tuple(t.shape)
            for o, t in zip(online, target, strict=True)
        )
        if mismatch:
            raise ValueError(
                "BYOL: the target network rebuilt from the encoder/projector "
                "config does not match the online network "
                f"({len(online)} vs {len(target)} weights); make sure "
                "`get_config()` of the encoder and projection head fully "
                "describes their architecture."
            )
        # Layers stay trainable (so the target's BatchNorm uses batch
        # statistics in training mode); only their variables are frozen.
        for variable in target:
            variable.trainable = False
        self.ema_step = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            name="ema_step",
        )
        self.total_steps_variable = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(
                float(self.total_steps or self._pending_total_steps)
            ),
            dtype="float32",
            trainable=False,
            name="total_steps",
        )
        self.target_synced = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            name="target_synced",
        )
        # Inside a symbolic (stateless) build these assignments are dropped
        # together, leaving target_synced = 0 for the in-graph copy.
        for o, t in zip(online, target, strict=True):
            # A real copy: JAX would otherwise share (and donate twice) a buffer.
            t.assign(ops.copy(o.value))
        self.target_synced.assign(1.0)
        self.built = True

    def tau_at(self, step):
        """The EMA decay `tau_k` at step `k` under the current `total_steps`."""
        k = ops.cast(step, "float32")
        total = ops.cast(self.total_steps_variable.value, "float32")
        progress = ops.where(
            total > 0, ops.minimum(k / ops.maximum(total, 1.0), 1.0), 0.0
        )
        return 1.0 - (1.0 - self.tau) * (ops.cos(math.pi * progress) + 1.0) / 2.0

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
        online, target = self.online_weights, self.target_weights
        # Runs outside any layer call, so variables are read in full
        # precision (no mixed-precision autocast) for the copy and the EMA.
        # Under tf.distribute.MirroredStrategy these assignments run on every
        # replica: variables with aggregation "none" (all layer weights) take
        # each replica's value on its own device copy, and the values are
        # equal because they come from mirrored weights, so the target stays
        # mirrored without any cross-replica communication.
        eager_torch = is_eager_torch_tensor(predictions[0])
        if eager_torch:
            _torch_sync_target(online, target, self.target_synced)
        else:
            synced = self.target_synced.value > 0
            for o, t in zip(online, target, strict=True):
                t.assign(ops.where(synced, t.value, ops.stop_gradient(o.value)))
        self.target_synced.assign(1.0)
        views = y_pred["views"]
        z_1 = self._target_projection(views[0], training)
        z_2 = self._target_projection(views[1], training)
        loss = byol_loss(predictions[0], predictions[1], z_1, z_2)
        tau = self.tau_at(self.ema_step.value)
        if training:
            # Pre-update online weights: the optimizer applies this step's
            # gradients only after compute_loss returns.
            pairs = [(o, t) for o, t in zip(online, target, strict=True) if o.trainable]
            if eager_torch:
                _torch_ema(pairs, tau)
            else:
                for o, t in pairs:
                    t.assign(tau * t.value + (1.0 - tau) * ops.stop_gradient(o.value))
            self.ema_step.assign_add(1)
        self.tau_tracker.update_state(tau)
        regularization = _regularization_loss(self)
        if regularization is not None:
            loss = loss + regularization
        self.loss_tracker.update_state(loss)
        return scale_loss_for_replicas(loss)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; first sets `K` of the tau schedule if unset.

        With `total_steps=None`, `K` becomes the steps already taken plus
        `(epochs - initial_epoch) x steps per epoch` of this call, so the
        target's decay reaches 1 at its end (and resuming with
        `initial_epoch` continues the same schedule). See the class docstring.
        """
        if self.total_steps is None:
            bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            per_epoch = _steps_per_epoch(
                a["x"], a["batch_size"], a["steps_per_epoch"], a["validation_split"]
            )
            if per_epoch is None:
                if not self._warned_unknown_steps:
                    warnings.warn(
                        "BYOL: cannot infer the number of training steps (pass "
                        "`steps_per_epoch` to fit or `total_steps` to BYOL); the "
                        f"EMA decay stays constant at tau={self.tau}.",
                        stacklevel=2,
                    )
                    self._warned_unknown_steps = True
                total = 0.0
            else:
                if not self.built:
                    # K is stored in a variable created in build().
                    self._build_from_fit_input(a["x"])
                epochs = max(int(a["epochs"]) - int(a["initial_epoch"]), 0)
                total = float(int(self.ema_step.numpy()) + epochs * per_epoch)
            # Read by build() when Keras builds the model later (symbolically).
            self._pending_total_steps = total
            if self.built:
                self.total_steps_variable.assign(total)
        return super().fit(*args, **kwargs)

    def _build_from_fit_input(self, x):
        try:
            import tensorflow as tf

            if isinstance(x, tf.data.Dataset):
                spec = x.element_spec
                spec = spec[0] if isinstance(spec, tuple) and len(spec) == 1 else spec
                shape = keras.tree.map_structure(lambda s: tuple(s.shape), spec)
                self.build(shape)
                return
        except ImportError:  # pragma: no cover
            pass
        if isinstance(x, (list, tuple)):
            self.build([(None,) + tuple(v.shape[1:]) for v in x])
        elif hasattr(x, "shape"):
            self.build((None,) + tuple(x.shape[1:]))

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
