"""SwAV (Swapping Assignments between Views) for 12-lead ECG."""

import keras
from keras import ops

from keras_ecg.distribute import gather_across_replicas
from keras_ecg.distribute import scale_loss_for_replicas
from keras_ecg.losses.swav_loss import swav_loss
from keras_ecg.models.self_supervised_model import SelfSupervisedModel


@keras.saving.register_keras_serializable(package="keras_ecg")
class SwAV(SelfSupervisedModel):
    """SwAV: online clustering with swapped prediction across views.

    Each view goes through `encoder` -> `projection_head` -> L2 normalisation
    -> `SwAVPrototypes` (cosine scores against unit-norm prototypes). Codes for
    the views in `crops_for_assign` come from Sinkhorn-Knopp equipartition
    (float32, no gradient); every other view predicts them with a softmax at
    `temperature` (see `keras_ecg.losses.swav_loss`). Views of different
    lengths (multi-crop: 2 global + N small crops) are allowed; consecutive
    views of the same length share one encoder pass (and batch statistics).

    State updated in-graph (non-trainable variables, so JAX `jit` and
    `steps_per_execution` work): `train_step_counter` (training steps done;
    kept by the model because the optimizer's counter is not readable inside
    the JAX loss function), the feature `queue` and hence the prototype
    freeze.

    - Prototype freeze: for the first `freeze_prototypes_steps` training steps
      the prototypes get an exactly zero gradient (the scores use a
      stop-gradient copy of them). The paper freezes them for the first
      epoch: pass `freeze_prototypes_steps=steps_per_epoch`, e.g.
      `len(dataset)` or `ceil(num_records / batch_size)`.
    - Queue: with `queue_length > 0`, the last `queue_length` embeddings of
      each assigned view are kept (newest first) and prepended to the batch in
      Sinkhorn, only once `train_step_counter >= queue_start_step` (None: from
      the start) and only for slots already filled. The queue is updated only
      in training and never receives gradients.

    Input: a tuple of views, each `(batch, timesteps, leads)`; a tf.data
    dataset must yield `((view_1, view_2, ...),)`. With `augmenter`, a single
    tensor `(batch, timesteps, leads)` is also accepted and `num_views` views
    are made on-device by `augmenter(x, training=True)`.

    Args:
        encoder: Keras layer/model `(batch, T, leads)` -> `(batch, F)`.
        projection_head: layer `(batch, F)` -> `(batch, D)`; defaults to
            `ProjectionHead(hidden_dims=(512,), output_dim=128)`.
        num_prototypes: number of prototypes `K`.
        temperature: softmax temperature of the swapped prediction.
        epsilon: Sinkhorn entropic regularisation.
        sinkhorn_iterations: Sinkhorn iterations.
        crops_for_assign: indices of the views whose codes are predicted.
        queue_length: feature queue length per assigned view (0: no queue).
        queue_start_step: training step from which the queue is used.
        freeze_prototypes_steps: training steps with frozen prototypes.
        augmenter: optional Keras layer making views from a single tensor.
        num_views: number of views made with `augmenter`.
        **kwargs: base `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> encoder = keras.Sequential([keras.layers.Conv1D(8, 5),
    ...                             keras.layers.GlobalAveragePooling1D()])
    >>> model = SwAV(encoder, num_prototypes=10)
    >>> model.compile(optimizer="adam")
    >>> v1 = np.random.randn(8, 100, 12).astype("float32")
    >>> v2 = np.random.randn(8, 100, 12).astype("float32")
    >>> history = model.fit((v1, v2), batch_size=4, epochs=1, verbose=0)
    """

    def __init__(
        self,
        encoder,
        projection_head=None,
        num_prototypes=300,
        temperature=0.1,
        epsilon=0.05,
        sinkhorn_iterations=3,
        crops_for_assign=(0, 1),
        queue_length=0,
        queue_start_step=None,
        freeze_prototypes_steps=0,
        augmenter=None,
        num_views=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Imported lazily: the heads live in another module of the package.
        from keras_ecg.layers.projection_head import ProjectionHead
        from keras_ecg.layers.swav_prototypes import SwAVPrototypes

        if encoder is None:
            raise ValueError("SwAV: an encoder is required.")
        self.encoder = encoder
        self.projection_head = (
            projection_head
            if projection_head is not None
            else ProjectionHead(hidden_dims=(512,), output_dim=128)
        )
        self.num_prototypes = int(num_prototypes)
        self.prototypes = SwAVPrototypes(
            self.num_prototypes, dtype=self.dtype_policy, name="prototypes"
        )
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.crops_for_assign = tuple(int(c) for c in crops_for_assign)
        if not self.crops_for_assign:
            raise ValueError("SwAV: crops_for_assign must not be empty.")
        self.queue_length = int(queue_length)
        if self.queue_length < 0:
            raise ValueError(f"SwAV: queue_length must be >= 0, got {queue_length}.")
        self.queue_start_step = (
            None if queue_start_step is None else int(queue_start_step)
        )
        self.freeze_prototypes_steps = int(freeze_prototypes_steps)
        self.augmenter = augmenter
        self.num_views = int(num_views)
        if self.temperature <= 0 or self.epsilon <= 0:
            raise ValueError(
                "SwAV: temperature and epsilon must be positive, got "
                f"{temperature} and {epsilon}."
            )
        self.train_step_counter = self.add_weight(
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            # Identical on all TF replicas: update it once, not summed.
            aggregation="only_first_replica",
            name="train_step_counter",
        )
        self.queue = None
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def backbone(self):
        """The encoder: `(batch, T, leads)` -> `(batch, F)`."""
        return self.encoder

    def build(self, input_shape):
        view_shape = _first_view_shape(input_shape)
        # Length-agnostic build: multi-crop views and downstream inputs vary.
        view_shape = (view_shape[0], None) + tuple(view_shape[2:])
        if not self.encoder.built:
            self.encoder.build(view_shape)
        feature_shape = tuple(self.encoder.compute_output_shape(view_shape))
        if not self.projection_head.built:
            self.projection_head.build(feature_shape)
        embedding_shape = tuple(
            self.projection_head.compute_output_shape(feature_shape)
        )
        self.prototypes.build(embedding_shape)
        if self.queue_length > 0:
            self.queue = self.add_weight(
                shape=(
                    len(self.crops_for_assign),
                    self.queue_length,
                    int(embedding_shape[-1]),
                ),
                dtype="float32",
                initializer="zeros",
                trainable=False,
                # Holds globally gathered embeddings, the same on every replica.
                aggregation="only_first_replica",
                name="queue",
            )
        self.built = True

    def _views(self, inputs):
        if isinstance(inputs, dict):
            raise ValueError("SwAV: inputs must be a tensor or a tuple of views.")
        if isinstance(inputs, (list, tuple)):
            return list(inputs)
        if self.augmenter is not None:
            return [
                self.augmenter(inputs, training=True) for _ in range(self.num_views)
            ]
        return [inputs]

    def _scores(self, embeddings, training):
        if not (training and self.freeze_prototypes_steps > 0):
            return self.prototypes(embeddings)
        # Frozen: the prototypes enter through stop_gradient, so their gradient
        # is exactly 0 (a tiny nonzero one would still move them under Adam).
        frozen = ops.cast(
            self.train_step_counter < self.freeze_prototypes_steps, "float32"
        )
        prototypes = ops.cast(self.prototypes.normalized_prototypes, "float32")
        prototypes = frozen * ops.stop_gradient(prototypes) + (1.0 - frozen) * (
            prototypes
        )
        embeddings = ops.cast(embeddings, self.prototypes.compute_dtype)
        return ops.matmul(
            embeddings, ops.cast(ops.transpose(prototypes), embeddings.dtype)
        )

    def call(self, inputs, training=None):
        views = self._views(inputs)
        embeddings = []
        start = 0
        while start < len(views):
            # Group consecutive views of equal length into one encoder pass.
            stop = start + 1
            while stop < len(views) and views[stop].shape[1] == views[start].shape[1]:
                stop += 1
            group = views[start:stop]
            batch = group[0] if len(group) == 1 else ops.concatenate(group, axis=0)
            features = self.encoder(batch, training=training)
            z = self.projection_head(features, training=training)
            z = _l2_normalize(ops.cast(z, "float32"))
            embeddings.extend(ops.split(z, len(group), axis=0))
            start = stop
        scores = [self._scores(z, training) for z in embeddings]
        return {"embeddings": embeddings, "scores": scores}

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y_pred is None:
            y_pred = self(x, training=training)
        embeddings = y_pred["embeddings"]
        scores = y_pred["scores"]
        if len(scores) < 2:
            raise ValueError(
                f"SwAV: got {len(scores)} view(s), need at least 2: pass a tuple "
                "of views or give the model an augmenter."
            )
        queue_scores = queue_mask = None
        if self.queue is not None:
            queue = ops.convert_to_tensor(self.queue)
            active = ops.cast(
                self.train_step_counter >= (self.queue_start_step or 0), "float32"
            )
            # Stored embeddings have unit norm; empty slots are zero.
            filled = ops.cast(ops.sum(ops.square(queue), axis=-1) > 0.5, "float32")
            queue_mask = [filled[i] * active for i in range(len(self.crops_for_assign))]
            queue_scores = [
                self.prototypes(ops.stop_gradient(queue[i]))
                for i in range(len(self.crops_for_assign))
            ]
        loss = swav_loss(
            scores,
            crops_for_assign=self.crops_for_assign,
            temperature=self.temperature,
            epsilon=self.epsilon,
            sinkhorn_iterations=self.sinkhorn_iterations,
            queue_scores=queue_scores,
            queue_mask=queue_mask,
        )
        if training:
            if self.queue is not None:
                updated = []
                for i, crop_id in enumerate(self.crops_for_assign):
                    newest = gather_across_replicas(
                        ops.stop_gradient(ops.cast(embeddings[crop_id], "float32"))
                    )
                    rows = ops.concatenate([newest, queue[i]], axis=0)
                    updated.append(rows[: self.queue_length])
                self.queue.assign(ops.stack(updated))
            self.train_step_counter.assign_add(1)
        if self.losses:
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        self.loss_tracker.update_state(loss)
        return scale_loss_for_replicas(loss)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "projection_head": keras.saving.serialize_keras_object(
                    self.projection_head
                ),
                "num_prototypes": self.num_prototypes,
                "temperature": self.temperature,
                "epsilon": self.epsilon,
                "sinkhorn_iterations": self.sinkhorn_iterations,
                "crops_for_assign": self.crops_for_assign,
                "queue_length": self.queue_length,
                "queue_start_step": self.queue_start_step,
                "freeze_prototypes_steps": self.freeze_prototypes_steps,
                "augmenter": (
                    None
                    if self.augmenter is None
                    else keras.saving.serialize_keras_object(self.augmenter)
                ),
                "num_views": self.num_views,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "projection_head", "augmenter"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _l2_normalize(x):
    return x / ops.maximum(
        ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True)), 1e-12
    )


def _first_view_shape(input_shape):
    """The shape of the first view, from a single shape or a nest of shapes."""
    if isinstance(input_shape, dict):
        input_shape = list(input_shape.values())[0]
    first = input_shape[0] if len(input_shape) else None
    if isinstance(first, (list, tuple)):
        return tuple(first)
    return tuple(input_shape)
