"""GPU readiness: every method under every backend, float32 and mixed bfloat16.

For each Keras backend (one subprocess each, or one per run with `--isolate`),
each method (SimCLR, BYOL, SwAV, CPC, JEPA) and each precision policy
(`float32`, `mixed_bfloat16` via `keras.mixed_precision.set_global_policy`),
builds the method with `build_method`, runs `--warmup-steps` then `--steps`
timed steps of plain `model.fit` on random inputs of the paper's shapes (two
2.5 s views, CPC and JEPA 10 s, at 100 Hz), and prints steps/s, samples/s,
peak device memory and an estimate of the achieved FLOP/s against the
device's peak.

Peak memory: `torch.cuda.max_memory_allocated` (reset per run), TensorFlow's
`get_memory_info(...)["peak"]` (reset per run), JAX's `peak_bytes_in_use`
(cannot be reset: the process's peak so far unless `--isolate`); on a CPU, the
process's peak RSS (likewise cumulative unless `--isolate`).

FLOPs are counted analytically from the built model's configuration: the
multiply-adds of every convolution, dense layer, LSTM, CPC score and
attention product, times 2; a training step counts 3x the forward pass of
what gets gradients (backward ~2x forward) plus 1x for BYOL's and JEPA's
target networks (JEPA: over the padded context / target slots it computes).
BatchNorm, activations, pooling and the optimizer are left out, so the
estimate is a lower bound of what the device did. Peak FLOP/s come from
NVIDIA's datasheets (dense, no sparsity) for the GPUs in `PEAK_TFLOPS`; other
devices print "unknown".

Multi-GPU mode (`--processes N`, N > 1): for each backend, method and
precision, runs the same step as a job of 1 process and of N processes, one
per GPU, joined through keras-ecg's multi-process support (the
`KERAS_ECG_*` job settings that `keras_ecg.distribute.initialize_multi_process`
reads; torch: process i takes GPU `LOCAL_RANK` = i and NCCL; JAX and
TensorFlow: `CUDA_VISIBLE_DEVICES` = i, one GPU per process, `jax.distributed`
/ `MultiWorkerMirroredStrategy`), training inside
`keras_ecg.distribute.data_parallel()` with `--batch-size` per GPU (weak
scaling), and prints samples/s of each and the scaling efficiency
samples/s(N) / (N x samples/s(1)). The worker is scaling_localhost.py's (it
needs no TensorFlow: without it the inputs are NumPy arrays). On a CPU
machine the processes share the CPU (a smoke test only).

Usage:
    python benchmarks/gpu_readiness.py --backends jax torch --output gpu.json
    KERAS_BACKEND=jax python benchmarks/gpu_readiness.py --tiny --backends jax
    python benchmarks/gpu_readiness.py --backends torch jax --processes 8 \
        --precisions mixed_bfloat16 --output gpu8.json
See gpu_readiness.sh for a fresh GPU machine (venv, installs, run).
"""

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import cpu_name  # noqa: E402

METHODS = ("simclr", "byol", "swav", "cpc", "jepa")
PRECISIONS = ("float32", "mixed_bfloat16")
SAMPLING_RATE = 100  # Hz, the paper's
_MARK = "@@gpu_readiness "

# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets: BF16 tensor core,
# TF32 tensor core, plain FP32. Matched against the device name, in order.
PEAK_TFLOPS = (
    ("H200", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}),
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("H100", {"bf16": 989.0, "tf32": 494.0, "fp32": 67.0}),  # SXM
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    ("A10", {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2}),
)


def peak_tflops(device_name):
    """The datasheet peaks of a known GPU, or None."""
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in (device_name or "").lower():
            return peaks
    return None


# --------------------------------------------------------------------------
# Analytic FLOP counts (forward pass, per batch).
# --------------------------------------------------------------------------


def _conv_out(length, kernel, stride, pad):
    return (length + 2 * pad - kernel) // stride + 1


