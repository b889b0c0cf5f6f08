"""Training throughput (steps/s, samples/s) of each self-supervised method.

Runs plain `model.fit` on synthetic inputs of the paper's shapes (SimCLR/BYOL/
SwAV: two views of 250 x 12; CPC and JEPA: 1000 x 12), so the number is the model's
training step alone, not the input pipeline (see `input_pipeline.py`). The first
epoch (tracing/compilation) is timed separately from the steady state.

Usage:
    KERAS_BACKEND=jax python benchmarks/train_throughput.py --methods simclr cpc \
        --size paper --batch-size 32 --steps 20
    KERAS_BACKEND=jax python benchmarks/train_throughput.py --methods simclr cpc \
        --encoder s4 --size small    # S4 encoders (CPC: the S4 context)
"""

import argparse
import json
import os
import platform
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


def benchmark(method, size, batch_size, steps, warmup_steps, encoder=None):
    import keras

    from keras_ecg.models.method_factory import build_method
    from keras_ecg.models.method_factory import resolve_encoder

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
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", nargs="+", default=["simclr", "byol", "swav", "cpc", "jepa"]
    )
    parser.add_argument("--size", default="paper", choices=("paper", "small", "tiny"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--cpc-batch-size",
        type=int,
        default=None,
        help="batch for CPC (1000-sample inputs); default --batch-size",
    )
    parser.add_argument(
        "--encoder",
        default=None,
        help="encoder of every method (e.g. s4); default: each method's",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write results here")
    args = parser.parse_args(argv)

    import keras

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} {platform.machine()}; device: {device_name(keras)}"
    )
    print(
        f"backend: {keras.backend.backend()} (keras {keras.__version__}); "
        f"encoder size: {args.size}; inputs: random float32 of the paper's shapes; "
        f"{args.warmup_steps} warm-up steps then {args.steps} timed steps"
    )
    rows = []
    for method in args.methods:
        batch = (
            (args.cpc_batch_size or args.batch_size)
            if method == "cpc"
            else (args.batch_size)
        )
        row = benchmark(
            method, args.size, batch, args.steps, args.warmup_steps, args.encoder
        )
        row["backend"] = keras.backend.backend()
        rows.append(row)
        print(
            f"{method:>6} ({row['encoder']}): batch {batch:4d}, "
            f"{row['params']:>10,d} params, "
            f"{row['steps_per_s']:7.2f} steps/s, {row['samples_per_s']:8.1f} samples/s",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
