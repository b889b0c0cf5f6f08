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
- PyTorch: one process per device, through `torch.distributed` (gloo on
  CPU, NCCL on GPU; launched by `torchrun` or keras-ecg's own settings).
  Each process runs the TensorFlow path's per-replica conventions: its
  `compute_loss` sees its local batch, gathers what the loss contrasts
  against, returns its local mean divided by the number of processes, and
  the gradients are summed over the processes (see `_torch_distribute`).

Several processes (hosts, or one process per GPU) join one job through
`initialize_multi_process()` at program start; `data_parallel()` then spans
every process's devices (JAX `DataParallel` over the global device list, TF
`MultiWorkerMirroredStrategy`, torch's process group), each process feeding
its own rows of every global batch (`shard_indices`,
`distribute_local_dataset`).

Outside a multi-replica TensorFlow replica context or a torch data-parallel
step the helpers are identities, so the models behave exactly as on one
device.
"""

import contextlib
import json
import os
import re
from typing import NamedTuple

import keras

# Raised by a torch job's collectives when a process is gone.
from keras_ecg._torch_distribute import ProcessLostError  # noqa: F401

_TF_STRATEGIES = {}
# The job this process joined through `initialize_multi_process` (or None).
_MULTI_PROCESS = {"settings": None, "strategy": None}
# Port of the coordinator derived from a SLURM node list when none is given.
DEFAULT_COORDINATOR_PORT = 12355


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


def _torch_step():
    """Whether a torch multi-process data-parallel step is running."""
    if _MULTI_PROCESS["settings"] is None or keras.backend.backend() != "torch":
        return False
    from keras_ecg import _torch_distribute

    return _torch_distribute.active()


def num_replicas():
    """Replicas running the current step in sync: the TF replicas, or the
    processes of a torch data-parallel step; 1 elsewhere."""
    if _torch_step():
        return process_count()
    context = _replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def gather_across_replicas(x, return_offset=False):
    """All-gathers `x` along axis 0 over the replicas of a data-parallel step.

    Identity (offset 0) on one device and under JAX (whose `DataParallel`
    steps already see global arrays). Inside a multi-replica TensorFlow step,
    or a torch multi-process data-parallel step, it returns the concatenation
    of every replica's (process's) `x` in replica order, differentiable: the
    gradient flowing back to this replica's rows is summed over all replicas
    (TF's `all_gather` gradient; torch: an all-reduce of the gathered
    gradient).

    Args:
        x: a tensor of rank >= 1, this replica's rows.
        return_offset: whether to also return the row of this replica's first
            element in the gathered tensor (an int32 scalar tensor; the
            Python int 0 when nothing is gathered), e.g. the offset of the
            positives in `nt_xent_loss`; a Python int under torch).

    Returns:
        The gathered tensor, or `(gathered, offset)`.

    Example:

    >>> import numpy as np
    >>> z = np.ones((4, 8), "float32")
    >>> gathered, offset = gather_across_replicas(z, return_offset=True)
    >>> tuple(gathered.shape), int(offset)
    ((4, 8), 0)
    """
    if _torch_step():
        from keras_ecg import _torch_distribute

        gathered, offset = _torch_distribute.all_gather(x)
        return (gathered, offset) if return_offset else gathered
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
    """Divides `loss` by the number of replicas in sync (else identity).

    Keras' TF trainer sums the replicas' gradients and does not rescale a
    user-defined `compute_loss` (and the torch data-parallel step sums the
    processes' gradients likewise); with each replica returning its local
    mean (over local anchors, against globally gathered keys) divided by the
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
    - PyTorch: one process per device; the block needs
      `initialize_multi_process()` (else `NotImplementedError`). Inside it,
      Keras' train and test steps run data-parallel: gradients summed over
      the processes, `gather_across_replicas` all-gathering, metrics summed,
      and every variable broadcast from process 0 at a model's first step.

    After `initialize_multi_process()`, the block spans every process's
    devices (JAX: `DataParallel` over the global device list, fed per-process
    batches; TF: the `MultiWorkerMirroredStrategy`; torch: the default
    process group), and `fit` takes each process's LOCAL batches
    (`shard_indices`, `distribute_local_dataset`).

    Args:
        devices: optional list of device names (JAX: e.g. `"gpu:0"` as in
            `keras.distribution.list_devices()`; TF: e.g. `"/gpu:0"`).

    Yields:
        The `keras.distribution.DataParallel` (JAX), the
        `tf.distribute.MirroredStrategy` (TensorFlow) or the
        `torch.distributed` default process group (torch) in effect.

    Example:

    ```python
    with keras_ecg.distribute.data_parallel():
        model = SimCLR(encoder)
        model.compile(optimizer="adam")
        model.fit(dataset_with_global_batches, epochs=10)
    ```
    """
    backend = keras.backend.backend()
    multi_process = _MULTI_PROCESS["settings"] is not None
    if backend == "jax":
        if devices is None:
            # In a multi-process job: the devices of every process.
            devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        # Each process already feeds only its own rows (`shard_indices`), so
        # Keras must not shard the dataset again.
        distribution = keras.distribution.DataParallel(
            devices=list(devices), auto_shard_dataset=not multi_process
        )
        keras.distribution.set_distribution(distribution)
        try:
            yield distribution
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        if multi_process:
            if devices is not None:
                raise ValueError(
                    "data_parallel(devices=...) is not supported in a "
                    "multi-process TensorFlow job: the strategy takes the "
                    "devices of every worker."
                )
            with _MULTI_PROCESS["strategy"].scope():
                yield _MULTI_PROCESS["strategy"]
            return
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
        if not multi_process:
            raise NotImplementedError(
                "keras_ecg.distribute.data_parallel under the torch backend "
                "spans the processes of a multi-process job, one per device: "
                "launch them with `torchrun --nproc_per_node=N ...` (or "
                "keras-ecg's --job-addresses/--num-processes/--process-id) and "
                "call keras_ecg.distribute.initialize_multi_process() first "
                "(see docs/distributed.md)."
            )
        if devices is not None:
            raise ValueError(
                "data_parallel(devices=...) is not supported under torch: each "
                "process drives one device (GPU LOCAL_RANK, or the CPU)."
            )
        from keras_ecg import _torch_distribute

        with _torch_distribute.data_parallel_block() as group:
            yield group


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


# ----------------------------------------------------------------------------
# Several processes (hosts): settings, start-up, shards, chief
# ----------------------------------------------------------------------------


class ProcessSettings(NamedTuple):
    """Where this process sits in a multi-process job.

    Attributes:
        job_addresses: `host:port` of every process, process 0 (the JAX
            coordinator, the TF chief) first; JAX needs only the first.
        num_processes: processes in the job.
        process_id: this process, `0 <= process_id < num_processes`.
        source: where the settings came from (`"arguments"`, `"KERAS_ECG_*"`,
            `"TF_CONFIG"`, `"SLURM"`), for messages.
    """

    job_addresses: tuple
    num_processes: int
    process_id: int
    source: str


def _first_slurm_host(nodelist):
    """The first host of a SLURM node list such as `gpu[03-05,09],cpu1`."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def _int(value, what, source):
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{source}: {what} must be an integer, got {value!r}"
        ) from error


