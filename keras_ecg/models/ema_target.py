"""A target network that follows an online network by an exponential moving
average, updated in-graph at every training step (BYOL, JEPA)."""

import inspect
import math
import warnings

import keras
from keras import ops


def clone_from_config(layer, name):
    """An independent copy of `layer`'s architecture (fresh weights)."""
    config = dict(layer.get_config())
    if "name" in config:
        config["name"] = name
    return layer.__class__.from_config(config)


def fit_steps_per_epoch(x, batch_size, steps_per_epoch, validation_split):
    """Best-effort number of optimizer steps per epoch of `fit`, else None.

    Args:
        x, batch_size, steps_per_epoch, validation_split: `fit`'s arguments.

    Returns:
        An int, or None when the input does not tell (e.g. an infinite or
        filtered `tf.data.Dataset`).
    """
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


def _torch_ema(pairs, decay):
    """`target = decay * target + (1 - decay) * online`, in place."""
    import torch

    if not pairs:
        return
    with torch.no_grad():
        targets = [t.value for _, t in pairs]
        # lerp: target + (1 - decay) * (online - target).
        torch._foreach_lerp_(targets, [o.value for o, _ in pairs], 1.0 - float(decay))


class EMATargetMixin:
    """Target-network bookkeeping shared by `BYOL` and `JEPA`.

    A model using it (`class M(EMATargetMixin, SelfSupervisedModel)`) defines
    `online_weights` and `target_weights` (aligned lists; the target is a
    config clone of the online network, see `clone_from_config`) and
    `total_steps` (an int or None), and calls:

    - `_create_ema_state(name)` at the end of `build`, once both networks are
      built: checks that the two weight lists match, freezes the target's
      variables (its layers stay trainable, so a target BatchNorm uses batch
      statistics in training mode) and creates three non-trainable
      variables saved with the model: `ema_step` (the model's own step count
      `k`, which the JAX trainer cannot read from `optimizer.iterations`
      inside `compute_loss`), `total_steps_variable` (`K` of the decay
      schedule) and `target_synced` (whether the target holds a copy of the
      online network yet). Built eagerly, the target is copied at once; built
      symbolically inside `fit`, those assignments are dropped and the copy
      happens in-graph at the first step (`_sync_target`).
    - `_sync_target(eager_torch)` then `_ema_update(decay, eager_torch)` in
      `compute_loss`: `target = decay * target + (1 - decay) * online` for
      every target variable whose online counterpart is trainable, with the
      online weights of this step (before the optimizer applies its
      gradients), then `ema_step += 1`.

    `fit` sets `K`, when `total_steps` is None, to the steps already taken
    plus this call's `(epochs - initial_epoch) x steps per epoch` (from
    `steps_per_epoch`, the dataset cardinality or the array length); if that
    is unknown, `K` stays 0 (the subclasses' schedules then keep their initial
    decay) and a warning is emitted once.

    `schedule_progress(step)` gives `min(k / K, 1)` (0 while `K` is unknown),
    from which each model derives its decay.
    """

    # Set by the subclass' __init__ (before any build).
    _pending_total_steps = 0.0
    _warned_unknown_steps = False

    def _create_ema_state(self, name):
        online, target = self.online_weights, self.target_weights
        mismatch = len(online) != len(target) or any(
            tuple(o.shape) != tuple(t.shape)
            for o, t in zip(online, target, strict=True)
        )
        if mismatch:
            raise ValueError(
                f"{name}: the target network rebuilt from the online "
                "network's config does not match it "
                f"({len(online)} vs {len(target)} weights); make sure "
                "`get_config()` of its layers fully describes their architecture."
            )
        # Layers stay trainable (so a target BatchNorm uses batch statistics
        # in training mode); only their variables are frozen.
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

    def schedule_progress(self, step):
        """`min(k / K, 1)` at step `k` (a float32 tensor); 0 while `K` is 0."""
        k = ops.cast(step, "float32")
        total = ops.cast(self.total_steps_variable.value, "float32")
        return ops.where(total > 0, ops.minimum(k / ops.maximum(total, 1.0), 1.0), 0.0)

    def _sync_target(self, eager_torch):
        """Copies the online weights into the target once (in-graph)."""
        online, target = self.online_weights, self.target_weights
        # Runs outside any layer call, so variables are read in full
        # precision (no mixed-precision autocast) for the copy and the EMA.
        # Under tf.distribute.MirroredStrategy these assignments run on every
        # replica: variables with aggregation "none" (all layer weights) take
        # each replica's value on its own device copy, and the values are
        # equal because they come from mirrored weights, so the target stays
        # mirrored without any cross-replica communication.
        if eager_torch:
            _torch_sync_target(online, target, self.target_synced)
        else:
            synced = self.target_synced.value > 0
            for o, t in zip(online, target, strict=True):
                t.assign(ops.where(synced, t.value, ops.stop_gradient(o.value)))
        self.target_synced.assign(1.0)

    def _ema_update(self, decay, eager_torch):
        """`target = decay * target + (1 - decay) * online`; `ema_step += 1`."""
        pairs = [
            (o, t)
            for o, t in zip(self.online_weights, self.target_weights, strict=True)
            if o.trainable
        ]
        if eager_torch:
            _torch_ema(pairs, decay)
        else:
            for o, t in pairs:
                t.assign(decay * t.value + (1.0 - decay) * ops.stop_gradient(o.value))
        self.ema_step.assign_add(1)

    def _initial_decay_text(self):
        """How the warning on an unknown schedule length names the decay."""
        raise NotImplementedError

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; first sets `K` of the decay schedule if unset.

        With `total_steps=None`, `K` becomes the steps already taken plus
        `(epochs - initial_epoch) x steps per epoch` of this call, so the
        schedule ends with this call (and resuming with `initial_epoch`
        continues the same schedule).
        """
        if self.total_steps is None:
            bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            per_epoch = fit_steps_per_epoch(
                a["x"], a["batch_size"], a["steps_per_epoch"], a["validation_split"]
            )
            name = type(self).__name__
            if per_epoch is None:
                if not self._warned_unknown_steps:
                    warnings.warn(
                        f"{name}: cannot infer the number of training steps (pass "
                        f"`steps_per_epoch` to fit or `total_steps` to {name}); "
                        "the EMA decay stays constant at "
                        f"{self._initial_decay_text()}.",
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
