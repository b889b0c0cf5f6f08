import keras
import numpy as np
import pytest

from keras_ecg.losses.byol_loss import byol_loss
from keras_ecg.losses.byol_loss import byol_regression_loss


def _numpy_regression(p, z):
    p = p.astype("float64")
    z = z.astype("float64")
    cos = (p * z).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(z, axis=1))
    return 2.0 - 2.0 * cos


def _compiled(fn):
    """`fn` jitted under JAX, where op-by-op dispatch compiles every op."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _grads(fn, *xs):
    """Gradients of scalar `fn(*xs)` w.r.t. every x with the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xs = [tf.Variable(x) for x in xs]
        with tf.GradientTape() as tape:
            y = fn(*xs)
        return [None if g is None else g.numpy() for g in tape.gradient(y, xs)]
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(xs))))(*xs)
        return [np.asarray(g) for g in grads]
    import torch

    xs = [torch.tensor(x, requires_grad=True) for x in xs]
    fn(*xs).backward()
    return [None if x.grad is None else x.grad.numpy() for x in xs]


def _vectors(seed=0, n=5, d=7):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, d)).astype("float32") for _ in range(4)]


def test_regression_loss_matches_numpy():
    p, z, _, _ = _vectors()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(_compiled(byol_regression_loss)(p, z)),
        _numpy_regression(p, z),
        rtol=1e-5,
        atol=1e-6,
    )


def test_symmetric_loss_sums_both_directions():
    p_1, p_2, z_1, z_2 = _vectors(1)
    expected = _numpy_regression(p_1, z_2).mean() + _numpy_regression(p_2, z_1).mean()
    np.testing.assert_allclose(
        float(_compiled(byol_loss)(p_1, p_2, z_1, z_2)), expected, rtol=1e-5, atol=1e-6
    )


def test_hand_computed_cases():
    e = np.eye(2, 3, dtype="float32")
    byol_loss_fn = _compiled(byol_loss)
    # Identical directions: 0; orthogonal: 2 per direction; opposite: 4.
    assert float(byol_loss_fn(e, e, 3.0 * e, e)) == pytest.approx(0.0, abs=1e-6)
    assert float(byol_loss_fn(e, e, e[::-1], e[::-1])) == pytest.approx(4.0, abs=1e-6)
    assert float(byol_loss_fn(e, e, -e, -e)) == pytest.approx(8.0, abs=1e-6)


def test_no_gradient_into_targets_and_finite_into_predictions():
    p_1, p_2, z_1, z_2 = _vectors(2)
    g_p1, g_p2, g_z1, g_z2 = _grads(byol_loss, p_1, p_2, z_1, z_2)
    for g in (g_p1, g_p2):
        assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    for g in (g_z1, g_z2):
        assert g is None or np.all(g == 0)
    # Central difference of the float64 reference on one coordinate.
    eps = 1e-3
    plus, minus = p_1.copy(), p_1.copy()
    plus[0, 3] += eps
    minus[0, 3] -= eps
    numeric = (
        _numpy_regression(plus, z_2).mean() - _numpy_regression(minus, z_2).mean()
    ) / (2 * eps)
    np.testing.assert_allclose(g_p1[0, 3], numeric, rtol=1e-2, atol=1e-4)


def test_half_precision_inputs_give_a_float32_loss():
    vectors = [v.astype("float16") for v in _vectors(3)]
    loss = _compiled(byol_loss)(*vectors)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    p_1, p_2, z_1, z_2 = [v.astype("float32") for v in vectors]
    expected = _numpy_regression(p_1, z_2).mean() + _numpy_regression(p_2, z_1).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