def resolve_process_settings(
    job_addresses=None, num_processes=None, process_id=None, environ=None
):
    """This process's place in a multi-process job, from arguments or env.

    Looked up in this order, the first complete source winning:

    1. the arguments (e.g. the CLI's `--job-addresses`, `--num-processes`,
       `--process-id`);
    2. `KERAS_ECG_JOB_ADDRESSES`, `KERAS_ECG_NUM_PROCESSES`,
       `KERAS_ECG_PROCESS_ID` (Keras' own `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
       `..._NUM_PROCESSES`, `..._PROCESS_ID` are read as well);
    3. `TF_CONFIG` (`cluster.worker` and `task.index`);
    4. torchrun (`torch.distributed.run`): `WORLD_SIZE`, `RANK` and
       `MASTER_ADDR:MASTER_PORT` (process 0's address);
    5. SLURM: `SLURM_NTASKS`, `SLURM_PROCID` and the first host of
       `SLURM_STEP_NODELIST` / `SLURM_JOB_NODELIST`, port
       `KERAS_ECG_COORDINATOR_PORT` (default 12355).

    Args:
        job_addresses: `"host:port"` of process 0, or a comma-separated
            `host:port` list of all processes (process 0 first; TensorFlow
            needs the full list), or a list of them.
        num_processes: number of processes.
        process_id: this process's index.
        environ: the environment to read (default `os.environ`).

    Returns:
        A `ProcessSettings`, or None when nothing describes a job of more
        than one process.

    Raises:
        ValueError: the settings are incomplete or inconsistent; the message
            names their source.

    Example:

    >>> env = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1",
    ...        "SLURM_JOB_NODELIST": "gpu[07-08]"}
    >>> settings = resolve_process_settings(environ=env)
    >>> settings.job_addresses, settings.num_processes, settings.process_id
    (('gpu07:12355',), 2, 1)
    """
    env = os.environ if environ is None else environ
    candidates = [("arguments", job_addresses, num_processes, process_id)]
    for prefix in ("KERAS_ECG_", "KERAS_DISTRIBUTION_"):
        candidates.append(
            (
                f"{prefix}*",
                env.get(prefix + "JOB_ADDRESSES"),
                env.get(prefix + "NUM_PROCESSES"),
                env.get(prefix + "PROCESS_ID"),
            )
        )
    for source, addresses, count, index in candidates:
        given = [v is not None for v in (addresses, count, index)]
        if not any(given):
            continue
        if not all(given):
            raise ValueError(
                f"{source}: a multi-process job needs the job addresses, the "
                "number of processes and this process's id; got "
                f"addresses={addresses!r}, processes={count!r}, id={index!r}."
            )
        if isinstance(addresses, str):
            addresses = addresses.split(",")
        return _checked(
            tuple(a.strip() for a in addresses if a.strip()),
            _int(count, "the number of processes", source),
            _int(index, "the process id", source),
            source,
        )
    if env.get("TF_CONFIG"):
        try:
            config = json.loads(env["TF_CONFIG"])
            workers = list(config["cluster"]["worker"])
            index = int(config["task"].get("index", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                "TF_CONFIG: expected {'cluster': {'worker': [host:port, ...]}, "
                f"'task': {{'type': 'worker', 'index': i}}}}, got {env['TF_CONFIG']!r}"
            ) from error
        if config["cluster"].get("chief"):
            raise ValueError(
                "TF_CONFIG: a separate 'chief' task is not supported; list every "
                "process under 'worker' (worker 0 is the chief)."
            )
        return _checked(tuple(workers), len(workers), index, "TF_CONFIG")
    torchrun = [
        env.get(k) for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")
    ]
    if all(torchrun):
        # Before SLURM: `srun torchrun ...` runs several processes per task.
        count, index, host, port = torchrun
        source = "torchrun (WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT)"
        return _checked(
            (f"{host}:{port}",),
            _int(count, "WORLD_SIZE", source),
            _int(index, "RANK", source),
            source,
        )
    if env.get("SLURM_NTASKS") and env.get("SLURM_PROCID") is not None:
        count = _int(env["SLURM_NTASKS"], "SLURM_NTASKS", "SLURM")
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
        if count > 1 and not nodelist:
            raise ValueError("SLURM: SLURM_NTASKS > 1 but no SLURM_*_NODELIST.")
        port = env.get("KERAS_ECG_COORDINATOR_PORT", DEFAULT_COORDINATOR_PORT)
        address = f"{_first_slurm_host(nodelist or 'localhost')}:{port}"
        return _checked(
            (address,),
            count,
            _int(env["SLURM_PROCID"], "SLURM_PROCID", "SLURM"),
            "SLURM",
        )
    return None


def _checked(addresses, count, index, source):
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"{source}: process id {index} is not in 0..{count - 1} "
            f"({count} processes)."
        )
    if not addresses:
        raise ValueError(f"{source}: no job address (host:port of process 0).")
    if len(addresses) > 1 and len(addresses) != count:
        raise ValueError(
            f"{source}: {len(addresses)} job addresses for {count} processes; "
            "give one (process 0's) or one per process."
        )
    for address in addresses:
        if not re.fullmatch(r"\[?[^\s,]+\]?:\d+", address):
            raise ValueError(f"{source}: job address {address!r} is not host:port.")
    if count == 1:
        return None
    return ProcessSettings(tuple(addresses), count, index, source)


