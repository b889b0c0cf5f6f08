"""A diagonal structured state-space (S4D) layer in `keras.ops`.

The layer follows the S4 block of the ECG-CPC reference code (Mehari &
Strodthoff, "Advancing the State-of-the-Art for ECG Analysis through
Structured State Space Models", tmehari/ssm_ecg, `code/dl_models/s4.py` and
`s4original.py`, the standalone S4 of HazyResearch/state-spaces), with the
diagonal parameterisation of Gu et al. 2022 ("On the Parameterization and
Initialization of Diagonal State Space Models", S4D) in place of the
reference's normal-plus-low-rank (NPLR/DPLR) state matrix.
"""

import math

import keras
import numpy as np
from keras import ops

INITIALIZATIONS = ("legs", "lin")


def s4d_initialization(d_state, initialization="legs"):
    """The diagonal state matrix `A` and input vector `B` of an S4D layer.

    The state has `d_state` complex dimensions that come in conjugate pairs;
    one of each pair is kept (`d_state // 2` modes) and the kernel is twice
    the real part of their sum.

    - `"legs"` (S4D-LegS): the eigenvalues of the normal part
      `A + P P^T` of HiPPO-LegS (`P_n = sqrt(n + 1/2)`), all `-1/2 + i w_n`,
      and `B` projected on its eigenvectors (`V^* B`, `B_n = sqrt(2n + 1)`):
      the `(A, B)` of the reference's NPLR S4 (`nplr("legs", N)` in
      `s4.py`) without its low-rank term. Gu et al. show that this diagonal
      system's kernel approaches S4-LegS's as the state grows, which is
      what makes S4D match S4.
    - `"lin"` (S4D-Lin): `A_n = -1/2 + i pi n`, `B_n = 1`.

    Args:
        d_state: the state size `N` (even).
        initialization: `"legs"` or `"lin"`.

    Returns:
        `(a, b)`: complex128 NumPy arrays of shape `(d_state // 2,)`, the
        modes with non-negative imaginary part, sorted by it.

    Example:

    >>> a, b = s4d_initialization(8)
    >>> bool(np.allclose(a.real, -0.5))
    True
    """
    d_state = int(d_state)
    if d_state < 2 or d_state % 2:
        raise ValueError(f"S4: d_state must be even and >= 2, got {d_state}.")
    if initialization not in INITIALIZATIONS:
        raise ValueError(
            f"S4: unknown initialization {initialization!r}; expected one of "
            f"{INITIALIZATIONS}."
        )
    modes = d_state // 2
    if initialization == "lin":
        a = -0.5 + 1j * math.pi * np.arange(modes)
        return a, np.ones(modes, dtype=np.complex128)
    n = np.arange(d_state, dtype=np.float64)
    row, col = np.meshgrid(n, n, indexing="ij")
    # HiPPO-LegS: A_nk = -sqrt(2n+1) sqrt(2k+1) below the diagonal, -(n+1) on it.
    root = np.sqrt(2.0 * n + 1.0)
    legs = -np.where(row > col, np.outer(root, root), np.diag(n + 1.0))
    p = np.sqrt(n + 0.5)
    normal = legs + np.outer(p, p)
    # The normal part is -1/2 I plus a skew-symmetric matrix S: S = i H with
    # H Hermitian, so eigh gives its eigenvalues i w and unitary eigenvectors.
    skew = normal + 0.5 * np.eye(d_state)
    w, vectors = np.linalg.eigh(-1j * skew)
    keep = np.argsort(w)[modes:]
    a = -0.5 + 1j * w[keep]
    b = vectors[:, keep].conj().T @ root.astype(np.complex128)
    return a, b


def _constant(values):
    """An initializer returning `values` (broadcast to the requested shape)."""

    def initializer(shape, dtype=None):
        return ops.convert_to_tensor(
            np.broadcast_to(np.asarray(values, dtype="float64"), shape), dtype=dtype
        )

    return initializer


def torch_linear_initializers(fan_in):
    """`(kernel, bias)` initializers of PyTorch's `nn.Linear` default.

    Both uniform in `+-1/sqrt(fan_in)` (`kaiming_uniform_(a=sqrt(5))`), the
    initialisation of every linear map of the reference S4 code.
    """
    bound = 1.0 / math.sqrt(max(int(fan_in), 1))
    return (
        keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        keras.initializers.RandomUniform(-bound, bound),
    )


