"""NumPy (float64) reference of the ViT pieces of ECG-JEPA, for the tests.

Written from kweimann/ECG-JEPA's description (`models/modules.py`,
`vision_transformer.py`, `predictor.py`, `utils.py`) with plain loops and
matrix products, independently of keras_ecg's implementation; the weights
are read from the Keras layers by name.
"""

import math

import keras
import numpy as np
from scipy.special import erf


def weights(layer):
    """`{variable path below the layer: float64 array}` (e.g. `"block_0/..."`)."""
    out = {}
    for w in layer.weights:
        path = "/" + w.path
        key = path.split("/" + layer.name + "/", 1)[1]
        out[key] = np.asarray(keras.ops.convert_to_numpy(w), "float64")
    return out


def sincos(positions, dim):
    """`get_1d_pos_embed` evaluated position by position."""
    positions = np.asarray(positions)
    out = np.zeros(positions.shape + (dim,))
    for index in np.ndindex(positions.shape):
        p = float(positions[index])
        for i in range(dim // 2):
            w = math.exp(2 * i * (-math.log(10000.0) / dim))
            out[index + (2 * i,)] = math.sin(p * w)
            out[index + (2 * i + 1,)] = math.cos(p * w)
    return out


def layer_norm(x, gamma, beta=None, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * gamma
    return y if beta is None else y + beta


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def attention(x, w, heads, key_mask=None, prefix="attention/"):
    """Multi-head self-attention; `w` from `weights(...)` of the enclosing layer."""
    batch, tokens, dim = x.shape
    head_dim = dim // heads
    qkv = x @ w[prefix + "qkv/kernel"]
    if prefix + "qkv/bias" in w:
        qkv = qkv + w[prefix + "qkv/bias"]
    out = np.zeros_like(x)
    for b in range(batch):
        for h in range(heads):
            cols = slice(h * head_dim, (h + 1) * head_dim)
            q = qkv[b, :, :dim][:, cols]
            k = qkv[b, :, dim : 2 * dim][:, cols]
            v = qkv[b, :, 2 * dim :][:, cols]
            scores = q @ k.T / math.sqrt(head_dim)
            if key_mask is not None:
                scores = np.where(key_mask[b][None, :], scores, -np.inf)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            out[b, :, cols] = probs @ v
    out = out @ w[prefix + "output/kernel"]
    if prefix + "output/bias" in w:
        out = out + w[prefix + "output/bias"]
    return out


def block(x, w, heads, key_mask=None, eps=1e-6, prefix=""):
    """Pre-norm block: attention then GELU MLP, both residual."""

    def norm(y, name):
        return layer_norm(
            y, w[f"{prefix}{name}/gamma"], w.get(f"{prefix}{name}/beta"), eps
        )

    x = x + attention(
        norm(x, "attention_norm"), w, heads, key_mask, prefix=prefix + "attention/"
    )
    h = norm(x, "mlp_norm") @ w[prefix + "mlp_hidden/kernel"]
    if prefix + "mlp_hidden/bias" in w:
        h = h + w[prefix + "mlp_hidden/bias"]
    h = gelu(h) @ w[prefix + "mlp_output/kernel"]
    if prefix + "mlp_output/bias" in w:
        h = h + w[prefix + "mlp_output/bias"]
    return x + h


def patch_embed(x, kernel, bias=None):
    """Conv1d with kernel = stride = patch: `(B, T, C)`, kernel `(p, C, D)`."""
    patch = kernel.shape[0]
    batch, length, channels = x.shape
    patches = x.reshape(batch, length // patch, patch * channels)
    out = patches @ kernel.reshape(patch * channels, -1)
    return out if bias is None else out + bias


def encoder(x, w, config, indices=None):
    """ECGTransformer tokens `(B, N or K, D)` and register outputs `(B, R, D)`."""
    tokens = patch_embed(
        np.asarray(x, "float64"),
        w["patch_embedding/projection/kernel"],
        w.get("patch_embedding/projection/bias"),
    )
    tokens = tokens + sincos(np.arange(tokens.shape[1]), tokens.shape[2])[None]
    if indices is not None:
        tokens = np.stack([tokens[b, indices[b]] for b in range(len(tokens))])
    registers = config["num_registers"]
    if registers:
        reg = np.broadcast_to(w["registers"], (len(tokens),) + w["registers"].shape[1:])
        tokens = np.concatenate([reg, tokens], axis=1)
    for i in range(config["num_layers"]):
        tokens = block(
            tokens,
            w,
            config["num_heads"],
            eps=config["layer_norm_epsilon"],
            prefix=f"block_{i}/",
        )
    tokens = layer_norm(
        tokens,
        w["output_norm/gamma"],
        w.get("output_norm/beta"),
        config["layer_norm_epsilon"],
    )
    return tokens[:, registers:], tokens[:, :registers]


def predictor(context, context_indices, target_indices, w, config):
    """JEPAPredictor outputs for unpadded index lists (one sample at a time)."""
    dim = config["hidden_dim"]
    x = context @ w["input_projection/kernel"]
    if "input_projection/bias" in w:
        x = x + w["input_projection/bias"]
    x = x + sincos(context_indices, dim)
    queries = w["mask_token"][0] + sincos(target_indices, dim)
    x = np.concatenate([x, queries], axis=1)
    for i in range(config["num_layers"]):
        x = block(
            x,
            w,
            config["num_heads"],
            eps=config["layer_norm_epsilon"],
            prefix=f"block_{i}/",
        )
    x = layer_norm(
        x,
        w["output_norm/gamma"],
        w.get("output_norm/beta"),
        config["layer_norm_epsilon"],
    )
    out = x[:, -target_indices.shape[1] :] @ w["output_projection/kernel"]
    if "output_projection/bias" in w:
        out = out + w["output_projection/bias"]
    return out


def randomize(layer, rng, scale=0.3):
    """Random weights (LayerNorm scales around 1), so every term shows."""
    for w in layer.weights:
        value = rng.normal(scale=scale, size=tuple(w.shape))
        if w.path.endswith("gamma"):
            value = 1.0 + value
        w.assign(value.astype("float32"))
