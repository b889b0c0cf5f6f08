import keras
import numpy as np
import pytest
import scipy.linalg
import scipy.special

from keras_ecg.layers.s4 import S4
from keras_ecg.layers.s4 import s4d_initialization
from keras_ecg.testing.test_case import assert_config_round_trip
from keras_ecg.testing.test_case import assert_saved_model_round_trip

BACKEND = keras.backend.backend()


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _parameters(layer):
    """The layer's SSM as complex NumPy arrays, from its raw variables."""
    v = {w.name: _numpy(w) for w in layer.weights}
    return {
        "dt": np.exp(v["log_dt"])[:, None],
        "a": -np.exp(v["log_a_real"]) + 1j * v["a_imag"],
        "b": v["b_real"] + 1j * v["b_imag"],
        "c": v["c_real"] + 1j * v["c_imag"],
        "d": v["d"],
    }


def _recurrence(layer, u):
    """`y_k = 2 Re(C x_k) + D u_k`, `x_k = A_bar x_{k-1} + B_bar u_k`, step by
    step, each channel its own system (ZOH: `A_bar = exp(dt A)`,
    `B_bar = (A_bar - 1) / A * B`); bidirectional: plus a backward state
    `s_t = A_bar s_{t+1} + B_bar u_{t+1}` read by the second `C`."""
    p = _parameters(layer)
    a_bar = np.exp(p["dt"] * p["a"])
    b_bar = (a_bar - 1.0) / p["a"] * p["b"]
    batch, length, channels = u.shape
    y = np.zeros((batch, length, channels))
    state = np.zeros((batch, channels, a_bar.shape[-1]), complex)
    for t in range(length):
        state = a_bar * state + b_bar * u[:, t, :, None]
        y[:, t] = 2.0 * np.real((p["c"][0] * state).sum(-1)) + p["d"] * u[:, t]
    if p["c"].shape[0] == 2:
        state = np.zeros_like(state)
        for t in range(length - 1, -1, -1):
            y[:, t] += 2.0 * np.real((p["c"][1] * state).sum(-1))
            state = a_bar * state + b_bar * u[:, t, :, None]
    return y


# One input shape for most tests: eager JAX compiles every op for every new
# shape, so fewer shapes keep these tests fast there.
SHAPE = (2, 32, 4)


