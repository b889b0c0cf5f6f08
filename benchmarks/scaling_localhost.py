"""Data-parallel scaling on localhost: samples/s and bytes per step, 1-4 processes.

For each backend, method and process count N, starts N local processes that
join one job through keras-ecg's own multi-process support (the
`KERAS_ECG_JOB_ADDRESSES` / `KERAS_ECG_NUM_PROCESSES` / `KERAS_ECG_PROCESS_ID`
settings read by `keras_ecg.distribute.initialize_multi_process`, as
tests/distribute_multiprocess_test.py does; N = 1 is a plain single process),
each with ONE intra-op thread and a fixed per-process batch (weak scaling).
Each process builds the method with `build_method`, compiles it and runs
`fit` inside `keras_ecg.distribute.data_parallel()` on random inputs of the
paper's shapes (two 2.5 s views; CPC and JEPA 10 s; 100 Hz): warm-up steps
(compilation, the first step's broadcast), then timed steps. Reported:
per-step time and global samples/s (N x batch / step time).

Bytes communicated per step:

- torch: measured. During the timed steps process 0 wraps the
  `torch.distributed` collectives (`all_reduce`, `all_gather_into_tensor` /
  `all_gather_single`, `all_gather`, `broadcast`, `reduce_scatter_tensor`,
  `barrier`) and logs (op, buffer bytes, count) per step. The buffer bytes
  are what the collective reduces or gathers (the gathered result for an
  all-gather), not what crosses the wire (see scaling_model.py for that).
- JAX: counted from the compiled train step: with `--hlo` process 0 dumps
  XLA's optimised HLO (`--xla_dump_to`) and the all-reduce / all-gather /
  reduce-scatter / collective-permute / all-to-all instructions of the train
  step's module and their result shapes are summed.
- TensorFlow: modelled (same algorithm as torch: gradient all-reduce plus
  the same gathers; see scaling_model.py).

`--bandwidth` also times gloo `all_reduce` (torch) of 4 KiB to 64 MiB on
N = 2 and 4 processes, to calibrate the model's per-step latency (alpha) and
bandwidth (beta) on this host.

Usage:
    KERAS_BACKEND=torch python benchmarks/scaling_localhost.py --size small \
        --processes 1 2 4 --bandwidth --json scaling.json
    python benchmarks/scaling_localhost.py --backends jax torch --methods simclr
"""

import argparse
import contextlib
import glob
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from keras_ecg.testing.test_case import free_ports

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from machine import cpu_name  # noqa: E402
from machine import usable_cores  # noqa: E402
from scaling_model import fit_alpha_beta  # noqa: E402

METHODS = ("simclr", "byol", "swav", "cpc", "jepa")
BACKENDS = ("tensorflow", "jax", "torch")
SAMPLING_RATE = 100  # Hz, the paper's
SINGLE_CROP = ("cpc", "jepa")
_MARK = "@@scaling "
# gloo all_reduce sizes for --bandwidth (bytes).
BANDWIDTH_BYTES = (4 << 10, 1 << 20, 16 << 20, 64 << 20)


def crop_length(method, view_seconds=2.5, single_seconds=10.0):
    seconds = single_seconds if method in SINGLE_CROP else view_seconds
    return int(round(seconds * SAMPLING_RATE))


def load_average():
    return [round(v, 2) for v in os.getloadavg()]


# --------------------------------------------------------------------------
# Launching a job (also used by gpu_readiness.py --processes).
# --------------------------------------------------------------------------


def thread_env(backend, threads):
    """Environment limiting a process to `threads` intra-op threads."""
    if not threads:
        return {}
    env = {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
    }
    if backend == "jax":
        flags = "--xla_cpu_multi_thread_eigen=false"
        env["XLA_FLAGS"] = f"{flags} intra_op_parallelism_threads={threads}"
    return env


