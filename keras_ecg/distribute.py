"""Data-parallel pretraining: one switch per backend, global-batch losses.

`data_parallel()` turns on Keras' / TensorFlow's own data parallelism:

- JAX: `keras.distribution.DataParallel` is set for the duration of the
  block. Keras then traces each train step on global arrays sharded over the
  devices, so contrastive losses already see the whole global batch and
  nothing needs gathering.
- TensorFlow: a `tf.distribute.MirroredStrategy` scope, in which the model is
  built and compiled; `fit` then splits each global batch over the replicas.
  Every replica runs `compute_loss` on its local batch, so the pretraining
  methods all-gather what their loss contrasts against
  (`gather_across_replicas`) and divide the loss by the number of replicas
  (`scale_loss_for_replicas`), because Keras does not rescale a user-defined
  `compute_loss` while it SUMS gradients over replicas.
- PyTorch: not supported (`NotImplementedError`).

Outside a multi-replica TensorFlow replica context the helpers are identities,
so the models behave exactly as on one device.
"""

import contextlib

import keras

_TF_STRATEGIES = {}


def _tf():
    import tensorflow as tf

    return tf


def _replica_context():
    """The TF replica context when more than one replica runs, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    tf = _tf()
    if tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def num_replicas():
    """Replicas running the current step in sync (1 outside TF multi-replica)."""
    context = _replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def gather_across_replicas(x, return_offset=False):
    """All-gathers `x` along axis 0 over the replicas of a TF replica context.

    Identity (offset 0) on one device, under JAX (whose `DataParallel` steps
    already see global arrays) and under torch. Inside a multi-replica
    TensorFlow step it returns the concatenation of every replica's `x` in
    replica order, differentiable: the gradient flowing back to this
    replica's rows is summed over all replicas (TF's `all_gather` gradient).

    Args:
        x: a tensor of rank >= 1, this replica's rows.
        return_offset: whether to also return the row of this replica's first
            element in the gathered tensor (an int32 scalar tensor; the
            Python int 0 when nothing is gathered), e.g. the offset of the
            positives in `nt_xent_loss`.

    Returns:
        The gathered tensor, or `(gathered, offset)`.

    Example:

    >>> import numpy as np
    >>> z = np.ones((4, 8), "float32")
    >>> gathered, offset = gather_across_replicas(z, return_offset=True)
    >>> tuple(gathered.shape), int(offset)
    ((4, 8), 0)
    """
    context = _replica_context()
    if context is None:
        # A Python 0 keeps slices static (JAX needs static slice bounds).
        return (x, 0) if return_offset else x
    tf = _tf()
    x = tf.convert_to_tensor(x)
    gathered = context.all_gather(x, axis=0)
    if not return_offset:
        return gathered
    # Local batches may differ in size (a last partial batch): count the rows
    # of the replicas before this one. Gathered as float32 row labels: an
    # int32 collective beside the float ones has been seen to mismatch
    # collective instances between CPU replicas.
    replica = tf.cast(context.replica_id_in_sync_group, "float32")
    labels = context.all_gather(tf.fill(tf.shape(x)[:1], replica), axis=0)
    offset = tf.reduce_sum(tf.cast(labels < replica, "int32"))
    return gathered, offset


def scale_loss_for_replicas(loss):
    """Divides `loss` by the number of TF replicas in sync (else identity).

    Keras' TF trainer sums the replicas' gradients and does not rescale a
    user-defined `compute_loss`; with each replica returning its local mean
    (over local anchors, against globally gathered keys) divided by the
    replica count, the summed gradient is that of the global-batch mean.
    """
    count = num_replicas()
    if count == 1:
        return loss
    return loss * (1.0 / count)


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


def replica_seed(generator):
    """The seed to draw random augmentation parameters with, per replica.

    Inside a multi-replica TensorFlow step every replica holds the same copy
    of a `SeedGenerator`'s state, so random layers would draw IDENTICAL
    numbers on every replica (replica k's i-th example augmented exactly like
    replica j's i-th). This returns a generator view that folds the replica
    id into each seed. Anywhere else (one device, JAX `DataParallel` whose
    steps draw once for the global batch, torch) it returns `generator`.

    Args:
        generator: a `keras.random.SeedGenerator`.

    Returns:
        A `keras.random.SeedGenerator` to pass as `seed` to `keras.random`
        functions.
    """
    context = _replica_context()
    if context is None:
        return generator
    return _ReplicaFoldedSeedGenerator(generator, context.replica_id_in_sync_group)


def _default_tf_devices(tf):
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


@contextlib.contextmanager
def data_parallel(devices=None):
    """Context manager for synchronous data-parallel training.

    Build, compile and `fit` the model inside the block. Each `fit` batch is
    the GLOBAL batch, split evenly over the devices (make it divisible by the
    device count). The contrastive methods (SimCLR, CPC with
    `negatives_from="batch"`, SwAV) compute their loss over the global batch,
    so the result equals single-device training on the same global batch, up
    to BatchNorm: its batch statistics are computed per device (as in
    non-synchronised multi-GPU training of the reference code).

    - JAX: sets `keras.distribution.DataParallel(devices=devices)` and
      restores the previous distribution on exit. Devices default to all
      JAX devices (e.g. GPUs, or CPUs split with
      `XLA_FLAGS=--xla_force_host_platform_device_count=N`).
    - TensorFlow: enters `tf.distribute.MirroredStrategy(devices)`; devices
      default to all logical GPUs, else all logical CPUs.
    - PyTorch: raises `NotImplementedError`.

    Args:
        devices: optional list of device names (JAX: e.g. `"gpu:0"` as in
            `keras.distribution.list_devices()`; TF: e.g. `"/gpu:0"`).

    Yields:
        The `keras.distribution.DataParallel` (JAX) or the
        `tf.distribute.MirroredStrategy` (TensorFlow) in effect.

    Example:

    ```python
    with keras_ecg.distribute.data_parallel():
        model = SimCLR(encoder)
        model.compile(optimizer="adam")
        model.fit(dataset_with_global_batches, epochs=10)
    ```
    """
    backend = keras.backend.backend()
    if backend == "jax":
        if devices is None:
            devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        distribution = keras.distribution.DataParallel(devices=list(devices))
        keras.distribution.set_distribution(distribution)
        try:
            yield distribution
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        tf = _tf()
        if devices is None:
            devices = _default_tf_devices(tf)
        key = tuple(devices)
        if key not in _TF_STRATEGIES:
            # One strategy per device set: a second MirroredStrategy over the
            # same devices reuses collective instance keys and can abort.
            _TF_STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
        strategy = _TF_STRATEGIES[key]
        with strategy.scope():
            yield strategy
    else:
        raise NotImplementedError(
            f"keras_ecg.distribute.data_parallel does not support the {backend!r} "
            "backend. Use KERAS_BACKEND=jax (keras.distribution.DataParallel) or "
            "KERAS_BACKEND=tensorflow (tf.distribute.MirroredStrategy); with "
            "torch, wrap the model in torch.nn.parallel.DistributedDataParallel "
            "in a custom training loop, all-gathering the projections before "
            "the loss (see docs/distributed.md)."
        )


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