def initialize_multi_process(
    job_addresses=None, num_processes=None, process_id=None, timeout_seconds=60
):
    """Joins this process to a multi-process (multi-host) data-parallel job.

    Call it at program start, in every process, before any other JAX or
    TensorFlow computation (torch: before any tensor is placed on a GPU);
    `data_parallel()` then trains on the devices of all processes. The
    settings come from the arguments or the environment (see
    `resolve_process_settings`).

    - JAX: `jax.distributed.initialize` (with gloo collectives when the
      platform is the CPU). A process that dies is noticed through the
      coordination service's heartbeats within about `timeout_seconds`, and
      the others stop with an error instead of waiting forever.
    - TensorFlow: builds the `tf.distribute.MultiWorkerMirroredStrategy`
      (from `TF_CONFIG`, written from the settings when absent, which then
      need every process's address). Collectives time out after
      `timeout_seconds`; TF's peer health checks abort them earlier when a
      worker is gone.
    - PyTorch: `torch.distributed.init_process_group` with process 0's
      address as the rendezvous (`tcp://host:port`; torchrun's
      `MASTER_ADDR:MASTER_PORT`); NCCL when Keras places tensors on a GPU
      (`torch.cuda.set_device(LOCAL_RANK)` first, and TensorFlow, which only
      feeds the input pipelines, is kept off the GPUs), gloo on the CPU.
      Collectives time out after `timeout_seconds`; a process that dies
      makes the others' next collective fail at once, raised as
      `ProcessLostError` naming the processes that stopped answering.

    Args:
        job_addresses: see `resolve_process_settings`.
        num_processes: see `resolve_process_settings`.
        process_id: see `resolve_process_settings`.
        timeout_seconds: how long a collective (TF, torch) or a missing
            heartbeat (JAX) may take before the job fails.

    Returns:
        The `ProcessSettings` joined, or None if the settings describe a
        single process (nothing to do).

    Raises:
        ValueError: incomplete or inconsistent settings.
        RuntimeError: called twice with different settings.
    """
    settings = resolve_process_settings(job_addresses, num_processes, process_id)
    if settings is None:
        return None
    current = _MULTI_PROCESS["settings"]
    if current is not None:
        if current[:3] != settings[:3]:
            raise RuntimeError(
                f"initialize_multi_process: already joined {current}; cannot "
                f"join {settings} in the same process."
            )
        return current
    backend = keras.backend.backend()
    timeout = int(max(timeout_seconds, 1))
    if backend == "jax":
        import jax

        # CPU devices of different processes need a collectives library to
        # talk to each other (GPUs use NCCL; this setting leaves them alone).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=settings.job_addresses[0],
            num_processes=settings.num_processes,
            process_id=settings.process_id,
            initialization_timeout=timeout * 5,
            heartbeat_timeout_seconds=timeout,
            shutdown_timeout_seconds=timeout,
        )
    elif backend == "tensorflow":
        if os.environ.get("TF_CONFIG") and settings.source != "TF_CONFIG":
            # The strategy reads TF_CONFIG: it must describe the same job.
            from_env = resolve_process_settings(
                environ={"TF_CONFIG": os.environ["TF_CONFIG"]}
            )
            if from_env is None or from_env[:3] != settings[:3]:
                raise ValueError(
                    f"{settings.source} describe process {settings.process_id} "
                    f"of {settings.num_processes} at "
                    f"{','.join(settings.job_addresses)}, but TF_CONFIG "
                    "(which TensorFlow reads) describes another job; unset "
                    "TF_CONFIG or make them agree."
                )
        if not os.environ.get("TF_CONFIG"):
            if len(settings.job_addresses) != settings.num_processes:
                raise ValueError(
                    f"{settings.source}: TensorFlow needs the address of every "
                    f"process ({settings.num_processes}, comma-separated, process "
                    "0 first) or a TF_CONFIG; got "
                    f"{','.join(settings.job_addresses)}."
                )
            os.environ["TF_CONFIG"] = json.dumps(
                {
                    "cluster": {"worker": list(settings.job_addresses)},
                    "task": {"type": "worker", "index": settings.process_id},
                }
            )
        tf = _tf()
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=timeout
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=options
        )
        _reduce_nested_values(strategy)
        _MULTI_PROCESS["strategy"] = strategy
    else:
        from keras_ecg import _torch_distribute

        _torch_distribute.initialize(settings, timeout)
    _MULTI_PROCESS["settings"] = settings
    return settings


