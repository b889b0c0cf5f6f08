"""JEPA's in-graph masks against kweimann/ECG-JEPA's rules, written in NumPy."""

import math

import keras
import numpy as np
import pytest

from keras_ecg.models.jepa_masks import keep_count_bounds
from keras_ecg.models.jepa_masks import keep_mask_to_indices
from keras_ecg.models.jepa_masks import sample_keep_count
from keras_ecg.models.jepa_masks import sample_keep_masks


def _reference_mask(rng, num_keep, num_tokens, min_block):
    """`MaskCollator.sample_mask` of the reference (data/masks.py); True = kept.

    Unmasked intervals; each round picks one with probability proportional
    to its length and masks a block of U{min_block .. remaining} tokens at a
    uniform position in it (all of it if it is not longer), or, when fewer
    than min_block tokens remain, attaches them to a masked neighbour.
    """
    intervals = [(0, num_tokens)]
    num_mask = num_tokens - num_keep
    total = 0
    while total < num_mask:
        sizes = np.array([end - start for start, end in intervals], float)
        start, end = intervals.pop(rng.choice(len(intervals), p=sizes / sizes.sum()))
        remaining = num_mask - total
        if remaining >= min_block:
            block = int(rng.integers(min_block, remaining + 1))
        else:
            block = remaining
        if end - start <= block:
            total += end - start
            continue
        if remaining >= min_block:
            split = int(rng.integers(start, end - block + 1))
        else:
            sides = ([start] if start > 0 else []) + (
                [end - block] if end < num_tokens else []
            )
            split = int(rng.choice(sides))
        intervals += [(start, split), (split + block, end)]
        total += block
    keep = np.zeros(num_tokens, bool)
    for start, end in intervals:
        keep[start:end] = True
    return keep


def _runs(row, value):
    """Lengths of the maximal runs of `value` in a boolean row."""
    lengths, n = [], 0
    for v in row:
        if v == value:
            n += 1
        elif n:
            lengths.append(n)
            n = 0
    return lengths + ([n] if n else [])


def _ours(num_draws, num_tokens, num_keep, min_block, seed=0):
    generator = keras.random.SeedGenerator(seed)
    rows = [
        keras.ops.convert_to_numpy(
            sample_keep_masks(500, num_tokens, num_keep, min_block, generator)
        )
        for _ in range(num_draws // 500)
    ]
    return np.concatenate(rows)


@pytest.mark.parametrize(
    "num_tokens, num_keep, min_block",
    # Many short-remainder attachments; the paper's 200 tokens.
    [(20, 5, 4), (200, 40, 10)],
)
def test_masks_follow_the_reference_distribution(num_tokens, num_keep, min_block):
    draws = 2000 if num_tokens < 200 else 1000
    ours = _ours(draws, num_tokens, num_keep, min_block)
    rng = np.random.default_rng(1)
    reference = np.array(
        [_reference_mask(rng, num_keep, num_tokens, min_block) for _ in range(draws)]
    )
    # Rules every draw obeys: exactly num_keep kept, masked runs of at least
    # min_block (short remainders attach to masked neighbours).
    for masks in (ours, reference):
        assert np.all(masks.sum(1) == num_keep)
        assert min(min(_runs(row, False)) for row in masks) >= min_block
    # The distribution: number and length of the masked blocks, and where
    # they fall (the reference keeps the ends of the sequence more often).
    stats = {}
    for name, masks in (("ours", ours), ("reference", reference)):
        blocks = np.array([len(_runs(row, False)) for row in masks])
        stats[name] = dict(
            blocks=blocks,
            histogram=np.bincount(blocks, minlength=12)[:12] / len(blocks),
            position=masks.mean(0),
            kept_runs=np.array([len(_runs(row, True)) for row in masks]),
        )
    a, b = stats["ours"], stats["reference"]
    for key in ("blocks", "kept_runs"):
        se = math.sqrt(a[key].var() / len(a[key]) + b[key].var() / len(b[key]))
        assert abs(a[key].mean() - b[key].mean()) < 4 * se + 1e-9, (key, se)
    # Total variation distance of the block counts; per-position keep rates.
    assert 0.5 * np.abs(a["histogram"] - b["histogram"]).sum() < 0.06
    assert np.abs(a["position"] - b["position"]).max() < 0.07


def test_keep_count_is_drawn_per_batch_as_the_reference():
    generator = keras.random.SeedGenerator(2)
    counts = np.array(
        [
            int(
                keras.ops.convert_to_numpy(
                    sample_keep_count(200, 0.15, 0.25, generator)
                )
            )
            for _ in range(400)
        ]
    )
    # ceil(U(0.15, 0.25) * 200): 31 .. 50 (30 only for a ratio of exactly
    # 0.15), each about equally likely; one count for the whole batch.
    assert counts.min() >= 30 and counts.max() <= 50
    assert len(set(counts)) >= 18
    assert abs(counts.mean() - 40.5) < 1.0
    # The static slot counts bound every draw.
    assert keep_count_bounds(200, 0.15, 0.25) == (30, 50)
    assert keep_count_bounds(100, 0.15, 0.25) == (15, 25)


def test_indices_list_each_kind_in_order_then_padding():
    keep = np.array([[1, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0]], bool)  # 3 and 2 kept
    indices, valid = keep_mask_to_indices(keep, 4)
    indices, valid = (
        keras.ops.convert_to_numpy(indices),
        keras.ops.convert_to_numpy(valid),
    )
    np.testing.assert_array_equal(valid, [[1, 1, 1, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(indices[0, :3], [0, 3, 4])
    np.testing.assert_array_equal(indices[1, :2], [2, 3])
    # Padding points at real tokens of the other kind.
    assert not keep[0, indices[0, 3]] and not keep[1, indices[1, 2]]
    targets, target_valid = keep_mask_to_indices(keep, 4, select_kept=False)
    targets = keras.ops.convert_to_numpy(targets)
    np.testing.assert_array_equal(targets[1], [0, 1, 4, 5])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(target_valid)[0], [1, 1, 1, 0]
    )
    np.testing.assert_array_equal(targets[0, :3], [1, 2, 5])


def test_same_seed_same_masks():
    a = _ours(500, 30, 6, 5, seed=7)
    b = _ours(500, 30, 6, 5, seed=7)
    np.testing.assert_array_equal(a, b)
    assert len({row.tobytes() for row in a}) > 50