def _inputs(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidir"])
@pytest.mark.parametrize("initialization", ["legs", "lin"])
def test_ssm_is_the_discretised_state_space_recurrence(bidirectional, initialization):
    # dt up to 0.5 so that the kernel has not decayed within 32 steps.
    layer = S4(
        d_state=8,
        bidirectional=bidirectional,
        initialization=initialization,
        dt_max=0.5,
    )
    layer.build((None, None, 4))
    u = _inputs()
    expected = _recurrence(layer, u.astype(np.float64))
    actual = _numpy(layer.ssm(u))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    # The kernel is the impulse response of the same system.
    kernel = _numpy(layer.kernel(32))
    impulse = np.zeros((1, 32, 4))
    impulse[0, 0] = 1.0
    forward = _recurrence(layer, impulse)[0] - _parameters(layer)["d"] * impulse[0]
    np.testing.assert_allclose(kernel[0].T, forward, rtol=1e-5, atol=1e-6)
    if bidirectional:
        # The reference's `S4.forward` (tmehari/ssm_ecg s4.py) in NumPy, on
        # the layer's two kernels: k = pad(k0, (0, L)) + pad(flip(k1), (L, 0)),
        # y = irfft(rfft(u, 2L) * rfft(k, 2L))[:L] + D u.
        length = u.shape[1]
        k = np.concatenate([kernel[0], kernel[1][:, ::-1]], axis=-1)
        u_t = u.transpose(0, 2, 1).astype(np.float64)
        y = np.fft.irfft(
            np.fft.rfft(u_t, n=2 * length) * np.fft.rfft(k, n=2 * length),
            n=2 * length,
        )[..., :length]
        y = y + u_t * _parameters(layer)["d"][:, None]
        np.testing.assert_allclose(actual, y.transpose(0, 2, 1), rtol=1e-5, atol=1e-5)


def test_block_is_gelu_dropout_then_linear_glu():
    layer = S4(d_state=8, dropout=0.5, bidirectional=True)
    u = _inputs(seed=1)
    out = _numpy(layer(u, training=False))
    ssm = _numpy(layer.ssm(u))
    gelu = 0.5 * ssm * (1.0 + scipy.special.erf(ssm / np.sqrt(2.0)))
    kernel, bias = (_numpy(w) for w in layer.output_dense.weights)
    z = gelu @ kernel + bias
    glu = z[..., :4] / (1.0 + np.exp(-z[..., 4:]))
    np.testing.assert_allclose(out, glu, rtol=1e-5, atol=1e-5)
    assert kernel.shape == (4, 8)
    # Training: whole channels are dropped (PyTorch's Dropout2d), so the
    # output differs but stays finite.
    dropped = _numpy(layer(u, training=True))
    assert np.isfinite(dropped).all() and not np.allclose(dropped, out)


def _hippo_legs(n):
    """HiPPO-LegS (Gu et al. 2020), written out independently of the layer:
    A_nk = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k)."""
    a = np.zeros((n, n))
    for i in range(n):
        for k in range(n):
            if i > k:
                a[i, k] = -np.sqrt((2 * i + 1) * (2 * k + 1))
            elif i == k:
                a[i, k] = -(i + 1)
    return a, np.sqrt(2.0 * np.arange(n) + 1.0)


@pytest.mark.backend_agnostic
def test_legs_initialization_is_the_diagonalised_normal_part_of_hippo_legs():
    n = 8
    legs, b_legs = _hippo_legs(n)
    p = np.sqrt(np.arange(n) + 0.5)
    normal = legs + np.outer(p, p)
    eigenvalues = np.linalg.eigvals(normal)
    a, b = s4d_initialization(n, "legs")
    # One of each conjugate pair of the normal part's spectrum (all -1/2 + iw).
    expected = eigenvalues[eigenvalues.imag > 0]
    expected = expected[np.argsort(expected.imag)]
    np.testing.assert_allclose(a[np.argsort(a.imag)], expected, atol=1e-10)
    # Phase-free check of B = V^* B: with C = B^T (so c = conj(b) in the
    # eigenbasis), the diagonal kernel 2 Re sum |b_n|^2 ... equals the dense
    # system's B^T exp(dt A l) B_bar, discretised by scipy's matrix exponential.
    dt, steps = 0.05, 40
    a_bar_dense = scipy.linalg.expm(dt * normal)
    b_bar_dense = np.linalg.solve(normal, (a_bar_dense - np.eye(n)) @ b_legs)
    dense = []
    state = b_bar_dense
    for _ in range(steps):
        dense.append(b_legs @ state)
        state = a_bar_dense @ state
    a_bar = np.exp(dt * a)
    b_bar = (a_bar - 1.0) / a * b
    diagonal = [
        2.0 * np.real(np.sum(np.conj(b) * a_bar**k * b_bar)) for k in range(steps)
    ]
    np.testing.assert_allclose(diagonal, dense, rtol=1e-9, atol=1e-9)
    # S4D-Lin: A_n = -1/2 + i pi n, B = 1.
    a, b = s4d_initialization(6, "lin")
    np.testing.assert_allclose(a, -0.5 + 1j * np.pi * np.arange(3))
    np.testing.assert_allclose(b, np.ones(3))


def test_initial_parameters():
    layer = S4(d_state=8, dt_min=0.01, dt_max=0.2, bidirectional=True)
    layer.build((None, None, 64))
    p = _parameters(layer)
    dt = p["dt"][:, 0]
    assert dt.min() >= 0.01 - 1e-9 and dt.max() <= 0.2 + 1e-9
    # Log-uniform: the logs spread over the whole range.
    assert np.ptp(np.log(dt)) > 0.8 * np.log(20.0)
    a, b = s4d_initialization(8, "legs")
    np.testing.assert_allclose(p["a"], np.broadcast_to(a, (64, 4)), rtol=1e-6)
    np.testing.assert_allclose(p["b"], np.broadcast_to(b, (64, 4)), rtol=1e-6)
    assert p["c"].shape == (2, 64, 4) and p["d"].shape == (64,)
    # C: complex standard normal (each part of variance 1/2), D: N(0, 1).
    assert 0.35 < np.var(p["c"].real) < 0.65 and 0.35 < np.var(p["c"].imag) < 0.65
    assert 0.5 < np.var(p["d"]) < 1.6
    # The reference keeps A, B and dt fixed; S4D trains them.
    frozen = S4(d_state=8, train_ssm=False)
    frozen.build((None, None, 4))
    assert sorted(w.name for w in frozen.trainable_weights) == [
        "bias",
        "c_imag",
        "c_real",
        "d",
        "kernel",
    ]
    assert len(layer.trainable_weights) == len(layer.weights) == 10
    # S4's convention: no weight decay on A, B and dt (zero gradients: AdamW
    # then only decays).
    optimizer = keras.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=list(S4.SSM_VARIABLE_PATTERNS))
    before = {w.name: _numpy(w) for w in layer.weights}
    optimizer.apply_gradients(
        [
            (keras.ops.convert_to_tensor(np.zeros(w.shape, "float32")), w)
            for w in layer.trainable_weights
        ]
    )
    decayed = {
        w.name for w in layer.weights if not np.allclose(_numpy(w), before[w.name])
    }
    assert decayed == {"c_real", "c_imag", "d", "kernel", "bias"}


