"""A scaling model of data-parallel pretraining: compute + communication per step.

Pure arithmetic (importable without Keras). Per method and per process
(= GPU), one training step costs

    t_step = t_compute + t_gathers + t_gradients          (no overlap)
    t_step = t_compute + t_gathers
             + max(0, t_gradients - backward share * t_compute)   (overlap)

- t_compute = FLOPs per step / (peak FLOP/s x MFU); FLOPs from
  gpu_readiness.py's analytic `training_flops` (3x forward; BYOL/JEPA
  targets 1x), counted at the paper configurations (`PAPER`).
- t_gradients: the gradient all-reduce, float32, 4 bytes x trainable
  parameters (Keras keeps float32 variables under `mixed_bfloat16`).
- t_gathers: what the methods' losses all-gather (`gather_across_replicas`)
  forward, and all-reduce backward (torch's differentiable all-gather reduces
  the gradient of the whole gathered tensor), plus SyncBN moments when on,
  and the torch step's bookkeeping (the batch sizes, the metrics).
- A collective of S buffer bytes over N processes on a ring costs
  all-reduce: 2(N-1) alpha + 2(N-1)/N S / B
  all-gather (S = the gathered result): (N-1) alpha + (N-1)/N S / B
  where B is the NCCL-tests "bus bandwidth" and alpha the latency of one ring
  step. Several hosts (H hosts x G GPUs): hierarchical all-reduce, a
  reduce-scatter and an all-gather inside each host (NVLink) around an
  all-reduce of S/G between hosts on each GPU's own InfiniBand rail;
  all-gathers over all N GPUs run at the inter-host rail bandwidth.

Weak scaling: the per-GPU batch is fixed, so the global batch grows with N
and scaling efficiency is t_step(1) / t_step(N).

`python benchmarks/scaling_model.py` prints the predictions
(docs/distributed.md); `--count` rebuilds the paper models to recount their
parameters and FLOPs (needs Keras; the numbers are kept in `PAPER`);
`--check scaling.json` compares the model with scaling_localhost.py's
measurements.
"""

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace

METHODS = ("simclr", "byol", "swav", "cpc", "jepa")
FLOAT32 = 4


@dataclass(frozen=True)
class MethodConfig:
    """What one process of a method computes and communicates per step."""

    # Trainable parameters (gradients all-reduced); BYOL/JEPA targets and
    # BatchNorm statistics are not communicated.
    trainable_params: int
    # Training FLOPs per sample (gpu_readiness.training_flops / batch).
    flops_per_sample: float
    # Per-GPU batch of the paper configuration's runs.
    batch: int
    # Input crop, samples at 100 Hz (x 12 leads).
    length: int
    views: int
    # Rows gathered per sample and their width (float32), each entry one
    # gather: (width, differentiable). SimCLR: each view's projection.
    gathers: tuple = ()
    # BatchNorm layers and their total channels (SyncBN: an all-reduce of
    # 3 x channels floats forward and backward per layer).
    batch_norm_layers: int = 0
    batch_norm_channels: int = 0


# Counted with `--count` (torch backend, Keras 3.15): trainable parameters of
# build_method(method, size="paper") after one step, and
# gpu_readiness.training_flops at the paper inputs (per-GPU batch 64, CPC 32;
# views 2.5 s, CPC/JEPA 10 s at 100 Hz) divided by the batch.
PAPER = {
    "simclr": MethodConfig(
        1_157_264,
        20_629_192_704 / 64,
        64,
        250,
        2,
        gathers=((16, True), (16, True)),  # each view's 16-d projection
        batch_norm_layers=52,
        batch_norm_channels=6_528,
    ),
    "byol": MethodConfig(
        1_175_200,
        27_516_076_032 / 64,
        64,
        250,
        2,
        gathers=(),  # per-sample loss
        batch_norm_layers=54,  # online network
        batch_norm_channels=7_552,
    ),
    "swav": MethodConfig(
        2_587_392,
        21_721_546_752 / 64,
        64,
        250,
        2,
        # The prototype scores of both crops for Sinkhorn (3000 prototypes),
        # no gradient through the gather (codes are targets).
        gathers=((3000, False), (3000, False)),
        batch_norm_layers=53,
        batch_norm_channels=8_576,
    ),
    "cpc": MethodConfig(
        5_257_216,
        1_104_936_960_000 / 32,
        32,
        1000,
        1,
        # negatives_from="sequence" (paper): one row label per sample, only
        # to draw the negatives for the global batch.
        gathers=((1, False),),
        batch_norm_layers=4,
        batch_norm_channels=2_048,
    ),
    "jepa": MethodConfig(
        4_477_248,
        285_337_976_832 / 64,
        64,
        1000,
        1,
        gathers=((1, False),),  # the mask draw's row offsets
    ),
}


