"""The processes of a multi-process job: joining it, this process's place in
it, a barrier, and the chief's writes.

This module holds the one record of the job this process joined
(`_MULTI_PROCESS`); every other module of `keras_ecg.distribute` reads it
through `multi_process_settings()` / `_worker_strategy()`.
"""

import contextlib
import json
import os

import keras

from keras_ecg.distribute import torch_backend
from keras_ecg.distribute.settings import resolve_process_settings

# The job this process joined through `initialize_multi_process` (or None).
_MULTI_PROCESS = {"settings": None, "strategy": None}


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
        import tensorflow as tf

        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=timeout
        )
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=options
        )
        _reduce_nested_values(strategy)
        _MULTI_PROCESS["strategy"] = strategy
    else:
        torch_backend.initialize(settings, timeout)
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
    import tensorflow as tf

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


def _worker_strategy():
    """The `MultiWorkerMirroredStrategy` of a TensorFlow job joined, or None."""
    return _MULTI_PROCESS["strategy"]


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
        torch_backend.barrier()
        return
    import tensorflow as tf

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
