"""`data_parallel()`: the one data-parallel switch, per backend.

The JAX `DataParallel` distribution, the TensorFlow `MirroredStrategy` (one
per device set) or `MultiWorkerMirroredStrategy` (of a multi-process job),
or torch's process group, for the duration of a block.
"""

import contextlib

import keras

from keras_ecg.distribute import torch_backend
from keras_ecg.distribute.processes import _worker_strategy
from keras_ecg.distribute.processes import multi_process_settings

_TF_STRATEGIES = {}


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
    multi_process = multi_process_settings() is not None
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
            strategy = _worker_strategy()
            with strategy.scope():
                yield strategy
            return
        import tensorflow as tf

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
        with torch_backend.data_parallel_block() as group:
            yield group