def run_job(backend, settings, num_processes, timeout, script=None, gpus=False):
    """Runs `script --worker SETTINGS` as a job of `num_processes` processes.

    The processes join through keras-ecg's settings variables (none for one
    process). With `gpus`, process i gets GPU i (`LOCAL_RANK` for torch,
    `CUDA_VISIBLE_DEVICES` for JAX and TensorFlow).

    Returns:
        (messages of process 0, [exit codes], [log tails]).
    """
    script = script or os.path.abspath(__file__)
    addresses = ",".join(f"localhost:{p}" for p in free_ports(num_processes))
    folder = tempfile.mkdtemp(prefix="keras_ecg_scaling_")
    processes, logs = [], []
    for index in range(num_processes):
        env = dict(os.environ, KERAS_BACKEND=backend)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (HERE, ROOT, env.get("PYTHONPATH", "")) if p
        )
        for name in [k for k in env if k.startswith("KERAS_ECG_")]:
            if name.endswith(("JOB_ADDRESSES", "NUM_PROCESSES", "PROCESS_ID")):
                del env[name]
        env.update(thread_env(backend, settings.get("threads")))
        if num_processes > 1:
            env["KERAS_ECG_JOB_ADDRESSES"] = addresses
            env["KERAS_ECG_NUM_PROCESSES"] = str(num_processes)
            env["KERAS_ECG_PROCESS_ID"] = str(index)
        if gpus:
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
            if backend == "torch":
                env["LOCAL_RANK"] = str(index)
            else:
                env["CUDA_VISIBLE_DEVICES"] = str(index)
        if settings.get("hlo") and backend == "jax" and index == 0:
            dump = os.path.join(folder, "hlo")
            # First: XLA stops reading flags after `intra_op_parallelism_threads`.
            env["XLA_FLAGS"] = (
                f"--xla_dump_to={dump} --xla_dump_hlo_as_text "
                + env.get("XLA_FLAGS", "")
            ).strip()
            settings = dict(settings, hlo_dir=dump)
        log_path = os.path.join(folder, f"process{index}.log")
        logs.append(log_path)
        with open(log_path, "w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, script, "--worker", json.dumps(settings)],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(deadline - time.monotonic(), 1)))
        except subprocess.TimeoutExpired:
            for p in processes:
                if p.poll() is None:
                    p.kill()
            codes.append("timeout")
    messages, tails = [], []
    for index, path in enumerate(logs):
        with open(path) as f:
            text = f.read()
        if index == 0:
            messages = [
                json.loads(line[len(_MARK) :])
                for line in text.splitlines()
                if line.startswith(_MARK)
            ]
        tails.append("\n".join(text.strip().splitlines()[-3:]))
    return messages, codes, tails


# --------------------------------------------------------------------------
# Worker side.
# --------------------------------------------------------------------------


def send(message):
    sys.stdout.write(_MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


def limit_threads(backend, threads):
    if not threads:
        return
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    if not _has_tensorflow():
        return
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


class CollectiveLog:
    """Wraps `torch.distributed` collectives to log (op, bytes) per call."""

    OPS = (
        "all_reduce",
        "all_gather_into_tensor",
        "all_gather_single",
        "all_gather",
        "broadcast",
        "reduce_scatter_tensor",
        "reduce_scatter",
        "all_to_all_single",
        "barrier",
    )

    def __init__(self):
        self.calls = {}
        self._saved = {}

    @staticmethod
    def _bytes(value):
        if isinstance(value, (list, tuple)):
            return sum(CollectiveLog._bytes(v) for v in value)
        if hasattr(value, "numel") and hasattr(value, "element_size"):
            return int(value.numel() * value.element_size())
        return 0

    def _wrap(self, name, function):
        def logged(*args, **kwargs):
            # The buffer: the first tensor argument (all-gathers: the output).
            size = self._bytes(args[0]) if args else 0
            count, total = self.calls.get(name, (0, 0))
            self.calls[name] = (count + 1, total + size)
            return function(*args, **kwargs)

        return logged

    def __enter__(self):
        import torch.distributed as dist

        for name in self.OPS:
            function = getattr(dist, name, None)
            if function is not None:
                self._saved[name] = function
                setattr(dist, name, self._wrap(name, function))
        return self

    def __exit__(self, *exc):
        import torch.distributed as dist

        for name, function in self._saved.items():
            setattr(dist, name, function)
        return False

    def per_step(self, steps):
        return {
            name: {"calls": count / steps, "bytes": total / steps}
            for name, (count, total) in sorted(self.calls.items())
        }


_HLO_OPS = (
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "collective-permute",
    "all-to-all",
)
_DTYPE_BYTES = {
    "f64": 8,
    "f32": 4,
    "bf16": 2,
    "f16": 2,
    "s64": 8,
    "u64": 8,
    "s32": 4,
    "u32": 4,
    "s16": 2,
    "u16": 2,
    "s8": 1,
    "u8": 1,
    "pred": 1,
}


def _shape_bytes(text):
    total = 0
    for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text):
        if dtype in _DTYPE_BYTES:
            n = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
            total += n * _DTYPE_BYTES[dtype]
    return total


def hlo_collectives(text):
    """Collectives of an HLO module's text: {op: {"calls", "bytes"}}.

    Bytes are the instructions' result shapes (all-gather: the gathered
    result; an all-reduce's result equals its operand). Async pairs
    (`all-reduce-start` / `-done`) count once, at the start.
    """
    found = {}
    for line in text.splitlines():
        match = re.match(r"\s*(?:ROOT\s+)?\S+\s*=\s*(.*?)\s+([a-z-]+)\(", line)
        if not match:
            continue
        shape, op = match.groups()
        base = op[: -len("-start")] if op.endswith("-start") else op
        if base not in _HLO_OPS:
            continue
        calls, total = found.get(base, (0, 0))
        found[base] = (calls + 1, total + _shape_bytes(shape))
    return {k: {"calls": c, "bytes": b} for k, (c, b) in sorted(found.items())}


def jax_train_step_collectives(dump_dir):
    """The collectives of the largest optimised train-step module dumped."""
    files = glob.glob(os.path.join(dump_dir, "*after_optimizations.txt"))
    files = [f for f in files if "buffer-assignment" not in f]
    files = [f for f in files if "train" in os.path.basename(f)] or files
    if not files:
        return None
    best = max(files, key=os.path.getsize)
    with open(best) as f:
        return {"module": os.path.basename(best), "ops": hlo_collectives(f.read())}


def _has_tensorflow():
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def make_dataset(method, batch, steps, length, seed, numpy_inputs=False):
    """`steps` local batches: a tf.data dataset, or (without TensorFlow, as
    on the GPU image, or with `numpy_inputs`) `(x, batch_size)` of arrays."""
    rng = np.random.default_rng(seed)
    if numpy_inputs or not _has_tensorflow():
        x = rng.standard_normal((batch * steps, length, 12)).astype("float32")
        if method in SINGLE_CROP:
            return x, batch
        y = rng.standard_normal((batch * steps, length, 12)).astype("float32")
        return (x, y), batch
    import tensorflow as tf

    x = rng.standard_normal((batch, length, 12)).astype("float32")
    if method in SINGLE_CROP:
        dataset = tf.data.Dataset.from_tensors(x)
    else:
        y = rng.standard_normal((batch, length, 12)).astype("float32")
        dataset = tf.data.Dataset.from_tensors(((x, y),))
    return dataset.repeat(steps)


def worker_main(settings):
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    limit_threads(backend, settings.get("threads"))
    import keras

    from keras_ecg import distribute
    from keras_ecg.models.method_factory import build_method

    distribute.initialize_multi_process(timeout_seconds=settings.get("timeout", 300))
    count, me = distribute.process_count(), distribute.process_index()
    method = settings["method"]
    batch = settings["batch_size"]
    length = crop_length(method, settings["view_seconds"], settings["single_seconds"])
    keras.mixed_precision.set_global_policy(settings.get("precision", "float32"))
    keras.utils.set_random_seed(0)
    block = distribute.data_parallel() if count > 1 else contextlib.nullcontext()
    load_before = load_average()
    with block:
        model = build_method(method, size=settings["size"])
        model.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            jit_compile=False if backend == "torch" else "auto",
        )

        def fit(steps):
            data = make_dataset(
                method, batch, steps, length, me, settings.get("numpy_inputs")
            )
            if isinstance(data, tuple):
                x, batch_size = data
                return model.fit(
                    x, batch_size=batch_size, epochs=1, shuffle=False, verbose=0
                )
            return model.fit(
                distribute.distribute_local_dataset(data), epochs=1, verbose=0
            )

        start = time.perf_counter()
        fit(settings["warmup_steps"])
        warmup_s = time.perf_counter() - start
        distribute.barrier()
        steps = settings["steps"]
        collectives = CollectiveLog() if backend == "torch" and count > 1 else None
        with collectives or contextlib.nullcontext():
            start = time.perf_counter()
            history = fit(steps)
            seconds = time.perf_counter() - start
    loss = float(history.history["loss"][-1])
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    row = {
        "backend": backend,
        "method": method,
        "processes": count,
        "batch_per_process": batch,
        "input_shape": [length, 12],
        "trainable_params": params,
        "warmup_s": warmup_s,
        "steps": steps,
        "step_s": seconds / steps,
        "samples_per_s": count * batch * steps / seconds,
        "loss": loss,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    if collectives is not None:
        row["collectives"] = collectives.per_step(steps)
        row["bytes_source"] = "measured (torch.distributed calls, process 0)"
    elif backend == "jax" and settings.get("hlo_dir") and count > 1:
        row["collectives"] = jax_train_step_collectives(settings["hlo_dir"])
        row["bytes_source"] = "counted (optimised HLO of the train step)"
    elif count > 1:
        row["bytes_source"] = "modelled (scaling_model.py)"
    if me == 0:
        send({"row": row})
    distribute.barrier()
    return 0


def bandwidth_worker(settings):
    """Times gloo all_reduce of each size; process 0 reports median seconds."""
    import torch
    import torch.distributed as dist

    from keras_ecg import distribute

    limit_threads("torch", settings.get("threads"))
    distribute.initialize_multi_process(timeout_seconds=300)
    count, me = distribute.process_count(), distribute.process_index()
    rows = []
    for size in settings["sizes"]:
        buffer = torch.ones(size // 4, dtype=torch.float32)
        repeats = max(3, min(50, int(2e8 // max(size, 1))))
        for _ in range(2):
            dist.all_reduce(buffer)
        times = []
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(buffer)
            times.append(time.perf_counter() - start)
        rows.append({"bytes": size, "repeats": repeats, "seconds": np.median(times)})
    if me == 0:
        send({"bandwidth": {"processes": count, "rows": rows}})
    return 0


# --------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------


def _format_row(row):
    text = (
        f"{row['backend']:<10} {row['method']:<6} N={row['processes']}: batch "
        f"{row['batch_per_process']}/process, {row['step_s'] * 1e3:8.1f} ms/step, "
        f"{row['samples_per_s']:8.1f} samples/s (global); load average "
        f"{row['load_average_before_launch'][0]:.2f} at launch, "
        f"{row['load_average_before'][0]:.2f} -> {row['load_average_after'][0]:.2f} "
        "around the steps"
    )
    collectives = row.get("collectives")
    if collectives and "ops" in collectives:
        collectives = collectives["ops"]
    if collectives:
        parts = [
            f"{op} {v['calls']:g}x {v['bytes'] / 1e3:.1f} kB"
            for op, v in collectives.items()
        ]
        text += "\n    per step: " + "; ".join(parts)
        total = sum(v["bytes"] for v in collectives.values())
        text += f"; total {total / 1e6:.3f} MB ({row['bytes_source']})"
    elif "bytes_source" in row:
        text += f"\n    bytes per step: {row['bytes_source']}"
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_backends = (
        [os.environ["KERAS_BACKEND"]] if "KERAS_BACKEND" in os.environ else ["torch"]
    )
    parser.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=default_backends
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--size", choices=("paper", "small", "tiny"), default="small")
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="rounds, interleaved")
    parser.add_argument("--threads", type=int, default=1, help="intra-op per process")
    parser.add_argument("--view-seconds", type=float, default=2.5)
    parser.add_argument("--single-seconds", type=float, default=10.0, help="CPC, JEPA")
    parser.add_argument("--hlo", action="store_true", help="JAX: count HLO collectives")
    parser.add_argument("--bandwidth", action="store_true", help="gloo all_reduce")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per job")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if min(args.processes + [args.batch_size, args.steps]) < 1:
        parser.error("--processes, --batch-size and --steps must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    print(
        f"machine: {cpu_name()}, {usable_cores()} usable cores "
        f"({os.cpu_count()} logical), {platform.system()} {platform.machine()}, "
        f"python {platform.python_version()}"
    )
    print(
        f"settings: backends {' '.join(args.backends)}; size {args.size}; batch "
        f"{args.batch_size} per process (weak scaling); {args.threads} intra-op "
        f"thread(s) per process; {args.warmup_steps} warm-up then {args.steps} "
        f"timed steps of fit; {args.repeats} interleaved round(s)"
    )
    print(
        f"data: random float32, two {args.view_seconds:g} s views (CPC, JEPA: one "
        f"{args.single_seconds:g} s crop) x 12 leads at {SAMPLING_RATE} Hz"
    )
    print(f"load average at the start: {load_average()}", flush=True)
    result = {"settings": vars(args), "rows": [], "bandwidth": [], "failed": []}
    if args.bandwidth:
        sizes = list(BANDWIDTH_BYTES)
        for n in [n for n in args.processes if n > 1]:
            before = load_average()
            settings = {"mode": "bandwidth", "sizes": sizes, "threads": args.threads}
            messages, codes, tails = run_job("torch", settings, n, args.timeout)
            found = [m["bandwidth"] for m in messages if "bandwidth" in m]
            if not found:
                print(f"bandwidth N={n} failed: {codes} {tails}")
                continue
            for r in found[0]["rows"]:
                r["processes"] = n
                bus = r["bytes"] * 2 * (n - 1) / n / r["seconds"]
                result["bandwidth"].append(r)
                print(
                    f"gloo all_reduce N={n} {r['bytes'] / 2**20:8.3f} MiB: "
                    f"{r['seconds'] * 1e3:8.2f} ms (median of {r['repeats']}); "
                    f"bus bandwidth {bus / 1e9:.2f} "
                    f"GB/s; load {before[0]:.2f} -> {load_average()[0]:.2f}",
                    flush=True,
                )
        if result["bandwidth"]:
            alpha, beta = fit_alpha_beta(result["bandwidth"])
            result["alpha_s"], result["beta_bytes_per_s"] = alpha, beta
            print(
                f"fit t = alpha * 2(N-1) + bytes * 2(N-1)/N / beta: alpha "
                f"{alpha * 1e6:.1f} us per ring step, beta {beta / 1e9:.2f} GB/s"
            )
            result["fits"] = {}
            for n in sorted({r["processes"] for r in result["bandwidth"]}):
                rows = [r for r in result["bandwidth"] if r["processes"] == n]
                alpha_n, beta_n = fit_alpha_beta(rows)
                result["fits"][str(n)] = [alpha_n, beta_n]
                print(
                    f"  N={n} alone: alpha {alpha_n * 1e6:.1f} us, beta "
                    f"{beta_n / 1e9:.2f} GB/s"
                )
    for _ in range(args.repeats):
        for backend in args.backends:
            for method in args.methods:
                for n in args.processes:
                    settings = {
                        "mode": "train",
                        "method": method,
                        "size": args.size,
                        "batch_size": args.batch_size,
                        "steps": args.steps,
                        "warmup_steps": args.warmup_steps,
                        "threads": args.threads,
                        "view_seconds": args.view_seconds,
                        "single_seconds": args.single_seconds,
                        "hlo": args.hlo,
                    }
                    launch_load = load_average()
                    messages, codes, tails = run_job(backend, settings, n, args.timeout)
                    rows = [m["row"] for m in messages if "row" in m]
                    for row in rows:
                        row["load_average_before_launch"] = launch_load
                    if not rows:
                        tail = " | ".join(tails)[-600:]
                        print(f"{backend} {method} N={n} failed: exit {codes}: {tail}")
                        result["failed"].append([backend, method, n])
                        continue
                    print(_format_row(rows[0]), flush=True)
                    result["rows"].append(rows[0])
    print(f"load average at the end: {load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        job = json.loads(sys.argv[2])
        if job.get("mode") == "bandwidth":
            sys.exit(bandwidth_worker(job))
        sys.exit(worker_main(job))
    sys.exit(main())
