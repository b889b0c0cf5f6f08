import keras
import numpy as np
import pytest

from keras_ecg.losses.nt_xent import contrastive_cross_entropy
from keras_ecg.losses.nt_xent import multi_view_nt_xent_loss
from keras_ecg.losses.nt_xent import nt_xent_loss


def _numpy_nt_xent(z_a, z_b, temperature):
    """Loss and accuracy of SimCLR's NT-Xent, one anchor at a time."""
    z = np.concatenate([z_a, z_b]).astype("float64")
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    losses, correct = [], []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        sims = {k: z[i] @ z[k] / temperature for k in others}
        denominator = sum(np.exp(s) for s in sims.values())
        losses.append(-np.log(np.exp(sims[positive]) / denominator))
        correct.append(max(sims, key=sims.get) == positive)
    return np.mean(losses), np.mean(correct)


def _compiled(fn):
    """`fn` jitted under JAX, where op-by-op dispatch compiles every op."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _grad(fn, x):
    """Gradient of scalar `fn(x)` w.r.t. `x` with the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            y = fn(x)
        return tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    import torch

    x = torch.tensor(x, requires_grad=True)
    fn(x).backward()
    return x.grad.numpy()


def _projections(n, d=8, seed=0):
    rng = np.random.default_rng(seed)
    z_a = rng.normal(size=(n, d)).astype("float32")
    z_b = (z_a + 0.5 * rng.normal(size=(n, d))).astype("float32")
    return z_a, z_b


@pytest.mark.parametrize("batch_size,temperature", [(1, 0.5), (3, 0.5), (4, 0.1)])
def test_matches_numpy(batch_size, temperature):
    z_a, z_b = _projections(batch_size)
    loss, accuracy = _compiled(
        lambda a, b: nt_xent_loss(a, b, temperature, return_accuracy=True)
    )(z_a, z_b)
    expected_loss, expected_accuracy = _numpy_nt_xent(z_a, z_b, temperature)
    np.testing.assert_allclose(float(loss), expected_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(accuracy), expected_accuracy)


def test_single_sample_has_no_negatives_and_zero_loss():
    z_a, z_b = _projections(1)
    loss, accuracy = _compiled(
        lambda a, b: nt_xent_loss(a, b, 0.5, return_accuracy=True)
    )(z_a, z_b)
    assert float(loss) == 0.0
    assert float(accuracy) == 1.0


def test_invariant_to_projection_scale():
    z_a, z_b = _projections(5)
    loss = _compiled(nt_xent_loss)
    np.testing.assert_allclose(
        float(loss(3.0 * z_a, 0.2 * z_b)), float(loss(z_a, z_b)), rtol=1e-5
    )


def test_gathered_keys_reproduce_the_global_batch():
    # Two "devices" of 3 samples each, keys all-gathered in device order: the
    # mean of their losses is the loss of the 6-sample batch.
    z_a, z_b = _projections(6, seed=1)
    device_loss = _compiled(
        lambda a, b, keys_a, keys_b, offset: nt_xent_loss(
            a, b, 0.5, keys_a=keys_a, keys_b=keys_b, offset=offset
        )
    )
    per_device = [
        float(
            device_loss(z_a[r * 3 : r * 3 + 3], z_b[r * 3 : r * 3 + 3], z_a, z_b, r * 3)
        )
        for r in range(2)
    ]
    expected, _ = _numpy_nt_xent(z_a, z_b, 0.5)
    np.testing.assert_allclose(np.mean(per_device), expected, rtol=1e-5)


def test_contrastive_cross_entropy_without_self_mask():
    rng = np.random.default_rng(2)
    queries = rng.normal(size=(3, 4)).astype("float32")
    keys = rng.normal(size=(5, 4)).astype("float32")
    positives = np.array([4, 0, 2])
    loss, correct = _compiled(
        lambda q, k, p: contrastive_cross_entropy(
            q, k, p, temperature=0.2, normalize=False
        )
    )(queries, keys, positives)
    logits = queries.astype("float64") @ keys.T.astype("float64") / 0.2
    expected = np.log(np.exp(logits).sum(1)) - logits[np.arange(3), positives]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), expected, rtol=1e-5)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(correct), logits.argmax(1) == positives
    )


def test_multi_view_averages_all_pairs():
    rng = np.random.default_rng(3)
    views = [rng.normal(size=(4, 6)).astype("float32") for _ in range(3)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.mean([_numpy_nt_xent(views[i], views[j], 0.5)[0] for i, j in pairs])
    loss = _compiled(lambda v: multi_view_nt_xent_loss(v, temperature=0.5))
    np.testing.assert_allclose(float(loss(views)), expected, rtol=1e-5)
    two_views = loss(views[:2])
    np.testing.assert_allclose(
        float(two_views), _numpy_nt_xent(views[0], views[1], 0.5)[0], rtol=1e-5
    )


def test_gradients_are_finite_and_match_finite_differences():
    z_a, z_b = _projections(4)

    def fn(z):
        return nt_xent_loss(z, z_b, 0.5)

    grad = _grad(fn, z_a)
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0
    # Central difference on one coordinate, with the float64 numpy reference.
    eps = 1e-3
    plus, minus = z_a.copy(), z_a.copy()
    plus[1, 2] += eps
    minus[1, 2] -= eps
    numeric = (
        _numpy_nt_xent(plus, z_b, 0.5)[0] - _numpy_nt_xent(minus, z_b, 0.5)[0]
    ) / (2 * eps)
    np.testing.assert_allclose(grad[1, 2], numeric, rtol=1e-2, atol=1e-4)


def test_half_precision_inputs_give_a_float32_loss():
    z_a, z_b = _projections(4)
    loss = _compiled(lambda a, b: nt_xent_loss(a, b, 0.1))(
        z_a.astype("float16"), z_b.astype("float16")
    )
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    expected, _ = _numpy_nt_xent(
        z_a.astype("float16").astype("float32"),
        z_b.astype("float16").astype("float32"),
        0.1,
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_bad_arguments_raise():
    z_a, z_b = _projections(2)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(z_a, z_b, temperature=0.0)
    with pytest.raises(ValueError, match="keys_a and keys_b"):
        nt_xent_loss(z_a, z_b, keys_a=z_a)
    with pytest.raises(ValueError, match="at least 2 views"):
        multi_view_nt_xent_loss([z_a])