@dataclass(frozen=True)
class Hardware:
    """Assumed GPU cluster (defaults: H100 SXM nodes, see docs/distributed.md)."""

    name: str = "H100 SXM"
    # BF16 dense tensor-core peak, NVIDIA datasheet (gpu_readiness.PEAK_TFLOPS).
    peak_flops: float = 989e12
    # Model FLOPs utilisation: an ASSUMPTION until gpu_readiness.py has run on
    # a GPU. Small convolutional models at batch 64 are launch-bound.
    mfu: float = 0.10
    gpus_per_host: int = 8
    # NCCL-tests all_reduce bus bandwidth on 8x H100 NVLink 4 (NVSwitch), large
    # messages: typically 360-450 GB/s (assumption).
    intra_bus_bytes_per_s: float = 400e9
    # One ring step (launch + NVLink hop); NCCL small-message all-reduce on 8
    # GPUs takes ~15-30 us.
    intra_alpha_s: float = 2e-6
    # 400 Gb/s NDR InfiniBand per GPU (8 rails per host): 50 GB/s line rate.
    inter_bus_bytes_per_s: float = 50e9
    inter_alpha_s: float = 5e-6
    # Fraction of a step's compute that is the backward pass (3x forward).
    backward_share: float = 2.0 / 3.0
    # Fixed time per step outside the FLOPs (Python, kernel launches, the
    # optimizer's many small kernels): an ASSUMPTION, 0 unless given; the
    # paper's small convolutional models at batch 64 are likely bound by it.
    step_overhead_s: float = 0.0


# --------------------------------------------------------------------------
# Collectives.
# --------------------------------------------------------------------------


def ring_all_reduce_wire_bytes(buffer_bytes, n):
    """Bytes each process sends (and receives) in a ring all-reduce."""
    return 0.0 if n <= 1 else 2.0 * (n - 1) / n * buffer_bytes


def ring_all_gather_wire_bytes(gathered_bytes, n):
    """Bytes each process sends in a ring all-gather of `gathered_bytes`."""
    return 0.0 if n <= 1 else (n - 1) / n * gathered_bytes


def ring_time(op, buffer_bytes, n, alpha, bus):
    """Seconds of one ring collective over `n` processes."""
    if n <= 1:
        return 0.0
    if op == "all_reduce":
        return 2 * (n - 1) * alpha + ring_all_reduce_wire_bytes(buffer_bytes, n) / bus
    if op == "all_gather":
        return (n - 1) * alpha + ring_all_gather_wire_bytes(buffer_bytes, n) / bus
    if op == "broadcast":
        return (n - 1) * alpha + buffer_bytes / bus
    raise ValueError(f"unknown collective {op!r}")


