"""Tests of SwAV's Sinkhorn-Knopp codes and swapped-prediction loss."""

import keras
import numpy as np
import pytest

from keras_ecg.losses.swav_loss import sinkhorn_knopp
from keras_ecg.losses.swav_loss import swapped_prediction_loss
from keras_ecg.losses.swav_loss import swav_loss


def _numpy_sinkhorn(scores, epsilon, iterations):
    """The SwAV paper's Algorithm: Q = exp(s / eps).T, rows then columns."""
    q = np.exp(scores.astype("float64") / epsilon).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    q *= b
    return q.T


def _numpy_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _numpy_swav(scores, crops_for_assign, temperature, epsilon, iterations, queue=None):
    total = 0.0
    for i, crop_id in enumerate(crops_for_assign):
        s = scores[crop_id]
        if queue is not None:
            q = _numpy_sinkhorn(np.concatenate([queue[i], s]), epsilon, iterations)
            q = q[len(queue[i]) :]
        else:
            q = _numpy_sinkhorn(s, epsilon, iterations)
        sub = 0.0
        for v in range(len(scores)):
            if v != crop_id:
                sub -= np.mean(
                    np.sum(q * _numpy_log_softmax(scores[v] / temperature), 1)
                )
        total += sub / (len(scores) - 1)
    return total / len(crops_for_assign)


def _cosine_scores(rng, batch, num_prototypes, dim=6):
    z = rng.normal(size=(batch, dim))
    c = rng.normal(size=(num_prototypes, dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return (z @ c.T).astype("float32")


@pytest.mark.parametrize("epsilon,iterations", [(0.05, 3), (0.5, 1), (0.1, 10)])
def test_sinkhorn_matches_numpy(epsilon, iterations):
    scores = _cosine_scores(np.random.default_rng(0), 12, 5)
    codes = keras.ops.convert_to_numpy(sinkhorn_knopp(scores, epsilon, iterations))
    expected = _numpy_sinkhorn(scores, epsilon, iterations)
    np.testing.assert_allclose(codes, expected, rtol=1e-4, atol=1e-6)
    # Each sample's code is a distribution over prototypes.
    np.testing.assert_allclose(codes.sum(1), np.ones(12), atol=1e-5)


def test_sinkhorn_converges_to_equipartition():
    batch, num_prototypes = 16, 4
    scores = _cosine_scores(np.random.default_rng(1), batch, num_prototypes)
    codes = keras.ops.convert_to_numpy(sinkhorn_knopp(scores, 0.5, 200))
    # Prototypes get equal mass B / K; samples sum to 1.
    np.testing.assert_allclose(
        codes.sum(0), np.full(num_prototypes, batch / num_prototypes), rtol=1e-3
    )
    np.testing.assert_allclose(codes.sum(1), np.ones(batch), atol=1e-5)


def test_sinkhorn_mask_drops_samples():
    rng = np.random.default_rng(2)
    valid = _cosine_scores(rng, 6, 4)
    junk = 10.0 * rng.normal(size=(3, 4)).astype("float32")
    scores = np.concatenate([junk, valid])
    mask = np.array([0, 0, 0] + [1] * 6, "float32")
    codes = keras.ops.convert_to_numpy(sinkhorn_knopp(scores, 0.05, 3, mask))
    np.testing.assert_allclose(
        codes[3:], _numpy_sinkhorn(valid, 0.05, 3), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_array_equal(codes[:3], 0.0)


def test_sinkhorn_small_epsilon_stays_finite():
    scores = _cosine_scores(np.random.default_rng(3), 8, 5)
    codes = keras.ops.convert_to_numpy(sinkhorn_knopp(scores, 0.005, 3))
    assert np.all(np.isfinite(codes))
    np.testing.assert_allclose(codes.sum(1), np.ones(8), atol=1e-5)


def test_swapped_prediction_hand_computed():
    codes = np.array([[1.0, 0.0]], "float32")
    scores = np.array([[0.2, 0.0]], "float32")
    loss = keras.ops.convert_to_numpy(swapped_prediction_loss(codes, scores, 0.1))
    expected = -np.log(np.exp(2.0) / (np.exp(2.0) + 1.0))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize("crops_for_assign", [(0, 1), (0,), (1, 2)])
def test_multi_crop_loss_matches_numpy(crops_for_assign):
    rng = np.random.default_rng(4)
    scores = [_cosine_scores(rng, 8, 5) for _ in range(4)]
    loss = swav_loss(scores, crops_for_assign, 0.1, 0.05, 3)
    expected = _numpy_swav(scores, crops_for_assign, 0.1, 0.05, 3)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss), expected, rtol=1e-5, atol=1e-5
    )


def test_loss_with_queue_matches_numpy():
    rng = np.random.default_rng(5)
    scores = [_cosine_scores(rng, 4, 5) for _ in range(3)]
    queue = [_cosine_scores(rng, 6, 5) for _ in range(2)]
    mask = [np.ones(6, "float32"), np.ones(6, "float32")]
    loss = swav_loss(scores, (0, 1), 0.1, 0.05, 3, queue_scores=queue, queue_mask=mask)
    expected = _numpy_swav(scores, (0, 1), 0.1, 0.05, 3, queue=queue)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss), expected, rtol=1e-5, atol=1e-5
    )
    # A fully masked queue is the same as no queue.
    masked = swav_loss(
        scores,
        (0, 1),
        0.1,
        0.05,
        3,
        queue_scores=queue,
        queue_mask=[np.zeros(6, "float32")] * 2,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(masked),
        _numpy_swav(scores, (0, 1), 0.1, 0.05, 3),
        rtol=1e-5,
        atol=1e-5,
    )


def test_loss_is_float32_for_half_inputs():
    rng = np.random.default_rng(6)
    scores = [_cosine_scores(rng, 4, 5).astype("float16") for _ in range(2)]
    loss = swav_loss(scores)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert np.isfinite(keras.ops.convert_to_numpy(loss))


def test_loss_rejects_bad_views():
    scores = [np.zeros((2, 3), "float32")] * 2
    with pytest.raises(ValueError, match="at least 2 views"):
        swav_loss(scores[:1])
    with pytest.raises(ValueError, match="refers to view 2"):
        swav_loss(scores, crops_for_assign=(0, 2))


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


def test_codes_carry_no_gradient():
    # Two views: loss = (CE(q0, s1) + CE(q1, s0)) / 2; with the codes constant,
    # d loss / d s1 = (softmax(s1 / T) - q0) / (2 T B).
    rng = np.random.default_rng(7)
    s0, s1 = _cosine_scores(rng, 6, 4), _cosine_scores(rng, 6, 4)
    temperature = 0.1

    def fn(s):
        return swav_loss([s0, s], (0, 1), temperature, 0.05, 3)

    _, grad = _value_and_grad(fn, s1)
    assert np.all(np.isfinite(grad))
    q0 = _numpy_sinkhorn(s0, 0.05, 3)
    probs = np.exp(_numpy_log_softmax(s1.astype("float64") / temperature))
    expected = (probs - q0) / (2 * temperature * len(s1))
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)