def _reduce_nested_values(strategy):
    """Makes `strategy.reduce` take what Keras' TF trainer hands it.

    Keras 3's TF `fit` (checked with 3.15) calls, across several workers,
    `reduce("MEAN", batch, axis=None)` on the first batch, a nest (a tuple
    of views here) that the strategy only takes value by value, and
    `reduce("MEAN", log, axis=0)` on every scalar log (loss, metrics), which
    has no axis 0. This reduces each value of a nest, and a scalar across the
    replicas only (the logs are already synchronised, equal on every
    replica, so their mean is that value).
    """
    tf = _tf()
    reduce = strategy.reduce

    def reduce_one(reduce_op, value, axis):
        if axis is not None:
            local = strategy.experimental_local_results(value)[0]
            if tf.convert_to_tensor(local).shape.rank == 0:
                axis = None
        return reduce(reduce_op, value, axis=axis)

    def nested_reduce(reduce_op, value, axis=None):
        return tf.nest.map_structure(lambda v: reduce_one(reduce_op, v, axis), value)

    strategy.reduce = nested_reduce


def multi_process_settings():
    """The `ProcessSettings` this process joined, or None."""
    return _MULTI_PROCESS["settings"]


def process_count():
    """Processes in the job (1 unless `initialize_multi_process` joined one)."""
    settings = _MULTI_PROCESS["settings"]
    return 1 if settings is None else settings.num_processes