def collective_time(op, buffer_bytes, n, hw):
    """Seconds of a collective over `n` GPUs of `hw` (hierarchical > 1 host).

    Across H hosts of G GPUs: an all-reduce is a reduce-scatter inside each
    host (NVLink), an all-reduce of S/G between the hosts on each GPU's rail,
    and an all-gather inside each host; an all-gather gathers between the
    hosts (each rail carrying 1/G of the rows) and then inside each host.
    """
    g = hw.gpus_per_host
    if n <= g:
        return ring_time(
            op, buffer_bytes, n, hw.intra_alpha_s, hw.intra_bus_bytes_per_s
        )
    hosts = math.ceil(n / g)
    inside = (g - 1) * hw.intra_alpha_s + (g - 1) / g * buffer_bytes / (
        hw.intra_bus_bytes_per_s
    )
    if op == "all_reduce":
        between = ring_time(
            "all_reduce",
            buffer_bytes / g,
            hosts,
            hw.inter_alpha_s,
            hw.inter_bus_bytes_per_s,
        )
        return 2 * inside + between
    if op == "all_gather":
        between = (hosts - 1) * hw.inter_alpha_s + (hosts - 1) / hosts * (
            buffer_bytes / g
        ) / hw.inter_bus_bytes_per_s
        return inside + between
    return ring_time(op, buffer_bytes, n, hw.inter_alpha_s, hw.inter_bus_bytes_per_s)


def step_collectives(config, n, batch=None, synchronized_batch_norm=False, torch=True):
    """The collectives of one step of one process: [(op, buffer bytes)].

    Buffer bytes: the all-reduced tensor, or the GATHERED result of an
    all-gather (N x the local rows). Empty for one process.
    """
    if n <= 1:
        return []
    batch = config.batch if batch is None else batch
    ops = [("all_reduce", FLOAT32 * config.trainable_params)]
    for width, differentiable in config.gathers:
        gathered = FLOAT32 * n * batch * width
        ops.append(("all_gather", gathered))
        if differentiable:
            ops.append(("all_reduce", gathered))  # its backward
    if synchronized_batch_norm and config.batch_norm_layers:
        per_layer = FLOAT32 * 3 * config.batch_norm_channels / config.batch_norm_layers
        ops += [("all_reduce", per_layer)] * (2 * config.batch_norm_layers)
    if torch:
        # keras-ecg's torch step: the local batch sizes (int64), the metrics.
        ops += [("all_gather", 8 * n), ("all_reduce", 8 * 4)]
    return ops


def bytes_per_step(config, n, batch=None, synchronized_batch_norm=False):
    """{"gradients", "gathers", "buffer", "wire"}: bytes per step per process."""
    ops = step_collectives(config, n, batch, synchronized_batch_norm)
    gradients = FLOAT32 * config.trainable_params if n > 1 else 0
    buffer = sum(b for _, b in ops)
    wire = sum(
        ring_all_reduce_wire_bytes(b, n)
        if op == "all_reduce"
        else ring_all_gather_wire_bytes(b, n)
        for op, b in ops
    )
    return {
        "gradients": gradients,
        "gathers": buffer - gradients,
        "buffer": buffer,
        "wire": wire,
    }


# --------------------------------------------------------------------------
# Step time, throughput, epochs.
# --------------------------------------------------------------------------


@dataclass
class Prediction:
    method: str
    gpus: int
    batch_per_gpu: int
    compute_s: float
    gradients_s: float
    gathers_s: float
    step_s: float
    step_overlap_s: float
    samples_per_s: float
    samples_per_s_overlap: float
    efficiency: float = 1.0
    efficiency_overlap: float = 1.0
    extra: dict = field(default_factory=dict)


def predict(method, n, hw=None, config=None, synchronized_batch_norm=False):
    """Step time and samples/s of `method` on `n` GPUs (weak scaling)."""
    hw = hw or Hardware()
    config = config or PAPER[method]
    compute = config.flops_per_sample * config.batch / (hw.peak_flops * hw.mfu)
    compute += hw.step_overhead_s
    ops = step_collectives(config, n, synchronized_batch_norm=synchronized_batch_norm)
    times = [collective_time(op, b, n, hw) for op, b in ops]
    gradients = times[0] if times else 0.0
    gathers = sum(times[1:])
    step = compute + gathers + gradients
    overlap = compute + gathers + max(0.0, gradients - hw.backward_share * compute)
    global_batch = n * config.batch
    result = Prediction(
        method,
        n,
        config.batch,
        compute,
        gradients,
        gathers,
        step,
        overlap,
        global_batch / step,
        global_batch / overlap,
    )
    if n > 1:
        one = predict(method, 1, hw, config, synchronized_batch_norm)
        result.efficiency = one.step_s / step
        result.efficiency_overlap = one.step_overlap_s / overlap
    return result


