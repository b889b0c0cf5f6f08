"""Random numbers in a data-parallel step: per replica, or the same on all.

`replica_seed` gives each replica (process) its own draws of augmentation
parameters; `replicated_seed_generator` gives every replica the same draws
(e.g. negatives drawn for the global batch).
"""

import keras

from keras_ecg.distribute.collectives import _replica_context
from keras_ecg.distribute.collectives import _tf
from keras_ecg.distribute.collectives import _torch_step
from keras_ecg.distribute.processes import process_index


class _ReplicaFoldedSeedGenerator(keras.random.SeedGenerator):
    """A view of a `SeedGenerator` that folds the replica id into its seeds.

    Shares the wrapped generator's state (no variable of its own): each
    `next()` advances that state exactly as the generator would, then offsets
    the first seed component by the replica id, so the replicas of one step
    draw different numbers while the state stays the same on all of them.
    """

    def __init__(self, generator, replica_id):
        # No super().__init__(): the view must not create a state variable.
        self._generator = generator
        self._replica_id = replica_id

    @property
    def state(self):
        return self._generator.state

    def next(self, ordered=True):
        tf = _tf()
        seed = tf.convert_to_tensor(self._generator.next(ordered=ordered))
        # A large odd stride keeps replica streams apart from the
        # neighbouring integer seeds users pick.
        offset = tf.cast(self._replica_id, seed.dtype) * 7919
        return seed + tf.stack([offset, tf.zeros_like(offset)])


class _ProcessFoldedSeedGenerator(_ReplicaFoldedSeedGenerator):
    """The same view for a torch process: folds in its rank (a Python int)."""

    def next(self, ordered=True):
        seed = keras.ops.convert_to_tensor(self._generator.next(ordered=ordered))
        offset = keras.ops.convert_to_tensor([self._replica_id * 7919, 0], seed.dtype)
        return seed + offset


def replica_seed(generator):
    """The seed to draw random augmentation parameters with, per replica.

    Inside a multi-replica TensorFlow step every replica holds the same copy
    of a `SeedGenerator`'s state, so random layers would draw IDENTICAL
    numbers on every replica (replica k's i-th example augmented exactly like
    replica j's i-th); so do the processes of a torch data-parallel step,
    whose generator states are broadcast from process 0. This returns a
    generator view that folds the replica id (the process index) into each
    seed. Anywhere else (one device, JAX `DataParallel` whose steps draw once
    for the global batch) it returns `generator`.

    Args:
        generator: a `keras.random.SeedGenerator`.

    Returns:
        A `keras.random.SeedGenerator` to pass as `seed` to `keras.random`
        functions.
    """
    if _torch_step() and _is_torch_tensor(getattr(generator.state, "value", None)):
        # (A generator of a tf.data pipeline's augmentation is left alone.)
        return _ProcessFoldedSeedGenerator(generator, process_index())
    context = _replica_context()
    if context is None:
        return generator
    return _ReplicaFoldedSeedGenerator(generator, context.replica_id_in_sync_group)


def _is_torch_tensor(value):
    return type(value).__module__.split(".")[0] == "torch"


class _OnceUpdatedVariableBackend:
    """The Keras backend, but creating variables updated once per TF step."""

    def __getattr__(self, name):
        from keras.src import backend

        return getattr(backend, name)

    def Variable(self, *args, **kwargs):  # noqa: N802 - mirrors backend.Variable
        from keras.src import backend

        kwargs["aggregation"] = "only_first_replica"
        return backend.Variable(*args, **kwargs)


def replicated_seed_generator(seed=None, name=None):
    """A `keras.random.SeedGenerator` usable inside TF multi-replica steps.

    Keras' own generator state cannot be assigned in a MirroredStrategy
    replica context (aggregation `"none"`); this one is updated once per step
    from the first replica, so every replica draws the SAME numbers, e.g.
    negatives for the global batch of which each replica keeps its rows.
    Elsewhere it behaves exactly like `keras.random.SeedGenerator(seed)`.

    Args:
        seed: int seed, or None for a random one.
        name: optional name of the generator.

    Returns:
        A `keras.random.SeedGenerator`.
    """
    return keras.random.SeedGenerator(
        seed, name=name, backend=_OnceUpdatedVariableBackend()
    )
