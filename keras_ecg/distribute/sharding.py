"""Which rows of every global batch each process reads, and how its local
batches reach `fit`.
"""

import keras

from keras_ecg.distribute.processes import _worker_strategy
from keras_ecg.distribute.processes import process_count
from keras_ecg.distribute.processes import process_index


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
    strategy = _worker_strategy()
    if strategy is None or keras.backend.backend() != "tensorflow":
        return dataset
    return strategy.distribute_datasets_from_function(lambda context: dataset)