@pytest.mark.parametrize("bidirectional", [False, True], ids=["causal", "bidir"])
def test_causal_layer_never_sees_the_future(bidirectional):
    layer = S4(d_state=8, bidirectional=bidirectional, dropout=0.2)
    u = _inputs(seed=2)
    changed = u.copy()
    changed[:, 20:] += 5.0 * _inputs(seed=3)[:, 20:]
    before, after = (_numpy(layer(x, training=False)) for x in (u, changed))
    if bidirectional:
        assert np.abs(before[:, :20] - after[:, :20]).max() > 1e-2
    else:
        np.testing.assert_allclose(after[:, :20], before[:, :20], atol=1e-6, rtol=0)
    assert np.abs(before[:, 20:] - after[:, 20:]).max() > 1e-2


def test_kernel_length_follows_the_input():
    layer = S4(d_state=8)
    u = _inputs(seed=4)
    long = _numpy(layer(u, training=False))
    short = _numpy(layer(u[:, :13], training=False))
    assert short.shape == (2, 13, 4)
    # Causal: the first 13 outputs do not depend on the length.
    np.testing.assert_allclose(long[:, :13], short, rtol=1e-5, atol=1e-5)
    assert tuple(layer.kernel(13).shape) == (1, 4, 13)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graph shapes")
def test_unknown_length_in_a_tensorflow_graph():
    import tensorflow as tf

    layer = S4(d_state=4, bidirectional=True)
    u = _inputs(seed=5)
    eager = _numpy(layer(u))
    graph = tf.function(
        lambda x: layer(x), input_signature=[tf.TensorSpec((None, None, 4))]
    )
    np.testing.assert_allclose(_numpy(graph(u)), eager, rtol=1e-5, atol=1e-5)


def _loss_and_gradients(layer, weights):
    """`loss(values, u) = sum(weights * layer(u))` with the variables set to
    `values`, and its gradient w.r.t. `(values, u)` by the backend's autodiff.
    """
    variables = layer.trainable_variables
    if BACKEND == "jax":
        import jax

        def jax_loss(values, u):
            y, _ = layer.stateless_call(values, [], u)
            return (y * weights).sum()

        # Compiled once: eager JAX compiles every op for every new shape.
        loss = jax.jit(jax_loss)
        grad = jax.jit(jax.grad(jax_loss, argnums=(0, 1)))
        return (
            lambda values, u: float(loss(values, u)),
            lambda values, u: keras.tree.map_structure(np.asarray, grad(values, u)),
        )

    def assigned(values):
        for variable, value in zip(variables, values):
            variable.assign(value)

    def loss(values, u):
        assigned(values)
        return float(np.sum(_numpy(layer(u)) * weights))

    if BACKEND == "tensorflow":
        import tensorflow as tf

        def tf_grad(values, u):
            assigned(values)
            x = tf.constant(u)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(layer(x) * weights)
            grads = tape.gradient(y, [v.value for v in variables] + [x])
            return [g.numpy() for g in grads[:-1]], grads[-1].numpy()

        return loss, tf_grad
    import torch

    def torch_grad(values, u):
        assigned(values)
        x = torch.tensor(u, requires_grad=True)
        y = (layer(x) * torch.tensor(weights)).sum()
        grads = torch.autograd.grad(y, [v.value for v in variables] + [x])
        return [g.numpy() for g in grads[:-1]], grads[-1].numpy()

    return loss, torch_grad


