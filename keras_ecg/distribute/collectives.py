"""Collectives inside a data-parallel step: replica count, all-gather, loss scale.

Inside a multi-replica TensorFlow step or a torch multi-process
data-parallel step the methods' losses gather what they contrast against
(`gather_across_replicas`) and divide by the replica count
(`scale_loss_for_replicas`); outside one (one device, JAX `DataParallel`,
whose steps see global arrays) these helpers are identities.
"""

import keras

from keras_ecg.distribute import torch_backend
from keras_ecg.distribute.processes import multi_process_settings
from keras_ecg.distribute.processes import process_count


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
    if multi_process_settings() is None or keras.backend.backend() != "torch":
        return False
    return torch_backend.active()


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
        gathered, offset = torch_backend.all_gather(x)
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
