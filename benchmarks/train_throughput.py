"""Training throughput (steps/s, samples/s) and peak memory of each method.

Runs plain `model.fit` on synthetic inputs of the paper's shapes (SimCLR/BYOL/
SwAV: two views of 250 x 12; CPC and JEPA: 1000 x 12), so the number is the
model's training step alone, not the input pipeline (see `input_pipeline.py`).
The warm-up steps (tracing/compilation) are not timed.

Each method runs in its own process (`--in-process` runs them all in this
one), so its peak resident memory is its own: the process's peak RSS after the
timed steps, beside the RSS after importing Keras and the backend (the
baseline every method pays). On a GPU the device's own peak memory is in
`gpu_readiness.py`.

Methods are specs: a method, or `method:encoder` for another encoder
(`cpc:s4` is the ECG-CPC architecture, `simclr:s4` SimCLR on the S4 encoder).

Usage:
    KERAS_BACKEND=jax python benchmarks/train_throughput.py --methods simclr cpc \
        --size paper --batch-size 32 --steps 20
    KERAS_BACKEND=jax python benchmarks/train_throughput.py \
        --methods simclr:s4 cpc:s4 jepa --size small
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
from machine import cpu_name
from machine import device_name


def make_inputs(method, batch_size, steps, leads=12, seed=0):
    import tensorflow as tf

    from keras_ecg.models.method_factory import CROP_SECONDS
    from keras_ecg.models.method_factory import SINGLE_CROP_METHODS

    rng = np.random.default_rng(seed)
    length = int(CROP_SECONDS[method] * 100)  # the paper rate, 100 Hz
    x = rng.standard_normal((batch_size, length, leads)).astype("float32")
    if method in SINGLE_CROP_METHODS:
        dataset = tf.data.Dataset.from_tensors(x)
    else:
        y = rng.standard_normal((batch_size, length, leads)).astype("float32")
        dataset = tf.data.Dataset.from_tensors(((x, y),))
    return dataset.repeat(steps)


def parse_spec(spec):
    """`"cpc:s4"` -> `("cpc", "s4")`; `"simclr"` -> `("simclr", None)`."""
    method, _, encoder = str(spec).partition(":")
    return method, encoder or None


def _rss_mb():
    """This process's current resident memory (Linux), in MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def benchmark(spec, size, batch_size, steps, warmup_steps):
    import keras

    from keras_ecg.models.method_factory import build_method
    from keras_ecg.models.method_factory import resolve_encoder

    method, encoder = parse_spec(spec)
    baseline_mb = _rss_mb()
    keras.utils.set_random_seed(0)
    model = build_method(method, size=size, encoder=encoder)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    model.fit(
        make_inputs(method, batch_size, warmup_steps),
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    start = time.perf_counter()
    model.fit(
        make_inputs(method, batch_size, steps), epochs=1, verbose=0, shuffle=False
    )
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "encoder": resolve_encoder(method, encoder),
        "size": size,
        "batch_size": batch_size,
        "steps": steps,
        "params": int(model.count_params()),
        "steps_per_s": steps / seconds,
        "samples_per_s": steps * batch_size / seconds,
        "baseline_rss_mb": baseline_mb,
        # ru_maxrss is in kB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
    }


def _run_isolated(spec, args, batch):
    """One method in a fresh process; returns its result row."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", spec]
    command += ["--size", args.size, "--batch-size", str(batch)]
    command += ["--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps)]
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        raise SystemExit(f"{spec} failed:\n{process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["simclr", "byol", "swav", "cpc", "jepa"],
        help="method specs: a method or method:encoder (cpc:s4, simclr:s4)",
    )
    parser.add_argument("--size", default="paper", choices=("paper", "small", "tiny"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--cpc-batch-size",
        type=int,
        default=None,
        help="batch for CPC (1000-sample inputs); default --batch-size",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every method in this process (peak RSS is then cumulative)",
    )
    parser.add_argument("--json", default=None, help="also write results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        row = benchmark(
            args.worker, args.size, args.batch_size, args.steps, args.warmup_steps
        )
        print(json.dumps(row))
        return 0

    import keras

    from keras_ecg.models.method_factory import resolve_encoder

    for spec in args.methods:
        try:
            resolve_encoder(*parse_spec(spec))
        except ValueError as error:
            parser.error(f"--methods {spec}: {error}")
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.machine()}; device: {device_name(keras)}; "
        f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    print(
        f"backend: {keras.backend.backend()} (keras {keras.__version__}); "
        f"encoder size: {args.size}; inputs: random float32 of the paper's shapes; "
        f"{args.warmup_steps} warm-up steps then {args.steps} timed steps; "
        + ("all methods in one process" if args.in_process else "one process each")
    )
    rows = []
    for spec in args.methods:
        method, _ = parse_spec(spec)
        batch = (
            (args.cpc_batch_size or args.batch_size)
            if method == "cpc"
            else (args.batch_size)
        )
        if args.in_process:
            row = benchmark(spec, args.size, batch, args.steps, args.warmup_steps)
        else:
            row = _run_isolated(spec, args, batch)
        row["backend"] = keras.backend.backend()
        rows.append(row)
        print(
            f"{method:>6} ({row['encoder']:>11}): batch {batch:4d}, "
            f"{row['params']:>10,d} params, "
            f"{row['steps_per_s']:7.2f} steps/s, {row['samples_per_s']:8.1f} "
            f"samples/s, peak RSS {row['peak_rss_mb'] / 1e3:5.2f} GB "
            f"(after imports {row['baseline_rss_mb'] / 1e3:4.2f} GB)",
            flush=True,
        )
    print(f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