def epoch_seconds(prediction, records=800_000, overlap=False):
    """One epoch = one crop per record (full global batches only)."""
    steps = records // (prediction.gpus * prediction.batch_per_gpu)
    return steps * (prediction.step_overlap_s if overlap else prediction.step_s)


def record_bytes(seconds=10.0, rate=500, leads=12, dtype_bytes=2):
    return seconds * rate * leads * dtype_bytes


def input_need(prediction, config=None, rate=500):
    """What the input pipeline must deliver per host for `prediction`.

    Returns records/s per host (one crop per record; SimCLR/BYOL/SwAV make 2
    views of each) and the bytes/s read per host for whole 10 s records at
    `rate` Hz stored as int16 (WFDB) or float32 (keras-ecg's cache), and for
    reading only the crop from the float32 cache.
    """
    config = config or PAPER[prediction.method]
    per_host = prediction.samples_per_s * min(prediction.gpus, 8) / prediction.gpus
    crop_seconds = config.length / 100.0
    return {
        "records_per_s_per_host": per_host,
        "int16_record_bytes_per_s": per_host * record_bytes(rate=rate, dtype_bytes=2),
        "float32_record_bytes_per_s": per_host * record_bytes(rate=rate, dtype_bytes=4),
        "float32_crop_bytes_per_s": per_host
        * record_bytes(crop_seconds, rate=rate, dtype_bytes=4),
    }


# --------------------------------------------------------------------------
# The localhost check.
# --------------------------------------------------------------------------


def cpu_share(processes, cores, other_load=0.0):
    """The share of a core each of `processes` one-thread processes gets
    when `other_load` other threads also want to run (fair time-slicing)."""
    return min(1.0, cores / (processes + max(other_load, 0.0)))


def localhost_prediction(
    one_process_step_s, ops, n, alpha, beta, cores=2, load_one=0.0, load_n=0.0
):
    """Predicted step time of `n` local processes with 1 thread each.

    Compute per process is the measured 1-process step, stretched by the
    ratio of CPU shares (`cpu_share`): on an idle host of 2 cores, 4
    processes take twice as long per step. `load_one` / `load_n`: other
    runnable threads during the 1-process and the n-process runs (0: an
    idle host). Communication: each of `ops` ((op, buffer bytes) per step)
    on a ring with the measured alpha (s per ring step) and beta (bus
    bytes/s).
    """
    stretch = cpu_share(1, cores, load_one) / cpu_share(n, cores, load_n)
    compute = one_process_step_s * stretch
    communication = sum(ring_time(op, b, n, alpha, beta) for op, b in ops)
    return compute + communication, compute, communication


def fit_alpha_beta(rows):
    """Least squares `t = alpha 2(N-1) + bytes 2(N-1)/N / beta` over rows of
    {"processes", "bytes", "seconds"} in relative error (each row weighed by
    1/t, so small messages count too); returns (alpha s, beta bytes/s)."""
    # Normal equations of the 2 x 2 problem, rows scaled by 1/t.
    saa = sab = sbb = sa = sb = 0.0
    for r in rows:
        n, t = r["processes"], r["seconds"]
        a = 2 * (n - 1) / t
        b = r["bytes"] * 2 * (n - 1) / n / t
        saa, sab, sbb, sa, sb = saa + a * a, sab + a * b, sbb + b * b, sa + a, sb + b
    det = saa * sbb - sab * sab
    alpha = (sa * sbb - sb * sab) / det
    inverse_beta = (saa * sb - sab * sa) / det
    return max(alpha, 0.0), 1.0 / inverse_beta


def bandwidth_fits(result):
    """{N: (alpha, beta)} per process count of a scaling_localhost JSON."""
    fits = {}
    for n in sorted({r["processes"] for r in result.get("bandwidth", [])}):
        rows = [r for r in result["bandwidth"] if r["processes"] == n]
        fits[n] = fit_alpha_beta(rows)
    return fits