def xresnet_forward_flops(encoder, length, batch=1):
    """FLOPs (2 x multiply-adds) of an `XResNet1D` forward pass: convolutions only.

    Lengths follow the encoder's torch-style padding: `(k - 1) // 2` per conv,
    max pool 3/2 padded by 1, shortcut average pool 2/2 rounded up.
    """
    total = 0
    cin = encoder.input_leads
    for i, filters in enumerate(encoder.stem_filters):
        k, s = encoder.stem_kernel_size, 2 if i == 0 else 1
        length = _conv_out(length, k, s, (k - 1) // 2)
        total += 2 * length * k * cin * filters
        cin = filters
    length = _conv_out(length, 3, 2, 1)
    k = encoder.kernel_size
    for stage, (depth, width) in enumerate(zip(encoder.block_depths, encoder.widths)):
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            cout = width * encoder.expansion
            out = _conv_out(length, k, stride, (k - 1) // 2)
            if encoder.expansion == 1:
                total += 2 * out * k * cin * width + 2 * out * k * width * cout
            else:
                total += 2 * length * cin * width  # 1x1
                total += 2 * out * k * width * width
                total += 2 * out * width * cout  # 1x1
            if cin != cout:
                total += 2 * -(-length // stride) * cin * cout  # shortcut 1x1
            length, cin = out, cout
    return total * batch


def dense_stack_flops(input_dim, dims):
    total, d = 0, input_dim
    for out in dims:
        total += 2 * d * out
        d = out
    return total, d


def head_flops(head, input_dim):
    """FLOPs per sample of a `ProjectionHead`; returns (flops, output_dim)."""
    return dense_stack_flops(input_dim, list(head.hidden_dims) + [head.output_dim])


def cpc_forward_flops(model, length, batch, input_leads=12):
    """FLOPs of a CPC forward pass incl. its InfoNCE scores, per batch."""
    encoder, context = model.encoder, model.context
    total, cin = 0, input_leads
    for filters, k, s in zip(encoder.filters, encoder.kernel_sizes, encoder.strides):
        length = -(-length // s)
        total += 2 * length * k * cin * filters
        cin = filters
    d = encoder.filters[-1]
    inputs = d
    for _ in range(context.num_layers):
        # Four gates: input and recurrent matmuls per step.
        total += 2 * length * 4 * context.units * (inputs + context.units)
        inputs = context.units
    steps = model.steps
    total += 2 * length * context.units * d * len(steps)  # predictors
    method = model._scoring_method(batch, length)
    for k in steps:
        positions = length - k
        if method == "sequence_matrix":
            total += 2 * positions * length * d
        elif method == "batch_matrix":
            total += 2 * positions * batch * length * d
        else:
            total += 2 * positions * (model.num_negatives + 1) * d
    return total * batch


def transformer_blocks_flops(tokens, dim, num_layers, mlp_ratio):
    """FLOPs of `num_layers` ViT blocks over `tokens` tokens of width `dim`.

    Per token and block: queries/keys/values `3 d^2`, output projection
    `d^2`, MLP `2 r d^2` multiply-adds, plus `2 n d` for the attention
    scores and their weighted sum over `n` tokens; times 2.
    """
    per_token = (4 + 2 * mlp_ratio) * dim * dim + 2 * tokens * dim
    return 2 * num_layers * tokens * per_token


def jepa_training_flops(model, batch, length, input_leads=12):
    """Estimated FLOPs of one JEPA training step.

    3x (context encoder over the context slots + predictor over context and
    target slots) + 1x the target encoder over all tokens; patch embedding
    and projections included, LayerNorms and the mask sampling left out.
    """
    encoder, predictor = model.encoder, model.predictor
    tokens = encoder.num_tokens(length)
    context, targets = model.slot_counts(tokens)
    d, p = encoder.hidden_dim, predictor.hidden_dim
    registers = encoder.num_registers

    def encode(n):
        embed = 2 * tokens * encoder.patch_size * input_leads * d
        return embed + transformer_blocks_flops(
            n + registers, d, encoder.num_layers, encoder.mlp_ratio
        )

    predict = (
        2 * context * d * p
        + transformer_blocks_flops(
            context + targets, p, predictor.num_layers, predictor.mlp_ratio
        )
        + 2 * targets * p * d
    )
    return batch * (3 * (encode(context) + predict) + encode(tokens))


def training_flops(method, model, batch, length):
    """Estimated FLOPs of one training step (3x forward; targets 1x)."""
    if method == "cpc":
        return 3 * cpc_forward_flops(model, length, batch)
    if method == "jepa":
        return jepa_training_flops(model, batch, length)
    encoder = model.encoder
    enc = xresnet_forward_flops(encoder, length, batch)
    proj, z = head_flops(model.projection_head, encoder.output_dim)
    views = 2
    if method == "simclr":
        per_view = enc + proj * batch
        loss = 2 * (views * batch) ** 2 * z
        return 3 * (views * per_view + loss)
    if method == "byol":
        pred, _ = head_flops(model.prediction_head, z)
        online = enc + (proj + pred) * batch
        target = enc + proj * batch
        return views * (3 * online + target)
    # SwAV: scores against the prototypes; Sinkhorn is elementwise.
    scores = 2 * z * model.num_prototypes * batch
    return 3 * views * (enc + proj * batch + scores)


# --------------------------------------------------------------------------
# Worker: one backend (and with --isolate one method and precision).
# --------------------------------------------------------------------------


def _device(keras):
    """(name, kind) of the device the backend computes on."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        if d.platform == "cpu":
            return cpu_name(), "cpu"
        return d.device_kind, d.platform
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), "gpu"
        return cpu_name(), "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return details.get("device_name", gpus[0].name), "gpu"
    return cpu_name(), "cpu"


def _reset_peak(keras, kind):
    if kind == "cpu":
        return
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("GPU:0")


def _peak_memory(keras, kind):
    """(bytes, how it was measured)."""
    backend = keras.backend.backend()
    if kind != "cpu":
        if backend == "torch":
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
        if backend == "tensorflow":
            import tensorflow as tf

            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
            return peak, "tf get_memory_info peak"
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"], "jax peak_bytes_in_use (process)"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return rss, "peak RSS (process)"


def _inputs(method, batch, steps, length):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps, length, 12)).astype("float32")
    if method in ("cpc", "jepa"):
        return x
    y = rng.standard_normal((batch * steps, length, 12)).astype("float32")
    return (x, y)


def run_one(keras, method, precision, settings, kind):
    from keras_ecg.models.method_factory import build_method

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    batch = settings["cpc_batch_size"] if method == "cpc" else settings["batch_size"]
    seconds = {"cpc": settings["cpc_seconds"], "jepa": settings["jepa_seconds"]}.get(
        method, settings["view_seconds"]
    )
    length = int(round(seconds * SAMPLING_RATE))
    model = build_method(method, size=settings["size"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    warmup = max(settings["warmup_steps"], 1)  # builds and compiles the step
    start = time.perf_counter()
    model.fit(
        _inputs(method, batch, warmup, length),
        batch_size=batch,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    first_s = time.perf_counter() - start
    data = _inputs(method, batch, settings["steps"], length)
    _reset_peak(keras, kind)
    start = time.perf_counter()
    history = model.fit(data, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    seconds_run = time.perf_counter() - start
    loss = float(history.history["loss"][-1])
    memory, memory_how = _peak_memory(keras, kind)
    flops = training_flops(method, model, batch, length)
    steps_per_s = settings["steps"] / seconds_run
    return {
        "method": method,
        "precision": precision,
        "batch_size": batch,
        "input_shape": [length, 12],
        "params": int(model.count_params()),
        "warmup_s": first_s,
        "steps": settings["steps"],
        "steps_per_s": steps_per_s,
        "samples_per_s": steps_per_s * batch,
        "peak_memory_bytes": int(memory),
        "peak_memory_how": memory_how,
        "train_flops_per_step": int(flops),
        "achieved_tflops": flops * steps_per_s / 1e12,
        "final_loss": loss,
        "loss_is_finite": math.isfinite(loss),
    }


def worker_main(settings):
    import keras

    backend = keras.backend.backend()
    name, kind = _device(keras)
    peaks = peak_tflops(name) if kind != "cpu" else None
    _send({"device": name, "device_kind": kind, "backend": backend, "peaks": peaks})
    for method in settings["methods"]:
        for precision in settings["precisions"]:
            try:
                row = run_one(keras, method, precision, settings, kind)
                row["status"] = "ok"
            except Exception as error:  # reported, the other runs go on
                row = {
                    "method": method,
                    "precision": precision,
                    "status": f"failed: {type(error).__name__}: {error}"[:500],
                }
            row["backend"] = backend
            _send({"row": row})
    return 0


def _send(message):
    sys.stdout.write(_MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------


def _format_row(row, peaks):
    head = f"{row['backend']:<10} {row['method']:<6} {row['precision']:<14}"
    if row["status"] != "ok":
        return f"{head} {row['status']}"
    tflops = row["achieved_tflops"]
    if peaks is None:
        of_peak = "peak FLOP/s unknown"
    elif row["precision"] == "mixed_bfloat16":
        of_peak = f"{100 * tflops / peaks['bf16']:.2f}% of {peaks['bf16']:g} bf16"
    else:
        of_peak = (
            f"{100 * tflops / peaks['fp32']:.2f}% of {peaks['fp32']:g} fp32, "
            f"{100 * tflops / peaks['tf32']:.2f}% of {peaks['tf32']:g} tf32"
        )
    return (
        f"{head} batch {row['batch_size']:4d}: {row['steps_per_s']:8.2f} steps/s "
        f"{row['samples_per_s']:9.1f} samples/s  peak mem "
        f"{row['peak_memory_bytes'] / 2**30:6.2f} GiB  "
        f"{row['train_flops_per_step'] / 1e9:9.4g} GFLOP/step  "
        f"{tflops:9.4g} TFLOP/s ({of_peak})"
    )


def run_worker(backend, settings, timeout):
    """Runs one worker subprocess; returns (device info, rows)."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (HERE, os.path.dirname(HERE), env.get("PYTHONPATH", "")) if p
    )
    if backend == "jax":
        # Let JAX allocate on demand, so its peak is what the step needs.
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if backend == "tensorflow":
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    try:
        process = subprocess.run(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                json.dumps(settings),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        stdout, stderr, code = process.stdout, process.stderr, process.returncode
    except subprocess.TimeoutExpired as error:
        stdout = error.stdout or ""
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        stderr, code = f"timed out after {timeout} s", "timeout"
    info, rows = None, []
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            message = json.loads(line[len(_MARK) :])
            if "row" in message:
                rows.append(message["row"])
            else:
                info = message
    done = {(r["method"], r["precision"]) for r in rows}
    for method in settings["methods"]:
        for precision in settings["precisions"]:
            if (method, precision) not in done:
                tail = stderr.strip().splitlines()[-1:] or [""]
                rows.append(
                    {
                        "backend": backend,
                        "method": method,
                        "precision": precision,
                        "status": f"failed: worker exit {code}: {tail[0]}"[:500],
                    }
                )
    return info, rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=("tensorflow", "jax", "torch"),
        default=["tensorflow", "jax", "torch"],
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS)
    )
    parser.add_argument("--size", choices=("paper", "small", "tiny"), default="paper")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpc-batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument(
        "--view-seconds", type=float, default=2.5, help="SimCLR/BYOL/SwAV crop"
    )
    parser.add_argument("--cpc-seconds", type=float, default=10.0, help="CPC crop")
    parser.add_argument(
        "--jepa-seconds", type=float, default=10.0, help="JEPA crop (whole patches)"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="CI settings: tiny models, batch 4 (CPC 2), 2 steps after 1 warm-up, "
        "1.28 s crops (CPC 2.56 s, JEPA 2.5 s)",
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="one process per backend, method and precision (clean JAX/CPU peaks)",
    )
    parser.add_argument(
        "--timeout", type=int, default=3600, help="seconds per worker process"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="N > 1: multi-GPU mode, 1 and N processes (one per GPU) per run",
    )
    parser.add_argument("--output", default=None, help="also write JSON here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.size, args.batch_size, args.cpc_batch_size = "tiny", 4, 2
        args.steps, args.warmup_steps = 2, 1
        args.view_seconds, args.cpc_seconds, args.jepa_seconds = 1.28, 2.56, 2.5
    if min(args.batch_size, args.cpc_batch_size, args.steps, args.processes) < 1:
        parser.error(
            "--batch-size, --cpc-batch-size, --steps and --processes must be >= 1"
        )
    return args


def main(argv=None):
    args = parse_args(argv)
    settings = {
        k: getattr(args, k)
        for k in (
            "methods",
            "precisions",
            "size",
            "batch_size",
            "cpc_batch_size",
            "steps",
            "warmup_steps",
            "view_seconds",
            "cpc_seconds",
            "jepa_seconds",
        )
    }
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.machine()}, python {platform.python_version()}"
    )
    print(
        f"settings: size {args.size}; batch {args.batch_size} (CPC "
        f"{args.cpc_batch_size}); views {args.view_seconds:g} s, CPC "
        f"{args.cpc_seconds:g} s, JEPA {args.jepa_seconds:g} s at {SAMPLING_RATE} "
        f"Hz; {args.warmup_steps} warm-up "
        f"then {args.steps} timed steps of model.fit; random float32 inputs; "
        f"{'one process per run' if args.isolate else 'one process per backend'}"
    )
    print(
        "FLOPs: analytic (convs, dense, LSTM, CPC scores, attention; training = 3x "
        "forward), "
        "a lower bound; peaks: NVIDIA datasheet dense TFLOP/s"
    )
    if args.processes > 1:
        return multi_process_main(args, settings)
    result = {"settings": settings, "devices": {}, "rows": []}
    for backend in args.backends:
        jobs = (
            [
                dict(settings, methods=[m], precisions=[p])
                for m in args.methods
                for p in args.precisions
            ]
            if args.isolate
            else [settings]
        )
        for job in jobs:
            info, rows = run_worker(backend, job, args.timeout)
            if info is not None and backend not in result["devices"]:
                result["devices"][backend] = info
                peaks = info["peaks"]
                print(
                    f"backend {backend}: device {info['device']} "
                    f"({info['device_kind']}); peak TFLOP/s "
                    f"{peaks if peaks else 'unknown'}",
                    flush=True,
                )
            peaks = (result["devices"].get(backend) or {}).get("peaks")
            for row in rows:
                print(_format_row(row, peaks), flush=True)
            result["rows"].extend(rows)
    failed = [r for r in result["rows"] if r["status"] != "ok"]
    print(f"{len(result['rows']) - len(failed)} runs ok, {len(failed)} failed")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if failed else 0


# --------------------------------------------------------------------------
# Multi-GPU mode.
# --------------------------------------------------------------------------


def multi_process_run(backend, method, precision, settings, processes, timeout):
    """One run as a job of `processes` processes (one GPU each): a row."""
    import scaling_localhost

    batch = settings["cpc_batch_size"] if method == "cpc" else settings["batch_size"]
    single = settings["cpc_seconds"] if method == "cpc" else settings["jepa_seconds"]
    job = {
        "mode": "train",
        "method": method,
        "size": settings["size"],
        "batch_size": batch,
        "steps": settings["steps"],
        "warmup_steps": max(settings["warmup_steps"], 1),
        "threads": None,
        "view_seconds": settings["view_seconds"],
        "single_seconds": single,
        "precision": precision,
        "numpy_inputs": True,
    }
    messages, codes, tails = scaling_localhost.run_job(
        backend, job, processes, timeout, gpus=True
    )
    rows = [m["row"] for m in messages if "row" in m]
    if rows:
        row = dict(rows[0], status="ok", precision=precision)
        return row
    return {
        "backend": backend,
        "method": method,
        "precision": precision,
        "processes": processes,
        "status": f"failed: exit {codes}: {' | '.join(tails)}"[-500:],
    }


def multi_process_main(args, settings):
    """`--processes N`: 1 and N processes per run, scaling efficiency."""
    n = args.processes
    print(
        f"multi-GPU mode: {n} processes, one per GPU, batch {args.batch_size} (CPC "
        f"{args.cpc_batch_size}) per process (weak scaling), against 1 process; "
        "joined through keras-ecg's job settings, data_parallel()"
    )
    result = {"settings": dict(settings, processes=n), "rows": []}
    for backend in args.backends:
        for method in args.methods:
            for precision in args.precisions:
                one, many = (
                    multi_process_run(
                        backend, method, precision, settings, p, args.timeout
                    )
                    for p in (1, n)
                )
                head = f"{backend:<10} {method:<6} {precision:<14}"
                if one["status"] != "ok" or many["status"] != "ok":
                    failed = one if one["status"] != "ok" else many
                    print(
                        f"{head} {failed['processes']} process(es) {failed['status']}"
                    )
                else:
                    many["efficiency"] = many["samples_per_s"] / (
                        n * one["samples_per_s"]
                    )
                    print(
                        f"{head} batch {one['batch_per_process']}/GPU: 1 GPU "
                        f"{one['samples_per_s']:9.1f} samples/s, {n} GPUs "
                        f"{many['samples_per_s']:9.1f} samples/s "
                        f"({many['step_s'] * 1e3:.1f} ms/step), scaling "
                        f"efficiency {many['efficiency']:.0%}",
                        flush=True,
                    )
                result["rows"] += [one, many]
    failed = [r for r in result["rows"] if r["status"] != "ok"]
    print(f"{len(result['rows']) - len(failed)} runs ok, {len(failed)} failed")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        sys.exit(worker_main(json.loads(sys.argv[2])))
    sys.exit(main())
