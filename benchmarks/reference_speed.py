"""keras-ecg vs. plain PyTorch: samples/s on the paper's shapes, interleaved.

Five pieces of work, each timed for keras-ecg (one process per Keras backend)
and for a plain-PyTorch eager implementation written for this benchmark
(`torch_reference.py`, the reference code's configuration), optionally also
`torch.compile` of it:

- `simclr`: a SimCLR training step, xresnet1d50, two views of 2.5 s (250 x 12
  at 100 Hz), batch 64;
- `byol`: a BYOL training step (online xresnet1d50 + projector + predictor,
  EMA target encoder + projector), same views and batch;
- `swav`: a SwAV training step (xresnet1d50, 512 -> 2048 -> 128 projector,
  3000 prototypes, Sinkhorn-Knopp codes), same views and batch;
- `inference`: xresnet1d50 forward pass, 2.5 s crops, batch 256;
- `cpc`: a CPC training step on 10 s crops (1000 x 12), batch 4 by default.
  Activation memory grows linearly with the batch (the paper's batch 32 is
  8x the default; the reference needed about 17.6 GB of RAM at batch 32).

Every contender runs in its own process (so its peak RSS is its own), built
and warmed up first; then the driver runs `--repeats` rounds, each timing
`--steps` steps of every contender in turn (one at a time, the order
reversed every round), and reports per contender the median samples/s and the
median over rounds of its ratio to the PyTorch eager run of the same round,
by wall time and by the CPU time of the contender's process (the CPU-time
ratio is the one to trust on a loaded machine: it leaves out the time other
processes held the CPU).
keras-ecg runs as users reach it: `model.fit` / `model.predict` on NumPy arrays
(`--keras-path train_on_batch` for `train_on_batch` / `predict_on_batch`).

Usage:
    KERAS_BACKEND=jax python benchmarks/reference_speed.py --threads 1 --repeats 5
    python benchmarks/reference_speed.py --backends tensorflow jax torch --size tiny
    python benchmarks/reference_speed.py --backends tensorflow jax torch \
        --works byol swav --threads 1
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import cpu_name  # noqa: E402
from machine import usable_cores  # noqa: E402

SAMPLING_RATE = 100  # Hz, the paper's
WORKS = ("simclr", "byol", "swav", "inference", "cpc")
# Two-view training works: SimCLR, BYOL, SwAV.
TWO_VIEW_WORKS = ("simclr", "byol", "swav")
# Crop durations: the paper's 2.5 s (SimCLR) and 10 s (CPC); `tiny` is for tests.
CROP_SECONDS = {
    "paper": {"simclr": 2.5, "byol": 2.5, "swav": 2.5, "inference": 2.5, "cpc": 10.0},
    "tiny": {
        "simclr": 0.64,
        "byol": 0.64,
        "swav": 0.64,
        "inference": 0.64,
        "cpc": 0.64,
    },
}
TINY_XRESNET = dict(
    block_depths=(1, 1),
    widths=(8, 8),
    expansion=1,
    kernel_size=5,
    stem_filters=(8, 8, 8),
    stem_kernel_size=5,
)
TINY_HEAD = dict(hidden_dim=16, output_dim=8, batch_norm=False)
# BYOL projector / predictor (no hidden bias) and SwAV projector, with BN.
TINY_BYOL_HEAD = dict(hidden_dim=16, output_dim=8, batch_norm=True, hidden_bias=False)
TINY_SWAV_HEAD = dict(hidden_dim=16, output_dim=8, batch_norm=True)
TINY_PROTOTYPES = 10
TINY_CPC = dict(
    filters=(16, 16, 16, 16),
    kernel_sizes=(1, 1, 1, 1),
    strides=(1, 1, 1, 1),
    units=16,
    num_layers=1,
    prediction_step=4,
    num_negatives=8,
)
_MARK = "@@reference_speed "


def crop_length(size, work):
    return int(round(CROP_SECONDS[size][work] * SAMPLING_RATE))


def describe_work(work, size, batch):
    length = crop_length(size, work)
    encoder = "xresnet1d50" if size == "paper" else "tiny xresnet1d"
    views = f"2 views of {length} x 12, batch {batch}"
    if work == "simclr":
        return f"SimCLR training step, {encoder}, {views}"
    if work == "byol":
        return f"BYOL training step, {encoder} online + EMA target, {views}"
    if work == "swav":
        prototypes = 3000 if size == "paper" else TINY_PROTOTYPES
        return f"SwAV training step, {encoder}, {prototypes} prototypes, {views}"
    if work == "inference":
        return f"{encoder} inference, {length} x 12, batch {batch}"
    model = "CPC (4 x 512 encoder, 2 x 512 LSTM)" if size == "paper" else "tiny CPC"
    return f"{model} training step, {length} x 12, batch {batch}"


# --------------------------------------------------------------------------
# Worker side: one process per contender and work.
# --------------------------------------------------------------------------


def _pin(threads):
    """Pins this process to its first `threads` usable CPUs (before imports)."""
    if threads and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
        return cpus
    return None


def _random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _torch_work(spec):
    import torch
    import torch_reference as ref

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
        torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    work, size, batch = spec["work"], spec["size"], spec["batch"]
    length = crop_length(size, work)
    xcfg = ref.PAPER_XRESNET if size == "paper" else TINY_XRESNET
    if work == "cpc":
        cfg = dict(ref.PAPER_CPC if size == "paper" else TINY_CPC)
        model = ref.CPCReference(**cfg, scoring=spec["cpc_scoring"])
        inputs = (torch.from_numpy(_random((batch, 12, length), 0)),)
    else:
        encoder = ref.XResNet1d(**xcfg, stem_bias=True)
        paper = size == "paper"
        if work == "simclr":
            head = ref.ProjectionHead(
                encoder.output_dim, **(ref.PAPER_HEAD if paper else TINY_HEAD)
            )
            model = ref.SimCLRReference(encoder, head)
        elif work == "byol":
            head = ref.PAPER_BYOL_HEAD if paper else TINY_BYOL_HEAD
            model = ref.BYOLReference(
                encoder,
                ref.ProjectionHead(encoder.output_dim, **head),
                ref.ProjectionHead(head["output_dim"], **head),
                # keras-ecg's fit sets K to the steps of its call; any K > 0
                # costs the same per step.
                total_steps=1000,
            )
        elif work == "swav":
            head = ref.PAPER_SWAV_HEAD if paper else TINY_SWAV_HEAD
            swav = dict(ref.PAPER_SWAV)
            if not paper:
                swav["num_prototypes"] = TINY_PROTOTYPES
            model = ref.SwAVReference(
                encoder, ref.ProjectionHead(encoder.output_dim, **head), **swav
            )
        if work in TWO_VIEW_WORKS:
            inputs = tuple(
                torch.from_numpy(_random((batch, 12, length), s)) for s in (0, 1)
            )
        else:
            model = encoder.eval()
            inputs = (torch.from_numpy(_random((batch, 12, length), 0)),)
    params = ref.count_parameters(model)
    if spec["contender"] == "torch.compile":
        model = torch.compile(model)
    if work == "inference":

        def run(steps):
            with torch.inference_mode():
                for _ in range(steps):
                    model(*inputs)

    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def run(steps):
            for _ in range(steps):
                ref.train_step(model, optimizer, *inputs)

    return run, params


def _keras_model(spec):
    from keras_ecg.models.method_factory import build_encoder
    from keras_ecg.models.method_factory import build_method

    work, size = spec["work"], spec["size"]
    kwargs = {}
    if work == "cpc" and spec["cpc_predict_all_steps"] != "default":
        kwargs["predict_all_steps"] = spec["cpc_predict_all_steps"] == "yes"
    if size == "paper":
        if work == "inference":
            return build_encoder("paper")
        return build_method(work, size="paper", **kwargs)
    from keras_ecg.layers.projection_head import ProjectionHead
    from keras_ecg.models.byol import BYOL
    from keras_ecg.models.cpc import CPC
    from keras_ecg.models.encoders.cpc_encoder import CPCContext
    from keras_ecg.models.encoders.cpc_encoder import CPCEncoder
    from keras_ecg.models.encoders.xresnet1d import XResNet1D
    from keras_ecg.models.simclr import SimCLR
    from keras_ecg.models.swav import SwAV

    if work == "cpc":
        return CPC(
            CPCEncoder(TINY_CPC["filters"]),
            CPCContext(TINY_CPC["units"], TINY_CPC["num_layers"]),
            prediction_steps=TINY_CPC["prediction_step"],
            num_negatives=TINY_CPC["num_negatives"],
            seed=0,
            **kwargs,
        )
    encoder = XResNet1D(pooling="concat", **TINY_XRESNET)
    if work == "inference":
        return encoder
    if work == "byol":

        def byol_head():
            return ProjectionHead(
                hidden_dims=(TINY_BYOL_HEAD["hidden_dim"],),
                output_dim=TINY_BYOL_HEAD["output_dim"],
                use_bias_hidden=False,
            )

        return BYOL(encoder, projection_head=byol_head(), prediction_head=byol_head())
    if work == "swav":
        head = ProjectionHead(
            hidden_dims=(TINY_SWAV_HEAD["hidden_dim"],),
            output_dim=TINY_SWAV_HEAD["output_dim"],
        )
        return SwAV(encoder, projection_head=head, num_prototypes=TINY_PROTOTYPES)
    head = ProjectionHead(
        hidden_dims=(TINY_HEAD["hidden_dim"],),
        output_dim=TINY_HEAD["output_dim"],
        use_batch_norm=False,
    )
    return SimCLR(encoder, projection_head=head)


def _keras_work(spec):
    import keras

    if spec["threads"] and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if spec["threads"] and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(spec["threads"])
        torch.set_num_interop_threads(1)
    keras.utils.set_random_seed(0)
    work, size, batch = spec["work"], spec["size"], spec["batch"]
    length = crop_length(size, work)
    model = _keras_model(spec)
    steps_max = spec["steps"]
    # fit / predict get `steps` batches per call: random data, fixed per process.
    x = _random((batch * steps_max, length, 12), 0)
    on_batch = spec["keras_path"] == "train_on_batch"
    if work == "inference":
        model.build((None, length, 12))

        def run(steps):
            if on_batch:
                for _ in range(steps):
                    model.predict_on_batch(x[:batch])
            else:
                model.predict(x[: batch * steps], batch_size=batch, verbose=0)

    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        if work in TWO_VIEW_WORKS:
            y = _random((batch * steps_max, length, 12), 1)
            data = lambda n: (x[: batch * n], y[: batch * n])  # noqa: E731
        else:
            data = lambda n: x[: batch * n]  # noqa: E731

        def run(steps):
            if on_batch:
                for _ in range(steps):
                    model.train_on_batch(data(1))
            else:
                model.fit(
                    data(steps), batch_size=batch, epochs=1, shuffle=False, verbose=0
                )

    run(1)  # builds the model (and compiles the step) before counting params
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return run, params


def _peak_rss_bytes():
    # ru_maxrss: kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_main(spec):
    start = time.perf_counter()
    cpus = _pin(spec["threads"])
    if spec["contender"].startswith("keras-ecg"):
        run, params = _keras_work(spec)
    else:
        run, params = _torch_work(spec)
    if spec["warmup"]:
        # `fit` / `predict` on zero samples fail; `--warmup 0` skips the call.
        run(spec["warmup"])
    # Imports, building, compiling (XLA, tf.function, torch.compile), warm-up.
    setup_s = time.perf_counter() - start
    _send({"ready": True, "params": params, "setup_s": setup_s, "cpus": cpus})
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            start, cpu_start = time.perf_counter(), time.process_time()
            run(spec["steps"])
            _send(
                {
                    "seconds": time.perf_counter() - start,
                    "cpu_seconds": time.process_time() - cpu_start,
                }
            )
        elif command == "quit":
            _send({"peak_rss_bytes": _peak_rss_bytes()})
            return 0
    return 0


def _send(message):
    sys.stdout.write(_MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Driver side.
# --------------------------------------------------------------------------


class Contender:
    """A worker process running one contender's work, driven over a pipe."""

    def __init__(self, name, backend, spec, env):
        self.name = name
        self.spec = dict(spec, contender=name)
        env = dict(env)
        if backend:
            env["KERAS_BACKEND"] = backend
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.process.stdin.write(json.dumps(self.spec) + "\n")
        self.process.stdin.flush()
        self.seconds = []
        self.cpu_seconds = []

    def receive(self):
        for line in self.process.stdout:
            if line.startswith(_MARK):
                return json.loads(line[len(_MARK) :])
        self.process.wait()
        self.log.seek(0)
        raise RuntimeError(
            f"reference_speed: contender {self.name!r} ({self.spec['work']}) "
            f"exited with code {self.process.returncode}:\n{self.log.read()[-4000:]}"
        )

    def command(self, text):
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self):
        message = self.command("quit")
        self.process.wait(timeout=120)
        self.log.close()
        return message["peak_rss_bytes"]