@keras.saving.register_keras_serializable(package="keras_ecg")
class S4(keras.layers.Layer):
    """Diagonal state-space (S4D) block: SSM convolution, GELU, GLU projection.

    Each of the `H` input channels runs its own linear time-invariant system
    `x' = A x + B u`, `y = 2 Re(C x) + D u` with a diagonal complex `A` of
    `d_state // 2` modes (one of each conjugate pair), discretised with a
    zero-order hold at a learned per-channel step `dt` (initialised
    log-uniformly in `[dt_min, dt_max]`): `A_bar = exp(dt A)`,
    `B_bar = (exp(dt A) - 1) / A * B`. Over a sequence of `L` steps this is
    the causal convolution with the kernel
    `K_l = 2 Re(sum_n C_n A_bar_n^l B_bar_n)`, `l = 0 .. L - 1`, applied by
    FFT (both zero-padded to `2L`, so nothing wraps around) plus the skip
    term `D u`. With `bidirectional=True` a second kernel (its own `C`,
    shared `A`, `B`, `dt`) runs over the time-reversed input, so the output
    at `t` also sees the inputs after `t` (`sum_{s > t} K'_{s - t - 1} u_s`,
    as the reference's `bidirectional=True`). Then, as the reference block:
    GELU, channel dropout, and a position-wise linear map, by default to `2H`
    followed by a GLU (the reference's `postact="glu"`).

    The complex parameters are pairs of real variables and the complex
    arithmetic is done on them (`keras.ops` has little complex support),
    so the layer is identical on TensorFlow, JAX and PyTorch. The kernel
    and the FFT convolution are computed in float32 (float64 for a float64
    layer, though Keras 3.15 computes ops such as sin and matmul of float64
    in float32 under JAX and torch) under any dtype policy, the result cast
    back to the compute dtype. Any input length works: the kernel is as long
    as the input.

    Parameterisation vs the reference: the reference S4 keeps `A` in NPLR
    form (HiPPO-LegS = normal + rank 1), discretises bilinearly and
    evaluates the kernel with a Cauchy kernel at roots of unity (a CUDA
    extension or pykeops). Here `A` is the diagonal of that normal part
    (S4D-LegS, `initialization="legs"`), discretised with a zero-order hold,
    and the kernel is a Vandermonde product in `keras.ops`: no custom
    kernel, any backend, any length; Gu et al. 2022 found S4D-LegS on par
    with S4-LegS. `train_ssm=False` keeps `A`, `B` and `dt` at their
    initialisation as the reference does (its `HippoSSKernel` registers
    them as buffers unless `trainable` is given; only `C` and `D` train);
    S4D trains them (the default), without weight decay: pass
    `var_names=S4.SSM_VARIABLE_PATTERNS` to the optimizer's
    `exclude_from_weight_decay` for that.

    Args:
        d_state: state size `N` (even); `N // 2` complex modes per channel.
        bidirectional: also convolve the time-reversed input (non-causal).
        initialization: `"legs"` (S4D-LegS) or `"lin"` (S4D-Lin).
        dt_min, dt_max: range of the initial steps (log-uniform).
        train_ssm: whether `A`, `B` and `dt` train.
        activation: activation after the SSM (`"gelu"`: the exact, erf GELU
            of PyTorch's `nn.GELU`), a name for `keras.activations.get`.
        output_activation: `"glu"` (linear map to `2H`, then a GLU),
            `None` (linear map to `H`) or an activation name applied after
            a linear map to `H`.
        dropout: channel dropout rate after the activation (PyTorch's
            `Dropout2d` on `(batch, H, L)`: whole channels).
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> layer = S4(d_state=8)
    >>> tuple(layer(np.zeros((2, 100, 16), "float32")).shape)
    (2, 100, 16)
    """

    # `A`, `B` and `dt` (the variables `train_ssm` switches), as patterns
    # for `optimizer.exclude_from_weight_decay(var_names=...)`. Not anchored:
    # TensorFlow's optimizer matches the `tf.Variable` names ("log_dt:0").
    SSM_VARIABLE_PATTERNS = ("log_dt", "log_a_real", "a_imag", "b_real", "b_imag")

    def __init__(
        self,
        d_state=64,
        bidirectional=False,
        initialization="legs",
        dt_min=1e-3,
        dt_max=1e-1,
        train_ssm=True,
        activation="gelu",
        output_activation="glu",
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Validates both before any variable exists.
        s4d_initialization(d_state, initialization)
        if not 0 < float(dt_min) <= float(dt_max):
            raise ValueError(
                f"S4: need 0 < dt_min <= dt_max, got {dt_min} and {dt_max}."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"S4: dropout must be in [0, 1), got {dropout}.")
        self.d_state = int(d_state)
        self.bidirectional = bool(bidirectional)
        self.initialization = initialization
        self.dt_min = float(dt_min)
        self.dt_max = float(dt_max)
        self.train_ssm = bool(train_ssm)
        self.activation = activation
        self.output_activation = output_activation
        self.dropout = float(dropout)
        self._activation_fn = _activation(activation)
        self._output_activation_fn = (
            None
            if output_activation in (None, "glu")
            else keras.activations.get(output_activation)
        )
        self.dropout_layer = (
            keras.layers.SpatialDropout1D(
                self.dropout, dtype=self.dtype_policy, name="dropout"
            )
            if self.dropout > 0
            else None
        )
        self.output_dense = None
        self.supports_masking = False

    @property
    def num_kernels(self):
        """1, or 2 when bidirectional (forward and backward kernels)."""
        return 2 if self.bidirectional else 1

    @property
    def _ssm_dtype(self):
        # The kernel and the FFT never run below float32.
        return "float64" if self.variable_dtype == "float64" else "float32"

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("S4: the number of input channels must be known.")
        channels = int(channels)
        modes = self.d_state // 2
        a, b = s4d_initialization(self.d_state, self.initialization)

        def ssm_weight(name, shape, initializer, trainable):
            # autocast=False: the SSM parameters stay float32 under a
            # mixed-precision policy (Keras would cast them to float16).
            return self.add_weight(
                name=name,
                shape=shape,
                initializer=initializer,
                trainable=trainable,
                autocast=False,
            )

        self.log_dt = ssm_weight(
            "log_dt",
            (channels,),
            keras.initializers.RandomUniform(
                math.log(self.dt_min), math.log(self.dt_max)
            ),
            self.train_ssm,
        )
        # Re(A) = -exp(log_a_real) < 0 keeps every mode stable while it trains.
        self.log_a_real = ssm_weight(
            "log_a_real",
            (channels, modes),
            _constant(np.log(-a.real)),
            self.train_ssm,
        )
        self.a_imag = ssm_weight(
            "a_imag", (channels, modes), _constant(a.imag), self.train_ssm
        )
        self.b_real = ssm_weight(
            "b_real", (channels, modes), _constant(b.real), self.train_ssm
        )
        self.b_imag = ssm_weight(
            "b_imag", (channels, modes), _constant(b.imag), self.train_ssm
        )
        # C ~ complex standard normal (real and imaginary parts of variance
        # 1/2), D ~ standard normal, as the reference.
        c_init = keras.initializers.RandomNormal(stddev=math.sqrt(0.5))
        shape_c = (self.num_kernels, channels, modes)
        self.c_real = ssm_weight("c_real", shape_c, c_init, True)
        self.c_imag = ssm_weight("c_imag", shape_c, c_init, True)
        self.d = ssm_weight(
            "d", (channels,), keras.initializers.RandomNormal(stddev=1.0), True
        )
        kernel_init, bias_init = torch_linear_initializers(channels)
        self.output_dense = keras.layers.Dense(
            2 * channels if self.output_activation == "glu" else channels,
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            dtype=self.dtype_policy,
            name="output_linear",
        )
        self.output_dense.build(tuple(input_shape))
        if self.dropout_layer is not None:
            self.dropout_layer.build(tuple(input_shape))
        self.built = True

    def _read(self, variable):
        return ops.cast(variable, self._ssm_dtype)

    def discretized(self):
        """The zero-order-hold discretisation, as real pairs.

        Returns:
            dict of `(H, N/2)` tensors: `dt_a_real`, `dt_a_imag` (`dt A`, so
            `A_bar = exp(dt A)`), `b_bar_real`, `b_bar_imag`
            (`B_bar = (exp(dt A) - 1) / A * B`).
        """
        dt = ops.exp(self._read(self.log_dt))[:, None]
        a_real = -ops.exp(self._read(self.log_a_real))
        a_imag = self._read(self.a_imag)
        x, y = dt * a_real, dt * a_imag
        # exp(dt A) - 1 without cancellation for small dt A:
        # expm1(x) cos(y) - 2 sin(y / 2)^2  +  i exp(x) sin(y).
        half = ops.sin(0.5 * y)
        num_real = ops.expm1(x) * ops.cos(y) - 2.0 * half * half
        num_imag = ops.exp(x) * ops.sin(y)
        # (num / A) = num * conj(A) / |A|^2; |A| >= Re(A) > 0.
        norm = a_real * a_real + a_imag * a_imag
        f_real = (num_real * a_real + num_imag * a_imag) / norm
        f_imag = (num_imag * a_real - num_real * a_imag) / norm
        b_real, b_imag = self._read(self.b_real), self._read(self.b_imag)
        return {
            "dt_a_real": x,
            "dt_a_imag": y,
            "b_bar_real": f_real * b_real - f_imag * b_imag,
            "b_bar_imag": f_real * b_imag + f_imag * b_real,
        }

    def kernel(self, length):
        """The convolution kernels `K_l = 2 Re(C A_bar^l B_bar)`, `l < length`.

        Args:
            length: number of steps (a Python int or a scalar tensor).

        Returns:
            `(num_kernels, H, length)` in float32 (float64 for a float64
            layer): the forward kernel, then the backward one if
            bidirectional.
        """
        disc = self.discretized()
        c_real, c_imag = self._read(self.c_real), self._read(self.c_imag)
        # C' = C * B_bar: (kernels, H, N/2).
        cb_real = c_real * disc["b_bar_real"] - c_imag * disc["b_bar_imag"]
        cb_imag = c_real * disc["b_bar_imag"] + c_imag * disc["b_bar_real"]
        steps = ops.arange(length, dtype=self._ssm_dtype)
        # A_bar^l = exp(l dt A): (H, N/2, L), a Vandermonde matrix per channel.
        decay = ops.exp(disc["dt_a_real"][..., None] * steps)
        angle = disc["dt_a_imag"][..., None] * steps
        power_real = decay * ops.cos(angle)
        power_imag = decay * ops.sin(angle)
        kernel = ops.einsum("khn,hnl->khl", cb_real, power_real) - ops.einsum(
            "khn,hnl->khl", cb_imag, power_imag
        )
        return 2.0 * kernel

    def ssm(self, inputs):
        """The state-space convolution `y = K * u + D u`, before the activation.

        Args:
            inputs: `(batch, L, H)`.

        Returns:
            `(batch, L, H)` in float32 (float64 for a float64 layer).
        """
        u = ops.transpose(ops.cast(inputs, self._ssm_dtype), (0, 2, 1))
        length = ops.shape(u)[-1]
        kernel = self.kernel(length)
        forward = kernel[0]
        if self.bidirectional:
            # Index L + j holds K'_{L-1-j}: the circular convolution of length
            # 2L then adds sum_{s > t} K'_{s-t-1} u_s to the causal part.
            full = ops.concatenate([forward, ops.flip(kernel[1], axis=-1)], axis=-1)
        else:
            full = ops.concatenate([forward, ops.zeros_like(forward)], axis=-1)
        padded = ops.concatenate([u, ops.zeros_like(u)], axis=-1)
        u_real, u_imag = ops.rfft(padded)
        k_real, k_imag = ops.rfft(full)
        y = ops.irfft(
            (u_real * k_real - u_imag * k_imag, u_real * k_imag + u_imag * k_real)
        )
        y = y[..., :length] + u * self._read(self.d)[:, None]
        return ops.transpose(y, (0, 2, 1))

    def call(self, inputs, training=None):
        y = ops.cast(self.ssm(inputs), self.compute_dtype)
        y = self._activation_fn(y)
        if self.dropout_layer is not None:
            y = self.dropout_layer(y, training=training)
        y = self.output_dense(y)
        if self.output_activation == "glu":
            return ops.glu(y, axis=-1)
        if self._output_activation_fn is not None:
            return self._output_activation_fn(y)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "d_state": self.d_state,
                "bidirectional": self.bidirectional,
                "initialization": self.initialization,
                "dt_min": self.dt_min,
                "dt_max": self.dt_max,
                "train_ssm": self.train_ssm,
                "activation": self.activation,
                "output_activation": self.output_activation,
                "dropout": self.dropout,
            }
        )
        return config


def _activation(name):
    if name == "gelu":
        # PyTorch's nn.GELU (the reference) is the exact, erf-based GELU;
        # keras.ops.gelu defaults to the tanh approximation.
        return lambda x: ops.gelu(x, approximate=False)
    return keras.activations.get(name)
