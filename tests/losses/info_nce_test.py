"""Tests of the CPC InfoNCE scoring, sampling and loss."""

import keras
import numpy as np
import pytest

from keras_ecg.losses.info_nce import WRITE_COST_IN_MULTIPLY_ADDS
from keras_ecg.losses.info_nce import choose_cpc_scoring
from keras_ecg.losses.info_nce import cpc_info_nce_logits
from keras_ecg.losses.info_nce import info_nce_accuracy
from keras_ecg.losses.info_nce import info_nce_loss
from keras_ecg.losses.info_nce import sample_cpc_negative_indices
from keras_ecg.losses.info_nce import scoring_costs


def _numpy_negatives(rng, batch, length, step, num_negatives, negatives_from):
    """Flat negative indices drawn by rejection, so the positive is excluded."""
    out = np.zeros((batch, length - step, num_negatives), "int64")
    for b in range(batch):
        for t in range(length - step):
            positive = b * length + t + step
            for n in range(num_negatives):
                while True:
                    if negatives_from == "sequence":
                        idx = b * length + rng.integers(length)
                    else:
                        idx = rng.integers(batch * length)
                    if idx != positive:
                        break
                out[b, t, n] = idx
    return out


def _numpy_logits(predictions, encodings, step, indices):
    batch, length, dim = encodings.shape
    pool = encodings.reshape(-1, dim)
    logits = np.zeros(indices.shape[:2] + (1 + indices.shape[2],), "float64")
    for b in range(batch):
        for t in range(length - step):
            p = predictions[b, t].astype("float64")
            logits[b, t, 0] = p @ encodings[b, t + step]
            for n, idx in enumerate(indices[b, t]):
                logits[b, t, 1 + n] = p @ pool[idx]
    return logits


def _numpy_loss(logits):
    m = logits.max(-1, keepdims=True)
    log_softmax = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    return -log_softmax[..., 0].mean()


@pytest.mark.parametrize(
    "negatives_from,method",
    [
        ("sequence", "gather"),
        ("sequence", "sequence_matrix"),
        ("sequence", "batch_matrix"),
        ("batch", "gather"),
        ("batch", "batch_matrix"),
    ],
)
def test_logits_and_loss_match_numpy(negatives_from, method):
    rng = np.random.default_rng(0)
    batch, length, dim, step, num_negatives = 3, 9, 5, 2, 4
    encodings = rng.normal(size=(batch, length, dim)).astype("float32")
    predictions = rng.normal(size=(batch, length - step, dim)).astype("float32")
    indices = _numpy_negatives(rng, batch, length, step, num_negatives, negatives_from)
    expected = _numpy_logits(predictions, encodings, step, indices)
    logits = cpc_info_nce_logits(
        predictions, encodings, step, indices.astype("int32"), method=method
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(logits), expected, rtol=1e-5, atol=1e-5
    )
    loss = keras.ops.convert_to_numpy(info_nce_loss(logits))
    np.testing.assert_allclose(loss, _numpy_loss(expected), rtol=1e-5, atol=1e-5)
    accuracy = keras.ops.convert_to_numpy(info_nce_accuracy(logits))
    expected_accuracy = (expected[..., 0] > expected[..., 1:].max(-1)).mean()
    np.testing.assert_allclose(accuracy, expected_accuracy, atol=1e-6)


def test_loss_hand_computed_and_accuracy_is_strict():
    # One prediction, positive 2, negatives 0 and 0: -log(e^2 / (e^2 + 2)).
    logits = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]], "float32")
    loss = keras.ops.convert_to_numpy(info_nce_loss(logits[:1]))
    np.testing.assert_allclose(loss, -np.log(np.e**2 / (np.e**2 + 2)), rtol=1e-6)
    # A tie is not a correct prediction.
    accuracy = keras.ops.convert_to_numpy(info_nce_accuracy(logits))
    np.testing.assert_allclose(accuracy, 0.5)


@pytest.mark.parametrize("negatives_from", ["sequence", "batch"])
def test_sampler_never_draws_the_positive(negatives_from):
    batch, length, step, num_negatives = 3, 6, 2, 500
    seed = keras.random.SeedGenerator(3)
    indices = keras.ops.convert_to_numpy(
        sample_cpc_negative_indices(
            batch, length, step, num_negatives, negatives_from, seed=seed
        )
    )
    assert indices.shape == (batch, length - step, num_negatives)
    b = np.arange(batch)[:, None, None]
    t = np.arange(length - step)[None, :, None]
    positive = b * length + t + step
    assert not np.any(indices == positive)
    assert indices.min() >= 0 and indices.max() < batch * length
    same_sequence = indices // length == b
    if negatives_from == "sequence":
        assert same_sequence.all()
        # Every other step of the sequence is drawn (uniform over the rest).
        for bb in range(batch):
            for tt in range(length - step):
                drawn = set(indices[bb, tt] - bb * length)
                assert drawn == set(range(length)) - {tt + step}
    else:
        assert not same_sequence.all()
        drawn = set(indices[0, 0])
        assert drawn == set(range(batch * length)) - {step}