def process_index():
    """This process's index in the job (0 for a single process)."""
    settings = _MULTI_PROCESS["settings"]
    return 0 if settings is None else settings.process_id


def is_chief():
    """Whether this process writes checkpoints and results (process 0)."""
    return process_index() == 0


def local_batch_size(global_batch_size):
    """This process's rows of each global batch (global / processes).

    Raises:
        ValueError: the global batch does not split evenly over the processes.
    """
    count = process_count()
    if global_batch_size % count:
        raise ValueError(
            f"the global batch size {global_batch_size} does not split evenly "
            f"over {count} processes; choose a multiple of {count}."
        )
    return global_batch_size // count


def shard_indices(num_records, global_batch_size, process_id=None, num_processes=None):
    """The record indices process `process_id` reads, in batch order.

    Process `p` of `n` takes, from every run of `global_batch_size`
    consecutive records, the `p`-th slice of `global_batch_size / n`:
    batching its shard by `global_batch_size / n` gives it rows
    `[p * B / n, (p + 1) * B / n)` of the global batch that one process
    batching all records by `B` would see, which is the order in which JAX
    (`make_array_from_process_local_data`) and TF (replica order of the
    all-gather) assemble the global batch. A trailing partial global batch is
    dropped, as pretraining drops partial batches.

    This is the one place where records are assigned to processes.

    Args:
        num_records: records in the (training) set.
        global_batch_size: records per global batch.
        process_id: default: this process's index.
        num_processes: default: the processes of the job.

    Returns:
        A numpy int array of record indices.

    Example:

    >>> shard_indices(10, 4, process_id=1, num_processes=2).tolist()
    [2, 3, 6, 7]
    """
    import numpy as np

    process_id = process_index() if process_id is None else int(process_id)
    num_processes = process_count() if num_processes is None else int(num_processes)
    if global_batch_size % num_processes:
        raise ValueError(
            f"the global batch size {global_batch_size} does not split evenly "
            f"over {num_processes} processes."
        )
    local = global_batch_size // num_processes
    usable = (num_records // global_batch_size) * global_batch_size
    index = np.arange(usable)
    return index[(index % global_batch_size) // local == process_id]


def distribute_local_dataset(dataset):
    """Wraps this process's batches for `fit` in a multi-process TF job.

    In a TensorFlow multi-worker job `fit` would treat each batch as a global
    batch and split it again over the replicas; this hands each worker's
    dataset to its (single) replica unchanged instead. Identity elsewhere
    (JAX takes per-process batches as they are; see `data_parallel`).

    Args:
        dataset: a `tf.data.Dataset` of this process's local batches.

    Returns:
        The dataset to pass to `fit`.
    """
    strategy = _MULTI_PROCESS["strategy"]
    if strategy is None or keras.backend.backend() != "tensorflow":
        return dataset
    return strategy.distribute_datasets_from_function(lambda context: dataset)


def barrier():
    """Waits until every process of the job reaches this point (else no-op).

    E.g. the chief prepares the run folder, then all processes read the
    checkpoint it may hold.
    """
    if _MULTI_PROCESS["settings"] is None:
        return
    if keras.backend.backend() == "jax":
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("keras_ecg.distribute.barrier")
        return
    if keras.backend.backend() == "torch":
        from keras_ecg import _torch_distribute

        _torch_distribute.barrier()
        return
    tf = _tf()
    strategy = _MULTI_PROCESS["strategy"]

    @tf.function
    def reduce():
        return strategy.run(
            lambda: tf.distribute.get_replica_context().all_reduce("sum", tf.ones([1]))
        )

    total = strategy.experimental_local_results(reduce())[0]
    if int(total.numpy()[0]) != strategy.num_replicas_in_sync:
        raise RuntimeError("keras_ecg.distribute.barrier: replicas disagree.")


@contextlib.contextmanager
def chief_writes(path):
    """Yields where this process saves `path`: itself on the chief, else a
    throw-away file.

    Saving can take part in collectives (JAX reads arrays that span every
    process), so in a multi-process job EVERY process saves, as TensorFlow
    recommends for `MultiWorkerMirroredStrategy`; only the chief's file is
    kept, the others' go to a temporary folder deleted on exit.

    Args:
        path: the file the chief writes.

    Example:

    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> with chief_writes(target) as where:
    ...     where == target
    True
    """
    if is_chief():
        yield path
        return
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=f"keras_ecg_process{process_index()}_")
    try:
        yield os.path.join(folder, os.path.basename(path))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def synchronize_batch_norm(model, synchronized=True):
    """Makes every `BatchNormalization` of `model` use global-batch statistics.

    TensorFlow computes BatchNorm statistics per replica unless the layer is
    `synchronized` (Keras then all-reduces the moments across the replicas of
    a `MirroredStrategy` / `MultiWorkerMirroredStrategy` step). Torch computes
    them per process; Keras' `synchronized` is TensorFlow-only there, so the
    layers' moments are computed by keras-ecg instead, from the per-channel
    sum, sum of squares and count all-reduced over the processes of a
    data-parallel step (as usual outside one). Under JAX `DataParallel` the
    statistics are global already, so this changes nothing there.

    Args:
        model: a built or unbuilt Keras layer or model.
        synchronized: whether to synchronise (False: leaves `model` as is).

    Returns:
        Whether the layers were switched (False under JAX).

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.layers.BatchNormalization()])
    >>> switched = synchronize_batch_norm(model)
    >>> switched == (keras.backend.backend() != "jax")
    True
    """
    backend = keras.backend.backend()
    if not synchronized or backend not in ("tensorflow", "torch"):
        return False
    for layer in model._flatten_layers(include_self=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            if backend == "tensorflow":
                layer.synchronized = True
            else:
                from keras_ecg import _torch_distribute

                _torch_distribute.synchronize_batch_norm(layer)
    return True


def batch_norm_is_synchronized(layer):
    """Whether `layer` was switched by `synchronize_batch_norm`."""
    return bool(
        getattr(layer, "synchronized", False)
        or getattr(layer, "_keras_ecg_synchronized", False)
    )
