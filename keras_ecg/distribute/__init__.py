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
  the gradients are summed over the processes (see `torch_backend`).

Several processes (hosts, or one process per GPU) join one job through
`initialize_multi_process()` at program start; `data_parallel()` then spans
every process's devices (JAX `DataParallel` over the global device list, TF
`MultiWorkerMirroredStrategy`, torch's process group), each process feeding
its own rows of every global batch (`shard_indices`,
`distribute_local_dataset`).

Outside a multi-replica TensorFlow replica context or a torch data-parallel
step the helpers are identities, so the models behave exactly as on one
device.

The modules, by concern:

- `settings`: `ProcessSettings` from arguments or the environment
  (`resolve_process_settings`); pure parsing.
- `processes`: joining a job (`initialize_multi_process`), this process's
  place in it (`process_count`, `process_index`, `is_chief`), `barrier`,
  `chief_writes`; the one record of the job joined.
- `strategy`: the `data_parallel()` switch.
- `collectives`: `num_replicas`, `gather_across_replicas`,
  `scale_loss_for_replicas`.
- `seeds`: `replica_seed`, `replicated_seed_generator`.
- `sharding`: `local_batch_size`, `shard_indices`, `distribute_local_dataset`.
- `batch_norm`: `synchronize_batch_norm`, `batch_norm_is_synchronized`.
- `torch_backend`: the `torch.distributed` machinery behind them.

Import the names from `keras_ecg.distribute` itself; the modules are its
layout, not its interface.
"""

from keras_ecg.distribute.batch_norm import batch_norm_is_synchronized
from keras_ecg.distribute.batch_norm import synchronize_batch_norm
from keras_ecg.distribute.collectives import gather_across_replicas
from keras_ecg.distribute.collectives import num_replicas
from keras_ecg.distribute.collectives import scale_loss_for_replicas
from keras_ecg.distribute.processes import barrier
from keras_ecg.distribute.processes import chief_writes
from keras_ecg.distribute.processes import initialize_multi_process
from keras_ecg.distribute.processes import is_chief
from keras_ecg.distribute.processes import multi_process_settings
from keras_ecg.distribute.processes import process_count
from keras_ecg.distribute.processes import process_index
from keras_ecg.distribute.seeds import replica_seed
from keras_ecg.distribute.seeds import replicated_seed_generator
from keras_ecg.distribute.settings import DEFAULT_COORDINATOR_PORT
from keras_ecg.distribute.settings import ProcessSettings
from keras_ecg.distribute.settings import resolve_process_settings
from keras_ecg.distribute.sharding import distribute_local_dataset
from keras_ecg.distribute.sharding import local_batch_size
from keras_ecg.distribute.sharding import shard_indices
from keras_ecg.distribute.strategy import data_parallel

# Raised by a torch job's collectives when a process is gone.
from keras_ecg.distribute.torch_backend import ProcessLostError