def test_gradients_match_central_differences():
    # float64 under TensorFlow; under JAX and torch, Keras 3.15's type
    # promotion (`keras.backend.result_type`) maps float64 to float32 in
    # ops such as matmul, sin and cos, so float32 with a looser tolerance.
    dtype = "float64" if BACKEND == "tensorflow" else "float32"
    eps, rtol, atol = (1e-6, 1e-6, 1e-8) if dtype == "float64" else (1e-3, 1e-2, 2e-3)
    layer = S4(d_state=4, bidirectional=True, dtype=dtype, dt_max=0.3)
    u = np.random.default_rng(6).normal(size=(2, 12, 3)).astype(dtype)
    layer.build(u.shape)
    weights = np.random.default_rng(7).normal(size=(2, 12, 3)).astype(dtype)
    loss, gradients = _loss_and_gradients(layer, weights)
    values = [_numpy(v).astype(dtype) for v in layer.trainable_variables]
    grads, grad_u = gradients(values, u)
    rng = np.random.default_rng(8)
    for i, (variable, grad) in enumerate(zip(layer.trainable_variables, grads)):
        assert np.isfinite(grad).all(), variable.name
        # Three random entries of each variable.
        for index in rng.choice(grad.size, size=min(3, grad.size), replace=False):
            shifted = [v.copy() for v in values]
            shifted[i].reshape(-1)[index] += eps
            up = loss(shifted, u)
            shifted[i].reshape(-1)[index] -= 2 * eps
            down = loss(shifted, u)
            np.testing.assert_allclose(
                grad.reshape(-1)[index],
                (up - down) / (2 * eps),
                rtol=rtol,
                atol=atol,
                err_msg=variable.name,
            )
    for index in [(0, 0, 0), (1, 5, 2), (0, 11, 1)]:
        shifted = u.copy()
        shifted[index] += eps
        up = loss(values, shifted)
        shifted[index] -= 2 * eps
        down = loss(values, shifted)
        np.testing.assert_allclose(
            grad_u[index], (up - down) / (2 * eps), rtol=rtol, atol=atol
        )


def test_mixed_precision_keeps_the_kernel_in_float32():
    u = _inputs(seed=9)
    reference = S4(d_state=8, bidirectional=True)
    reference.build(u.shape)
    mixed = S4(d_state=8, bidirectional=True, dtype="mixed_bfloat16")
    mixed.build(u.shape)
    mixed.set_weights(reference.get_weights())
    assert all(w.dtype == "float32" for w in mixed.weights)
    assert keras.backend.standardize_dtype(mixed.kernel(32).dtype) == "float32"
    assert keras.backend.standardize_dtype(mixed.ssm(u).dtype) == "float32"
    out = mixed(keras.ops.cast(u, "bfloat16"))
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    out, expected = _numpy(out), _numpy(reference(u))
    assert np.isfinite(out).all()
    # bfloat16 keeps ~3 significant digits.
    np.testing.assert_allclose(out, expected, atol=0.05 * np.abs(expected).max())


def test_config_and_saved_model_round_trip(tmp_path):
    layer = S4(
        d_state=8,
        bidirectional=True,
        initialization="lin",
        dt_min=0.002,
        dt_max=0.05,
        train_ssm=False,
        output_activation=None,
        dropout=0.1,
    )
    rebuilt = assert_config_round_trip(layer)
    assert rebuilt.get_config()["output_activation"] is None
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, layer(inputs))
    assert_saved_model_round_trip(model, _inputs(seed=10), tmp_path)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="d_state must be even"):
        S4(d_state=5)
    with pytest.raises(ValueError, match="unknown initialization"):
        S4(initialization="legt")
    with pytest.raises(ValueError, match="dt_min <= dt_max"):
        S4(dt_min=0.1, dt_max=0.01)