def test_sampler_is_seeded():
    a = sample_cpc_negative_indices(2, 8, 1, 5, seed=keras.random.SeedGenerator(7))
    b = sample_cpc_negative_indices(2, 8, 1, 5, seed=keras.random.SeedGenerator(7))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
    )


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="cannot predict"):
        sample_cpc_negative_indices(2, 4, 4, 3, seed=0)
    with pytest.raises(ValueError, match="negatives_from"):
        sample_cpc_negative_indices(2, 8, 1, 3, negatives_from="other", seed=0)


def _value_and_grad(fn, x):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            y = fn(x)
        return y.numpy(), tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax

        y, g = jax.value_and_grad(fn)(x)
        return np.asarray(y), np.asarray(g)
    import torch

    x = torch.tensor(x, requires_grad=True)
    y = fn(x)
    y.backward()
    return y.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("method", ["gather", "sequence_matrix", "batch_matrix"])
def test_gradient_matches_numpy_and_is_finite(method):
    rng = np.random.default_rng(1)
    batch, length, dim, step = 2, 5, 3, 1
    encodings = rng.normal(size=(batch, length, dim)).astype("float32")
    predictions = rng.normal(size=(batch, length - step, dim)).astype("float32")
    indices = _numpy_negatives(rng, batch, length, step, 3, "sequence")

    def fn(p):
        logits = cpc_info_nce_logits(
            p, encodings, step, indices.astype("int32"), method=method
        )
        return info_nce_loss(logits)

    _, grad = _value_and_grad(fn, predictions)
    assert np.all(np.isfinite(grad))
    # d loss / d p = mean over predictions of sum_j (softmax_j - 1[j=0]) * cand_j.
    pool = encodings.reshape(-1, dim)
    logits = _numpy_logits(predictions, encodings, step, indices)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = np.zeros_like(predictions, dtype="float64")
    for b in range(batch):
        for t in range(length - step):
            candidates = np.concatenate(
                [encodings[b, t + step][None], pool[indices[b, t]]]
            )
            weights = probs[b, t] - np.eye(len(candidates))[0]
            expected[b, t] = weights @ candidates
    expected /= batch * (length - step)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_scoring_costs_hand_computed():
    w = WRITE_COST_IN_MULTIPLY_ADDS
    costs = scoring_costs(10, 4, 3, "batch", pool_size=2)
    # Gather: 3 negatives x 4 dims multiply-adds, 12 floats written; the
    # batch score matrix: 2 x 10 columns of 4 multiply-adds, 20 floats.
    assert costs == {
        "gather": {"multiply_adds": 12, "floats": 12, "cost": 12 + 12 * w},
        "batch_matrix": {"multiply_adds": 80, "floats": 20, "cost": 80 + 20 * w},
    }
    # An unknown (dynamic) batch has no batch matrix to price.
    assert set(scoring_costs(10, 4, 3, "batch")) == {"gather"}


@pytest.mark.parametrize(
    "length,dim,num_negatives,negatives_from,pool_size,expected",
    [
        # The paper: T = 1000 costs 1000 * (512 + w) against gathering's
        # 128 * 512 * (1 + w): the score matrix is cheaper.
        (1000, 512, 128, "sequence", None, "sequence_matrix"),
        # Negatives from a batch of 32: 32000 columns cost more than gathering.
        (1000, 512, 128, "batch", 32, "gather"),
        (1000, 512, 128, "batch", None, "gather"),
        # "small" CPC: 63 * (128 + w) vs 32 * 128 * (1 + w).
        (63, 128, 32, "sequence", None, "sequence_matrix"),
        (63, 128, 32, "batch", 4, "batch_matrix"),
        # Low-dimensional encodings: writing N * D floats is cheap, scoring
        # T columns is not (1000 * (2 + w) > 4 * 2 * (1 + w)).
        (1000, 2, 4, "sequence", None, "gather"),
    ],
)
def test_auto_scoring_picks_the_cheaper_path(
    length, dim, num_negatives, negatives_from, pool_size, expected
):
    w = WRITE_COST_IN_MULTIPLY_ADDS
    gather = num_negatives * dim * (1 + w)
    columns = length if negatives_from == "sequence" else (pool_size or 0) * length
    matrix_cost = columns * (dim + w) if columns else None
    assert (expected == "gather") == (matrix_cost is None or matrix_cost > gather)
    choice = choose_cpc_scoring(
        length, dim, num_negatives, negatives_from, pool_size=pool_size
    )
    assert choice == expected
