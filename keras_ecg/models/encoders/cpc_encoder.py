"""CPC encoder (per-timestep MLP or strided convolutions) and LSTM context."""

import functools

import keras

from keras_ecg.distribute import synchronize_batch_norm
from keras_ecg.presets.preset_mixin import PresetMixin

# What `keras.layers.BatchNormalization` defaults to, and so what CPCEncoder
# used before its BatchNorm settings were constructor arguments.
_OLD_BATCH_NORM_MOMENTUM = 0.99
_OLD_BATCH_NORM_EPSILON = 1e-3


@keras.saving.register_keras_serializable(package="keras_ecg")
class CPCEncoder(PresetMixin, keras.layers.Layer):
    """Stack of Conv1D -> [BatchNorm] -> ReLU blocks mapping ECG to a sequence.

    With kernel sizes and strides of 1 (the default) every layer is a dense
    layer applied per time step: the paper's 4-layer "fc" CPC encoder, which
    keeps the time resolution (`T' = T`). `cpc_strided_encoder()` builds the
    convolutional variant (kernels 10, 4, 4, 4, strides 2, 2, 2, 2;
    `T' = ceil(T / 16)`). Convolutions use "same" padding (TensorFlow's
    convention: `ceil(T / stride)` outputs, an odd total padding puts the
    extra zero on the right), applied as explicit zero padding before a
    "valid" convolution: same outputs and weights, but TensorFlow never sees
    an asymmetrically padded strided convolution, whose input gradient
    TensorFlow's oneDNN CPU kernel (TF 2.21, oneDNN 3.7 `brgconv_strided`
    backward-data) computed wrongly in a few percent of the calls (a thread
    race; e.g. a 1000-step crop reaches the last layer as 125 steps, padded
    1 left and 2 right), which made CPC pretraining irreproducible.

    Saved alone (`encoder.save_to_preset(folder)`) it is a preset backbone,
    which `CPCEncoder.from_preset(handle)` loads; a pretrained `CPC`'s preset
    backbone is its encoder + context `Sequential`
    (`keras_ecg.presets.from_preset(handle, component="backbone")`).

    Args:
        filters: output channels of each layer.
        kernel_sizes: kernel size of each layer (an int applies to all).
        strides: stride of each layer (an int applies to all).
        use_batch_norm: add BatchNormalization before each ReLU.
        batch_norm_momentum: moving-average momentum of the BatchNorm
            statistics, Keras convention (`0.9` is PyTorch's `momentum=0.1`,
            the reference CPC's `nn.BatchNorm1d` default).
        batch_norm_epsilon: BatchNorm epsilon (`1e-5`: PyTorch's default).
            Encoders saved before these two options existed used Keras'
            defaults, `0.99` and `1e-3`, and load with them.
        synchronized_batch_norm: compute the BatchNorm statistics over the
            global batch of a distributed step (TensorFlow: Keras'
            `BatchNormalization(synchronized=True)`; torch: moments
            all-reduced over the processes, see
            `keras_ecg.distribute.synchronize_batch_norm`); JAX's are global
            anyway.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> encoder = CPCEncoder(filters=(16, 16))
    >>> tuple(encoder(np.zeros((2, 100, 12), "float32")).shape)
    (2, 100, 16)
    """

    preset_component = "backbone"

    def __init__(
        self,
        filters=(512, 512, 512, 512),
        kernel_sizes=1,
        strides=1,
        use_batch_norm=True,
        batch_norm_momentum=0.9,
        batch_norm_epsilon=1e-5,
        synchronized_batch_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.filters = tuple(int(f) for f in filters)
        self.kernel_sizes = _per_layer(kernel_sizes, len(self.filters))
        self.strides = _per_layer(strides, len(self.filters))
        if not (len(self.filters) == len(self.kernel_sizes) == len(self.strides)):
            raise ValueError(
                "CPCEncoder: filters, kernel_sizes and strides must have the same "
                f"length, got {self.filters}, {self.kernel_sizes}, {self.strides}."
            )
        if not self.filters:
            raise ValueError("CPCEncoder: at least one layer is required.")
        self.use_batch_norm = bool(use_batch_norm)
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.batch_norm_epsilon = float(batch_norm_epsilon)
        self.conv_layers = []
        self.norm_layers = []
        for i, (f, k, s) in enumerate(
            zip(self.filters, self.kernel_sizes, self.strides)
        ):
            self.conv_layers.append(
                keras.layers.Conv1D(
                    f,
                    k,
                    strides=s,
                    # "same", padded explicitly in `call` (see above).
                    padding="valid",
                    # The following BatchNorm has its own shift.
                    use_bias=not self.use_batch_norm,
                    dtype=self.dtype_policy,
                    name=f"conv_{i}",
                )
            )
            if self.use_batch_norm:
                norm = keras.layers.BatchNormalization(
                    momentum=self.batch_norm_momentum,
                    epsilon=self.batch_norm_epsilon,
                    dtype=self.dtype_policy,
                    name=f"bn_{i}",
                )
                # TF: Keras' `synchronized`; torch: keras-ecg's all-reduced
                # moments; JAX's statistics are global anyway.
                synchronize_batch_norm(norm, self.synchronized_batch_norm)
                self.norm_layers.append(norm)

    @property
    def output_dim(self):
        return self.filters[-1]

    @property
    def downsampling_factor(self):
        factor = 1
        for s in self.strides:
            factor *= s
        return factor

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, conv in enumerate(self.conv_layers):
            # Built length-agnostic: `call` pads its input first.
            conv.build((shape[0], None) + shape[2:])
            shape = self._layer_output_shape(i, shape)
            if self.use_batch_norm:
                self.norm_layers[i].build(shape)
        self.built = True

    def _pad_same(self, x, i):
        """Zero-pads `x` as a "same" convolution of layer `i` would."""
        length = x.shape[1]
        if length is None:
            # Unknown static length (a TensorFlow graph): a scalar tensor.
            length = keras.ops.shape(x)[1]
        left, right = _same_padding(length, self.kernel_sizes[i], self.strides[i])
        if isinstance(left, int) and left == right == 0:
            return x
        return keras.ops.pad(x, ((0, 0), (left, right), (0, 0)))

    def call(self, inputs, training=None):
        x = inputs
        for i, conv in enumerate(self.conv_layers):
            x = conv(self._pad_same(x, i))
            if self.use_batch_norm:
                x = self.norm_layers[i](x, training=training)
            x = keras.ops.relu(x)
        return x

    def _layer_output_shape(self, i, shape):
        length = shape[1]
        if length is not None:
            length = -(-int(length) // self.strides[i])
        return (shape[0], length, self.filters[i])

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for i in range(len(self.conv_layers)):
            shape = self._layer_output_shape(i, shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_sizes": self.kernel_sizes,
                "strides": self.strides,
                "use_batch_norm": self.use_batch_norm,
                "batch_norm_momentum": self.batch_norm_momentum,
                "batch_norm_epsilon": self.batch_norm_epsilon,
                "synchronized_batch_norm": self.synchronized_batch_norm,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Saved before the BatchNorm settings were options: Keras' defaults.
        config.setdefault("batch_norm_momentum", _OLD_BATCH_NORM_MOMENTUM)
        config.setdefault("batch_norm_epsilon", _OLD_BATCH_NORM_EPSILON)
        return cls(**config)


def _same_padding(length, kernel_size, stride):
    """`(left, right)` zero padding of a "same" convolution, as TensorFlow pads.

    The output has `ceil(length / stride)` steps; the total padding
    `max(kernel_size - stride + (-length) % stride, 0)` is split with the
    extra zero, if any, on the right (as Keras pads "same" on every backend).

    Args:
        length: input steps, a Python int or a scalar integer tensor.
        kernel_size: convolution kernel size.
        stride: convolution stride.

    Returns:
        `(left, right)`: Python ints for an int `length`, else tensors.

    Example:

    >>> _same_padding(125, 4, 2)
    (1, 2)
    """
    total = kernel_size - stride + (-length) % stride
    total = max(total, 0) if isinstance(length, int) else keras.ops.maximum(total, 0)
    left = total // 2
    return left, total - left


def _per_layer(value, num_layers):
    if isinstance(value, int):
        return (value,) * num_layers
    return tuple(int(v) for v in value)


def cpc_fc_encoder(filters=(512, 512, 512, 512), use_batch_norm=True, **kwargs):
    """The paper's per-timestep MLP CPC encoder (kernels and strides of 1)."""
    return CPCEncoder(filters, 1, 1, use_batch_norm=use_batch_norm, **kwargs)


def cpc_strided_encoder(
    filters=(512, 512, 512, 512),
    kernel_sizes=(10, 4, 4, 4),
    strides=(2, 2, 2, 2),
    use_batch_norm=True,
    **kwargs,
):
    """The strided convolutional CPC encoder (`T' = ceil(T / 16)` by default)."""
    return CPCEncoder(
        filters, kernel_sizes, strides, use_batch_norm=use_batch_norm, **kwargs
    )


@keras.saving.register_keras_serializable(package="keras_ecg")
class CPCContext(keras.layers.Layer):
    """Unidirectional stacked LSTM returning the full context sequence.

    Causal by construction, so the context at step `t` only sees encodings up
    to `t`, as CPC's prediction task requires.

    Under the torch backend the whole stack runs as one call of PyTorch's
    fused LSTM (`torch._VF.lstm`, what `torch.nn.LSTM` calls) on the Keras
    layers' own weights: Keras' generic torch LSTM steps through time in a
    Python loop off CUDA (a paper-sized CPC training step on 1000 x 12 crops,
    batch 4, 2 CPU cores: 71 CPU-seconds with it, 3-7 fused). Both compute
    the same function (gate order i, f, c, o
    in both; the Keras kernel `(in, 4u)` is `weight_ih` transposed, its one
    bias `bias_ih`, with a zero `bias_hh`), so weights, `.keras` files and
    outputs are the same on every backend. Under JAX and TensorFlow the
    stack runs `_hoisted_lstm_stack`: the input projections as one matmul per
    layer and a hand-written backward scan (Keras' generic LSTM off GPU: a
    paper-sized CPC context forward and backward at batch 4, T = 1000, one
    CPU core, 2.0 (JAX) and 1.5 (TF) CPU-seconds with the input projection
    hoisted but automatic gradients, 3.5 and 2.4 with Keras' LSTM, 0.64-0.70
    with this; PyTorch's fused LSTM 0.62-0.65). Layers these paths cannot express
    (other activations, dropout in training, float16, masks, ...) take the
    Keras path.

    Args:
        units: LSTM units per layer (the context dimension).
        num_layers: number of stacked LSTM layers.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> context = CPCContext(units=8, num_layers=2)
    >>> tuple(context(np.zeros((2, 20, 16), "float32")).shape)
    (2, 20, 8)
    """

    def __init__(self, units=512, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_layers = int(num_layers)
        if self.units < 1 or self.num_layers < 1:
            raise ValueError(
                "CPCContext: units and num_layers must be positive, got "
                f"units={units}, num_layers={num_layers}."
            )
        self.lstm_layers = [
            keras.layers.LSTM(
                self.units,
                return_sequences=True,
                dtype=self.dtype_policy,
                name=f"lstm_{i}",
            )
            for i in range(self.num_layers)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for lstm in self.lstm_layers:
            lstm.build(shape)
            shape = shape[:-1] + (self.units,)
        self.built = True

    def call(self, inputs, training=None):
        if _is_plain_lstm_stack(self.lstm_layers, inputs, training):
            if keras.backend.backend() == "torch":
                return _fused_torch_lstm(self.lstm_layers, inputs)
            return _hoisted_lstm_stack(self.lstm_layers, inputs)
        x = inputs
        for lstm in self.lstm_layers:
            x = lstm(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "num_layers": self.num_layers})
        return config


def _is_plain_lstm_stack(lstm_layers, inputs, training):
    """Whether these Keras LSTMs compute the textbook float32 LSTM.

    That is what the fast paths (`_fused_torch_lstm`, `_hoisted_lstm_stack`)
    compute; anything else (masks, dropout, other activations, float16, ...)
    takes Keras' own path.
    """
    if keras.backend.standardize_dtype(inputs.dtype) != "float32":
        return False
    # Keras attaches masks to tensors as this attribute (not to JAX arrays).
    if getattr(inputs, "_keras_mask", None) is not None:
        return False
    if keras.backend.backend() == "torch":
        import torch

        if not isinstance(inputs, torch.Tensor):
            return False
    for lstm in lstm_layers:
        cell = lstm.cell
        if (
            cell.activation is not keras.activations.tanh
            or cell.recurrent_activation is not keras.activations.sigmoid
            or not cell.use_bias
            or lstm.go_backwards
            or lstm.stateful
            or lstm.unroll
            or not lstm.return_sequences
            or cell.kernel.dtype != "float32"
            or (training and (cell.dropout or cell.recurrent_dropout))
        ):
            return False
    return True


def _hoisted_lstm_stack(lstm_layers, inputs):
    """Runs stacked Keras LSTMs with the weight products out of the loop.

    Keras' generic LSTM (JAX and TensorFlow off GPU) multiplies each step's
    input by the kernel inside the scan over time, and its automatic
    gradient adds a full-size kernel and recurrent kernel gradient per
    step: tiny matmuls that each read or write a whole `(in, 4u)` matrix.
    Here `x @ kernel + bias` for the whole sequence is one large matmul, the
    scan carries only `h @ recurrent_kernel` and the gate math of
    `keras.layers.LSTMCell` (gate order i, f, c, o), and the backward scan
    (`_lstm_recurrence_backward`) only propagates the per-step gate
    gradients, from which the weight gradients are again one matmul each,
    as PyTorch's fused CPU LSTM (oneDNN) does. Same weights, same function
    and gradients up to the floating-point summation order.
    """
    # Time-major for the scans: (T, batch, features).
    x = keras.ops.transpose(inputs, (1, 0, 2))
    steps, batch = keras.ops.shape(x)[0], keras.ops.shape(x)[1]
    recurrence = _lstm_recurrence()
    for lstm in lstm_layers:
        cell = lstm.cell
        # The whole input projection (T, batch, 4u) as one 2-D matmul.
        projected = keras.ops.matmul(
            keras.ops.reshape(x, (-1, keras.ops.shape(x)[2])), cell.kernel
        )
        projected = keras.ops.reshape(projected + cell.bias, (steps, batch, -1))
        x = recurrence(projected, keras.ops.convert_to_tensor(cell.recurrent_kernel))
    return keras.ops.transpose(x, (1, 0, 2))


def _lstm_recurrence_forward(projected, recurrent_kernel):
    """`h` of every step, and what the backward pass needs.

    Args:
        projected: `(T, batch, 4u)`, `x_t @ kernel + bias` of every step.
        recurrent_kernel: `(u, 4u)`.

    Returns:
        `(h, (h, c, gates, recurrent_kernel))`: `h` and `c` `(T, batch, u)`,
        `gates` the activated gates `(T, batch, 4u)`.
    """
    units = recurrent_kernel.shape[0]
    batch = keras.ops.shape(projected)[1]

    def step(state, z_x):
        h, c, _ = state
        z = z_x + keras.ops.matmul(h, recurrent_kernel)
        z_i, z_f, z_c, z_o = keras.ops.split(z, 4, axis=-1)
        i = keras.ops.sigmoid(z_i)
        f = keras.ops.sigmoid(z_f)
        g = keras.ops.tanh(z_c)
        o = keras.ops.sigmoid(z_o)
        c = f * c + i * g
        h = o * keras.ops.tanh(c)
        return h, c, keras.ops.concatenate([i, f, g, o], axis=-1)

    zeros = keras.ops.zeros((batch, units), dtype=projected.dtype)
    gates = keras.ops.zeros((batch, 4 * units), dtype=projected.dtype)
    h, c, gates = _scan(step, (zeros, zeros, gates), projected)
    return h, (h, c, gates, recurrent_kernel)


def _lstm_recurrence_backward(residuals, grad_h):
    """Gradients of `_lstm_recurrence_forward` w.r.t. its two inputs."""
    h, c, gates, recurrent_kernel = residuals
    # Transposed once here, not in each step.
    recurrent_kernel_t = keras.ops.transpose(recurrent_kernel)
    zeros = keras.ops.zeros_like(h[:1])
    c_prev = keras.ops.concatenate([zeros, c[:-1]], axis=0)

    def step(state, step_inputs):
        grad_h_next, grad_c_next, _ = state
        grad_h_t, gates_t, c_t, c_prev_t = step_inputs
        i, f, g, o = keras.ops.split(gates_t, 4, axis=-1)
        grad_h_t = grad_h_t + grad_h_next
        tanh_c = keras.ops.tanh(c_t)
        grad_c = grad_c_next + grad_h_t * o * (1.0 - tanh_c * tanh_c)
        # Gradients w.r.t. the gates' pre-activations z.
        grad_z = keras.ops.concatenate(
            [
                grad_c * g * i * (1.0 - i),
                grad_c * c_prev_t * f * (1.0 - f),
                grad_c * i * (1.0 - g * g),
                grad_h_t * tanh_c * o * (1.0 - o),
            ],
            axis=-1,
        )
        return keras.ops.matmul(grad_z, recurrent_kernel_t), grad_c * f, grad_z

    grad_zero = keras.ops.zeros_like(h[0])
    _, _, grad_z = _scan(
        step,
        (grad_zero, grad_zero, keras.ops.zeros_like(gates[0])),
        (grad_h, gates, c, c_prev),
        reverse=True,
    )
    # dL/dU = sum_t h_{t-1}^T dz_t: one (u, T * batch) @ (T * batch, 4u).
    h_prev = keras.ops.concatenate([zeros, h[:-1]], axis=0)
    units = recurrent_kernel.shape[0]
    grad_recurrent_kernel = keras.ops.matmul(
        keras.ops.transpose(keras.ops.reshape(h_prev, (-1, units))),
        keras.ops.reshape(grad_z, (-1, 4 * units)),
    )
    return grad_z, grad_recurrent_kernel


@functools.cache
def _lstm_recurrence():
    """`(projected, recurrent_kernel) -> h` with the hand-written gradient.

    JAX and TensorFlow only (torch runs `_fused_torch_lstm`). Gradients of
    gradients are not supported.
    """
    if keras.backend.backend() == "jax":
        import jax

        @jax.custom_vjp
        def recurrence(projected, recurrent_kernel):
            return _lstm_recurrence_forward(projected, recurrent_kernel)[0]

        recurrence.defvjp(_lstm_recurrence_forward, _lstm_recurrence_backward)
        return recurrence
    import tensorflow as tf

    @tf.custom_gradient
    def recurrence(projected, recurrent_kernel):
        h, residuals = _lstm_recurrence_forward(projected, recurrent_kernel)
        return h, lambda grad_h: _lstm_recurrence_backward(residuals, grad_h)

    # Keras hands TensorFlow variables over as `tf.Variable`s, which
    # `tf.custom_gradient` would see read inside: read them outside.
    return lambda projected, recurrent_kernel: recurrence(
        projected, tf.convert_to_tensor(recurrent_kernel)
    )


def _scan(step, initial_state, sequences, reverse=False):
    """Every step's state of `state = step(state, sequences[t])`, stacked.

    `keras.ops.scan` under JAX; `tf.scan` under TensorFlow, as
    `keras.ops.scan` there keeps the carry in a TensorArray and requires
    per-step outputs shaped like the carry.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.scan(step, sequences, initializer=initial_state, reverse=reverse)
    _, states = keras.ops.scan(
        lambda state, x: (step(state, x),) * 2,
        initial_state,
        sequences,
        reverse=reverse,
    )
    return states


def _fused_torch_lstm(lstm_layers, inputs):
    """Runs stacked Keras LSTMs as one `torch._VF.lstm` call on their weights.

    Gradients flow to the Keras variables' tensors, as in Keras' own cuDNN
    path (`keras.src.backend.torch.rnn._cudnn_lstm`), here on any device.
    """
    import torch

    params = []
    for lstm in lstm_layers:
        cell = lstm.cell
        kernel = keras.ops.convert_to_tensor(cell.kernel)
        recurrent_kernel = keras.ops.convert_to_tensor(cell.recurrent_kernel)
        bias = keras.ops.convert_to_tensor(cell.bias)
        # Keras keeps one bias; torch adds two: all of it in b_ih, zero b_hh.
        params += [kernel.T, recurrent_kernel.T, bias, torch.zeros_like(bias)]
    num_layers = len(lstm_layers)
    units = lstm_layers[-1].cell.units
    state = inputs.new_zeros((num_layers, inputs.shape[0], units))
    outputs, _, _ = torch._VF.lstm(
        inputs,
        (state, state),
        params,
        True,  # has_biases
        num_layers,
        0.0,  # dropout
        torch.is_grad_enabled(),  # train
        False,  # bidirectional
        True,  # batch_first
    )
    return outputs