def measured_ops(collectives):
    """(op, buffer bytes) per step from scaling_localhost's torch log."""
    ops = []
    for name, v in collectives.items():
        if name == "barrier" or not v["calls"]:
            continue
        op = "all_gather" if name.startswith("all_gather") else name
        op = "all_reduce" if op.startswith("reduce_scatter") else op
        calls = round(v["calls"])
        ops += [(op, v["bytes"] / v["calls"])] * max(calls, 1)
    return ops


# What the `small` configurations gather (scaling_localhost.py's default
# size): SimCLR's 64-d projections, SwAV's 32 prototype scores.
SMALL_GATHERS = {
    "simclr": ((64, True), (64, True)),
    "byol": (),
    "swav": ((32, False), (32, False)),
    "cpc": ((1, False),),
    "jepa": ((1, False),),
}


def _other_load(row, key):
    """Other runnable threads at the start of a job: the 1-minute load
    average the driver read just before launching it (it still holds part
    of the previous job's processes: an estimate)."""
    return float(row.get(key, [0.0])[0])


def hlo_ops(collectives):
    """(op, buffer bytes) per step from the collectives of a JAX train step's
    HLO: all-reduces as all-reduces, the others (all-gather, all-to-all,
    collective-permute, reduce-scatter) costed as all-gathers."""
    ops = []
    for name, v in collectives.items():
        op = "all_reduce" if name == "all-reduce" else "all_gather"
        ops += [(op, v["bytes"] / v["calls"])] * v["calls"]
    return ops


def check_localhost(result, cores=2):
    """Rows of predicted vs measured from a scaling_localhost.py JSON.

    Two predictions per row: on an idle host (compute stretched by n / cores
    beyond `cores` processes) and with the host's other load (`cpu_share`
    with the load averages read before the 1-process and the n-process
    jobs).
    """
    alpha = result.get("alpha_s")
    beta = result.get("beta_bytes_per_s")
    if alpha is None or beta is None:
        raise ValueError("the JSON has no bandwidth fit: run with --bandwidth")
    rows = []
    # Each N-process row against the 1-process row of its round: the last
    # one before it (the driver runs N = 1 first in every round).
    one = {}
    for row in result["rows"]:
        n = row["processes"]
        key = (row["backend"], row["method"])
        if n == 1:
            one[key] = row
            continue
        if key not in one:
            continue
        reference = one[key]
        t1 = reference["step_s"]
        if row.get("collectives") and "ops" not in row["collectives"]:
            ops, source = measured_ops(row["collectives"]), "measured"
        elif row.get("collectives"):
            ops, source = hlo_ops(row["collectives"]["ops"]), "counted (HLO)"
        else:
            config = replace(
                PAPER[row["method"]],
                trainable_params=row["trainable_params"],
                batch=row["batch_per_process"],
                gathers=SMALL_GATHERS[row["method"]],
            )
            ops = step_collectives(config, n, torch=row["backend"] == "torch")
            source = "modelled"
        # The fit for this process count when measured (latency grows when
        # the processes outnumber the cores), else the joint fit.
        alpha_n, beta_n = bandwidth_fits(result).get(n, (alpha, beta))
        idle, compute, comm = localhost_prediction(t1, ops, n, alpha_n, beta_n, cores)
        loaded, _, _ = localhost_prediction(
            t1,
            ops,
            n,
            alpha_n,
            beta_n,
            cores,
            load_one=_other_load(reference, "load_average_before_launch"),
            load_n=_other_load(row, "load_average_before_launch"),
        )
        samples = n * row["batch_per_process"]
        rows.append(
            {
                "backend": row["backend"],
                "method": row["method"],
                "processes": n,
                "bytes": source,
                "one_process_step_s": t1,
                "predicted_step_s": idle,
                "predicted_compute_s": compute,
                "predicted_communication_s": comm,
                "predicted_loaded_step_s": loaded,
                "measured_step_s": row["step_s"],
                "predicted_samples_per_s": samples / idle,
                "measured_samples_per_s": row["samples_per_s"],
                "ratio": row["step_s"] / idle,
                "ratio_loaded": row["step_s"] / loaded,
                "load": [
                    _other_load(reference, "load_average_before_launch"),
                    _other_load(row, "load_average_before_launch"),
                ],
            }
        )
    return rows


