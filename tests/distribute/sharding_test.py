"""Tests of keras_ecg.distribute.sharding: each process's rows."""

import numpy as np
import pytest

from keras_ecg import distribute


@pytest.mark.backend_agnostic
def test_shards_give_each_process_its_rows_of_every_global_batch():
    # 2 processes, global batch 4 over 10 records: the partial batch is dropped.
    np.testing.assert_array_equal(distribute.shard_indices(10, 4, 0, 2), [0, 1, 4, 5])
    np.testing.assert_array_equal(distribute.shard_indices(10, 4, 1, 2), [2, 3, 6, 7])
    # Any count: concatenating the processes' k-th local batches, in process
    # order, gives global batch k of one process batching all records.
    for processes, batch in ((3, 6), (4, 8), (1, 5)):
        shards = [
            distribute.shard_indices(50, batch, p, processes).reshape(
                -1, batch // processes
            )
            for p in range(processes)
        ]
        rebuilt = np.concatenate(shards, axis=1).reshape(-1)
        np.testing.assert_array_equal(rebuilt, np.arange(50 // batch * batch))
    with pytest.raises(ValueError, match="split evenly"):
        distribute.shard_indices(10, 5, 0, 2)
    # One process: every record of the full batches, in order.
    assert distribute.process_count() == 1 and distribute.is_chief()
    assert distribute.local_batch_size(6) == 6