def worker_env(threads):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (HERE, env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
        env["TF_NUM_INTRAOP_THREADS"] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1"
        if threads == 1:
            # XLA:CPU's only thread switch: no Eigen thread pool.
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    return env


def _versions(backends):
    import importlib.metadata as md

    names = ["torch", "keras"] + [
        {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[b]
        for b in backends
    ]
    parts = []
    for name in dict.fromkeys(names):
        try:
            parts.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            if name == "tensorflow":
                try:
                    parts.append(f"{name} {md.version('tensorflow-cpu')}")
                    continue
                except md.PackageNotFoundError:
                    pass
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def _loadavg():
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return None


def _gb(n):
    return f"{n / 2**30:.2f} GB"


def measure_work(work, args, backends):
    batch = {
        "simclr": args.simclr_batch,
        "byol": args.byol_batch,
        "swav": args.swav_batch,
        "inference": args.inference_batch,
        "cpc": args.cpc_batch,
    }[work]
    steps = args.cpc_steps if (work == "cpc" and args.cpc_steps) else args.steps
    spec = {
        "work": work,
        "size": args.size,
        "batch": batch,
        "steps": steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "keras_path": args.keras_path,
        "cpc_scoring": args.cpc_scoring,
        "cpc_predict_all_steps": args.cpc_predict_all_steps,
    }
    env = worker_env(args.threads)
    names = [("torch eager", None)]
    if args.torch_compile:
        names.append(("torch.compile", None))
    names += [(f"keras-ecg {b}", b) for b in backends]
    print(f"\nwork: {describe_work(work, args.size, batch)}; {steps} steps per timing")
    print(f"  load average before: {_loadavg()}", flush=True)
    contenders = []
    try:
        # Started one after another: builds and warm-ups are not timed together.
        for name, backend in names:
            contender = Contender(name, backend, spec, env)
            contenders.append(contender)
            ready = contender.receive()
            contender.params = ready["params"]
            contender.setup_s = ready["setup_s"]
        for r in range(args.repeats):
            order = contenders if r % 2 == 0 else contenders[::-1]
            for contender in order:
                timing = contender.command("run")
                contender.seconds.append(timing["seconds"])
                contender.cpu_seconds.append(timing["cpu_seconds"])
        for contender in contenders:
            contender.peak_rss = contender.close()
    finally:
        for contender in contenders:
            if contender.process.poll() is None:
                contender.process.kill()
    reference = contenders[0]
    rows = []
    print(
        f"  {'contender':<21} {'params':>10}  {'samples/s: median (min-max)':<30}"
        f"{'ratio to torch eager':<24}{'CPU-time ratio':<24}{'peak RSS':>9}  setup"
    )
    for contender in contenders:
        rates = [steps * batch / s for s in contender.seconds]
        ratios = [a / b for a, b in zip(rates, _rates(reference, steps, batch))]
        # CPU seconds of the whole process (all its threads) per timing: what
        # the contender computed, without the time other processes took its
        # CPU away (the wall-clock ratios scatter on a loaded machine).
        cpu_ratios = [
            r / c for r, c in zip(reference.cpu_seconds, contender.cpu_seconds)
        ]
        row = {
            "work": work,
            "description": describe_work(work, args.size, batch),
            "contender": contender.name,
            "batch": batch,
            "steps_per_timing": steps,
            "params": contender.params,
            "samples_per_s": rates,
            "median_samples_per_s": statistics.median(rates),
            "ratios_vs_torch_eager": ratios,
            "median_ratio": statistics.median(ratios),
            "cpu_seconds": contender.cpu_seconds,
            "cpu_time_ratios_vs_torch_eager": cpu_ratios,
            "median_cpu_time_ratio": statistics.median(cpu_ratios),
            "peak_rss_bytes": contender.peak_rss,
            "setup_s": contender.setup_s,
        }
        rows.append(row)
        rate = f"{row['median_samples_per_s']:.2f} ({min(rates):.2f}-{max(rates):.2f})"
        ratio = f"{row['median_ratio']:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        cpu = row["median_cpu_time_ratio"]
        cpu = f"{cpu:.2f}x ({min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})"
        print(
            f"  {contender.name:<21} {contender.params:>10,d}  {rate:<30}{ratio:<24}"
            f"{cpu:<24}"
            f"{_gb(contender.peak_rss):>9}  {contender.setup_s:.0f} s"
        )
    print(f"  load average after: {_loadavg()}", flush=True)
    return rows


def _rates(contender, steps, batch):
    return [steps * batch / s for s in contender.seconds]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=("tensorflow", "jax", "torch"),
        default=None,
        help="Keras backends to time (one process each); default $KERAS_BACKEND",
    )
    parser.add_argument("--works", nargs="+", choices=WORKS, default=list(WORKS))
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--simclr-batch", type=int, default=64)
    parser.add_argument("--byol-batch", type=int, default=64)
    parser.add_argument("--swav-batch", type=int, default=64)
    parser.add_argument("--inference-batch", type=int, default=256)
    parser.add_argument(
        "--cpc-batch",
        type=int,
        default=4,
        help="CPC batch (memory grows linearly; the paper's is 32)",
    )
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument(
        "--cpc-steps", type=int, default=None, help="steps per CPC timing"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="pin every contender to this many CPUs (the first usable ones) "
        "and cap its thread pools; default: no pinning",
    )
    parser.add_argument(
        "--keras-path", choices=("fit", "train_on_batch"), default="fit"
    )
    parser.add_argument(
        "--cpc-scoring",
        choices=("gather", "matrix"),
        default="gather",
        help="how the PyTorch CPC scores negatives (gather: the reference's)",
    )
    parser.add_argument(
        "--cpc-predict-all-steps",
        choices=("default", "yes", "no"),
        default="default",
        help="keras-ecg CPC: predict every step 1..12 or only 12 (default: "
        "build_method's)",
    )
    parser.add_argument(
        "--torch-compile", action="store_true", help="also time torch.compile"
    )
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    for name in (
        "simclr_batch",
        "byol_batch",
        "swav_batch",
        "inference_batch",
        "cpc_batch",
        "steps",
        "repeats",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--warmup must be >= 0 and --threads >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    backends = args.backends or [os.environ.get("KERAS_BACKEND", "tensorflow")]
    cores = usable_cores()
    print(
        f"machine: {cpu_name()}, {cores} usable cores ({os.cpu_count()} logical), "
        f"{platform.system()} {platform.machine()}; device: cpu"
    )
    print(f"software: python {platform.python_version()}, {_versions(backends)}")
    threads = (
        f"{args.threads} thread(s) per contender, pinned to the first "
        f"{args.threads} usable CPU(s)"
        if args.threads
        else f"no pinning (each contender may use all {cores} cores)"
    )
    print(
        f"settings: size {args.size}; {threads}; {args.warmup} warm-up step(s), then "
        f"{args.repeats} rounds timing every contender in turn (order reversed "
        f"every round); keras-ecg via {args.keras_path}; PyTorch CPC scoring "
        f"{args.cpc_scoring}; keras-ecg CPC predict_all_steps "
        f"{args.cpc_predict_all_steps}; inputs: random float32"
    )
    print(
        "note: this machine may be shared with other jobs; the load average is "
        "printed around each work. Ratios come from rounds timed back to back, so "
        "they are the figures to read, not absolute samples/s."
    )
    rows = []
    for work in args.works:
        rows.extend(measure_work(work, args, backends))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"settings": vars(args), "backends": backends, "rows": rows},
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker_main(json.loads(sys.stdin.readline())))
    sys.exit(main())