# --------------------------------------------------------------------------
# Reports.
# --------------------------------------------------------------------------


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def communication_table(gpus=(8, 64)):
    """Milliseconds of communication per step (independent of the MFU)."""
    head = " | ".join(f"grad all-reduce ms (N={n}) | gathers ms (N={n})" for n in gpus)
    lines = [f"| method | {head} |", "|---|" + "---|---|" * len(gpus)]
    for method in METHODS:
        cells = []
        for n in gpus:
            p = predict(method, n)
            cells += [f"{p.gradients_s * 1e3:.3f}", f"{p.gathers_s * 1e3:.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prediction_table(
    mfus=(0.02, 0.1, 0.4), gpus=(1, 8, 64), records=800_000, overhead_s=0.0
):
    """Per method and GPU count, per MFU: step ms, samples/s, efficiency,
    epoch time (no overlap; with overlap in parentheses)."""
    head = " | ".join(f"MFU {m:.0%}: step ms, samples/s, eff., epoch" for m in mfus)
    lines = [
        f"| method | GPUs | {head} |",
        "|---|---|" + "---|" * len(mfus),
    ]
    for method in METHODS:
        for n in gpus:
            cells = []
            for mfu in mfus:
                p = predict(method, n, Hardware(mfu=mfu, step_overhead_s=overhead_s))
                cells.append(
                    f"{p.step_s * 1e3:.3g}, {p.samples_per_s:,.0f}, "
                    f"{p.efficiency:.0%} ({p.efficiency_overlap:.0%}), "
                    f"{_duration(epoch_seconds(p, records))}"
                )
            lines.append(f"| {method} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bytes_table(gpus=(2, 8, 64)):
    lines = [
        "| method | trainable params | per-GPU batch | gradient MB | gathered MB "
        + " ".join(f"(N={n}) |" for n in gpus)
        + " wire MB per GPU "
        + " ".join(f"(N={n}) |" for n in gpus),
        "|---|---|---|---|" + "---|" * (2 * len(gpus)),
    ]
    for method in METHODS:
        c = PAPER[method]
        counts = [bytes_per_step(c, n) for n in gpus]
        lines.append(
            f"| {method} | {c.trainable_params:,} | {c.batch} | "
            f"{FLOAT32 * c.trainable_params / 1e6:.2f} | "
            + " | ".join(f"{b['gathers'] / 1e6:.3f}" for b in counts)
            + " | "
            + " | ".join(f"{b['wire'] / 1e6:.2f}" for b in counts)
            + " |"
        )
    return "\n".join(lines)


# Measured input pipelines (benchmarks/README.md, 2 cores): "Input
# pipeline": 2 views with `rrc_to` augmentation of 100 Hz PTB-XL in memory,
# 28,840 samples/s; "cache_build": the same from keras-ecg's float32 cache
# of 10 s records at 500 Hz, 2583-3081 samples/s (the lower taken).
PIPELINE_SAMPLES_PER_S_PER_CORE = 28_840 / 2
CACHE_500HZ_SAMPLES_PER_S_PER_CORE = 2_583 / 2


def input_table(mfus=(0.02, 0.4)):
    """Per host (8 GPUs): records/s needed, bytes/s, CPU cores for the views."""
    lines = [
        "| method | MFU | records/s per host (8 GPUs) | int16 10 s records at 500 Hz"
        " MB/s | float32 records MB/s | float32 crops MB/s | CPU cores at the "
        "measured rate (100 Hz in memory; 500 Hz from the cache) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        for mfu in mfus:
            p = predict(method, 8, Hardware(mfu=mfu))
            need = input_need(p)
            records = need["records_per_s_per_host"]
            cores = records / PIPELINE_SAMPLES_PER_S_PER_CORE
            cached = records / CACHE_500HZ_SAMPLES_PER_S_PER_CORE
            lines.append(
                f"| {method} | {mfu:.0%} | {records:,.0f} | "
                f"{need['int16_record_bytes_per_s'] / 1e6:,.0f} | "
                f"{need['float32_record_bytes_per_s'] / 1e6:,.0f} | "
                f"{need['float32_crop_bytes_per_s'] / 1e6:,.0f} | {cores:,.0f}; "
                f"{cached:,.0f} |"
            )
    return "\n".join(lines)


def check_table(rows):
    lines = [
        "| backend | method | N | bytes | 1-process ms | predicted ms, idle host "
        "(compute + comm) | predicted ms at the load average (1-proc, N-proc "
        "load) | measured ms | measured samples/s | measured / predicted (idle, "
        "loaded) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flags = [abs(x - 1) > 0.25 for x in (r["ratio"], r["ratio_loaded"])]
        marks = ["**" if f else "" for f in flags]
        lines.append(
            f"| {r['backend']} | {r['method']} | {r['processes']} | {r['bytes']} | "
            f"{r['one_process_step_s'] * 1e3:.0f} | "
            f"{r['predicted_step_s'] * 1e3:.0f} ({r['predicted_compute_s'] * 1e3:.0f}"
            f" + {r['predicted_communication_s'] * 1e3:.1f}) | "
            f"{r['predicted_loaded_step_s'] * 1e3:.0f} ({r['load'][0]:.1f}, "
            f"{r['load'][1]:.1f}) | {r['measured_step_s'] * 1e3:.0f} | "
            f"{r['measured_samples_per_s']:.1f} | "
            f"{marks[0]}{r['ratio']:.2f}{marks[0]}, "
            f"{marks[1]}{r['ratio_loaded']:.2f}{marks[1]} |"
        )
    return "\n".join(lines)


def count_paper_configs():
    """Recounts `PAPER`'s parameters and FLOPs (builds and steps the models)."""
    import keras
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpu_readiness import training_flops

    from keras_ecg.models.method_factory import build_method

    counts = {}
    for method in METHODS:
        config = PAPER[method]
        model = build_method(method, size="paper")
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        x = np.zeros((2, config.length, 12), "float32")
        model.train_on_batch(x if config.views == 1 else (x, x))
        counts[method] = {
            "trainable_params": int(
                sum(np.prod(w.shape) for w in model.trainable_weights)
            ),
            "flops_per_sample": training_flops(
                method, model, config.batch, config.length
            )
            / config.batch,
        }
        print(method, counts[method], flush=True)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", action="store_true", help="recount PAPER")
    parser.add_argument("--check", default=None, help="scaling_localhost.py JSON")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    if args.count:
        count_paper_configs()
        return 0
    hw = Hardware()
    print(
        f"hardware: {hw.name}, {hw.peak_flops / 1e12:g} TFLOP/s bf16 dense; "
        f"{hw.gpus_per_host} GPUs per host, NVLink bus "
        f"{hw.intra_bus_bytes_per_s / 1e9:g} GB/s (alpha "
        f"{hw.intra_alpha_s * 1e6:g} us), InfiniBand "
        f"{hw.inter_bus_bytes_per_s / 1e9:g} GB/s per GPU (alpha "
        f"{hw.inter_alpha_s * 1e6:g} us)\n"
    )
    print("Bytes per step per GPU (float32; torch/TF algorithm)\n")
    print(bytes_table() + "\n")
    print("Communication per step (ms)\n")
    print(communication_table() + "\n")
    print("Predictions (weak scaling, paper per-GPU batch)\n")
    print(prediction_table() + "\n")
    print("The same with a fixed 10 ms per step (framework overhead, assumed)\n")
    print(prediction_table(mfus=(0.1,), overhead_s=0.010) + "\n")
    print("Input pipeline need\n")
    print(input_table())
    if args.check:
        with open(args.check) as f:
            result = json.load(f)
        print("\nLocalhost check\n")
        print(check_table(check_localhost(result, args.cores)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
