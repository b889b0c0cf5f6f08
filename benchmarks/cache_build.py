"""Signal-cache build of synthetic WFDB folders: peak RSS, records/s, input samples/s.

Writes N synthetic 10 s 12-lead records at 500 Hz as WFDB files (format 16,
one `.dat` per record, as PTB-XL's `records500`) into `--workdir` (outside the
repository), then, for each size, in a FRESH Python process:

1. imports Keras and keras_ecg and records the resident memory of that bare
   interpreter + framework import (the baseline);
2. builds the cache with `load_wfdb_folder(..., sampling_rate=500,
   cache_dir=...)` and records the wall time (records/s) and the process's
   peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`), and the peak proportional
   set size (PSS, sampled every 0.5 s) of the process with its decoding
   worker processes, which is what the whole build holds in memory;
3. loads the cached dataset again (time of a hit);
4. fits the per-lead standardiser on it and builds the pretraining input
   `make_pretraining_dataset` (two 2.5 s = 1250-sample views per record,
   batch 256, standardised in the pipeline), runs it and records samples/s,
   crops only and with the paper's `rrc_to` augmentation, then the peak RSS of
   the whole run.

With `--old-tree DIR` (a checkout of an older keras-ecg, e.g.
`git archive 911475b keras_ecg | tar -x -C /tmp/keras_ecg_old`) the same
child runs the old code path too: `load_wfdb_folder(cache_dir=...)`, then
what the CLI did, `LeadStandardizer.transform` (a standardised in-RAM copy)
and `make_pretraining_dataset` on the copy (a `tf.Variable` copy), for the
`--old-sizes`.

Usage:
    KERAS_BACKEND=tensorflow python benchmarks/cache_build.py \
        --sizes 1000 5000 20000 --old-tree /tmp/keras_ecg_old --old-sizes 1000 5000
"""

import argparse
import json
import os
import pathlib
import platform
import resource
import shutil
import subprocess
import sys
import time

from machine import cpu_name
from machine import usable_cores

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SAMPLING_RATE = 500
NUM_SAMPLES = 5000  # 10 s at 500 Hz
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
CROP_SECONDS = 2.5
NUM_TEMPLATES = 32


# ----------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------


def write_wfdb(folder, name, signal_mv):
    """One format-16 WFDB record (`name.hea` + `name.dat`), gain 1000/mV."""
    import numpy as np

    digital = np.round(signal_mv * 1000.0).astype("<i2")
    digital.tofile(folder / f"{name}.dat")
    checksums = digital.astype(np.int64).sum(axis=0)
    # WFDB checksums are the 16-bit two's complement sum of the samples.
    checksums = ((checksums + 32768) % 65536) - 32768
    lines = [f"{name} {digital.shape[1]} {SAMPLING_RATE} {digital.shape[0]}"]
    for lead, first, checksum in zip(LEADS, digital[0], checksums, strict=True):
        lines.append(
            f"{name}.dat 16 1000(0)/mV 16 0 {int(first)} {int(checksum)} 0 {lead}"
        )
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")


def make_records(workdir, num_records):
    """`workdir/records` with `num_records` records (reused across runs)."""
    import numpy as np

    folder = workdir / "records"
    folder.mkdir(parents=True, exist_ok=True)
    existing = len(list(folder.glob("*.hea")))
    if existing >= num_records:
        return folder
    from keras_ecg.data.synthetic import make_synthetic_ecg

    templates = make_synthetic_ecg(
        num_records=NUM_TEMPLATES, sampling_rate=SAMPLING_RATE, seed=0
    ).signals
    start = time.perf_counter()
    for i in range(existing, num_records):
        # Distinct files from a few templates: a template shifted in time.
        signal = np.roll(templates[i % NUM_TEMPLATES], i // NUM_TEMPLATES, axis=0)
        write_wfdb(folder, f"r{i:06d}", signal)
    print(
        f"wrote {num_records - existing} WFDB records to {folder} in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return folder


def size_folder(workdir, records, num_records):
    """`workdir/n<N>`: symbolic links to the first `num_records` records."""
    folder = workdir / f"n{num_records}"
    if folder.is_dir() and len(list(folder.glob("*.hea"))) == num_records:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i in range(num_records):
        for suffix in (".hea", ".dat"):
            name = f"r{i:06d}{suffix}"
            os.symlink(records / name, folder / name)
    return folder


# ----------------------------------------------------------------------------
# The measuring child process
# ----------------------------------------------------------------------------


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _tree_pss(pid):
    """Proportional set size (bytes) of `pid` and its descendants.

    PSS splits the pages a forked worker shares with its parent between them,
    so the sum is the memory the process tree really holds (RSS would count
    the shared framework pages once per worker).
    """
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return total
    return total + sum(_tree_pss(child) for child in children)


class _PssSampler:
    """Samples the process tree's PSS every `interval` s in a thread; `peak`."""

    def __init__(self, interval=0.5):
        import threading

        self.interval = interval
        self.peak = _tree_pss(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _tree_pss(os.getpid()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_pss(os.getpid()))


def _time_pipeline(ds, batches):
    iterator = iter(ds)
    for _ in range(2):  # warm-up: tracing, first reads
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return time.perf_counter() - start


def child(args):
    import warnings

    import keras

    import keras_ecg.data  # noqa: F401  (the framework import the baseline counts)
    from keras_ecg.data.lead_standardizer import LeadStandardizer
    from keras_ecg.data.pipelines import make_pretraining_dataset
    from keras_ecg.data.wfdb_folder import load_wfdb_folder
    from keras_ecg.layers.augmentation.presets import paper_augmentations

    result = {"mode": args.child, "backend": keras.backend.backend()}
    result["baseline_rss"] = _rss_bytes()
    result["baseline_pss"] = _tree_pss(os.getpid())
    load_options = {"sampling_rate": SAMPLING_RATE, "cache_dir": args.cache_dir}
    if args.child == "new":
        load_options["workers"] = args.workers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _PssSampler() as sampler:
            start = time.perf_counter()
            data = load_wfdb_folder(args.folder, **load_options)
            result["build_s"] = time.perf_counter() - start
        result["build_peak_rss"] = _peak_bytes()
        result["build_peak_tree_pss"] = sampler.peak
        result["records"] = len(data)
        del data
        start = time.perf_counter()
        data = load_wfdb_folder(args.folder, **load_options)
        result["reload_s"] = time.perf_counter() - start

    start = time.perf_counter()
    standardizer = LeadStandardizer().fit(data)
    result["fit_s"] = time.perf_counter() - start
    crop = int(round(CROP_SECONDS * SAMPLING_RATE))
    augmentation = paper_augmentations("rrc_to", sampling_rate=SAMPLING_RATE, seed=0)
    for name, aug in (("crops", None), ("rrc_to", augmentation)):
        options = dict(
            crop_length=crop,
            num_views=2,
            augmentation=aug,
            batch_size=args.batch_size,
            repeat=True,
        )
        if args.child == "new":
            ds = make_pretraining_dataset(data, standardizer=standardizer, **options)
        else:  # what the CLI did: a standardised copy, then the pipeline
            ds = make_pretraining_dataset(standardizer.transform(data), **options)
        seconds = _time_pipeline(ds, args.batches)
        result[f"samples_per_s_{name}"] = args.batches * args.batch_size / seconds
        del ds
    result["total_peak_rss"] = _peak_bytes()
    with open(args.json, "w") as f:
        json.dump(result, f)


def run_child(mode, folder, cache_dir, args, pythonpath):
    out = pathlib.Path(args.workdir) / f"result_{mode}_{folder.name}.json"
    command = [sys.executable, os.path.abspath(__file__), "--child", mode]
    command += ["--folder", str(folder), "--cache-dir", str(cache_dir)]
    command += ["--json", str(out), "--workers", str(args.workers)]
    command += ["--batches", str(args.batches), "--batch-size", str(args.batch_size)]
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    subprocess.run(command, env=env, check=True)
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------


def _gb(value):
    return f"{value / 1e9:.2f}"


def report(rows):
    print(
        "| code | records | build s | records/s | baseline RSS GB | build peak RSS "
        "GB | above baseline GB | build peak PSS with workers, above baseline GB | "
        "reload s | fit s | input samples/s crops | input samples/s rrc_to | "
        "run peak RSS GB | load average before, after |"
    )
    print("|" + "---|" * 14)
    for r in rows:
        print(
            f"| {r['mode']} | {r['records']} | {r['build_s']:.1f} | "
            f"{r['records'] / r['build_s']:.0f} | {_gb(r['baseline_rss'])} | "
            f"{_gb(r['build_peak_rss'])} | "
            f"{_gb(r['build_peak_rss'] - r['baseline_rss'])} | "
            f"{_gb(r['build_peak_tree_pss'] - r['baseline_pss'])} | "
            f"{r['reload_s']:.2f} | "
            f"{r['fit_s']:.1f} | {r['samples_per_s_crops']:.0f} | "
            f"{r['samples_per_s_rrc_to']:.0f} | {_gb(r['total_peak_rss'])} | "
            f"{r['load_average'][0]:.1f}, {r['load_average'][1]:.1f} |",
            flush=True,
        )


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode, marker in (("new", "o"), ("old", "s")):
        mine = sorted(
            (r for r in rows if r["mode"] == mode), key=lambda r: r["records"]
        )
        if not mine:
            continue
        n = [r["records"] for r in mine]
        label = "streaming cache (this version)" if mode == "new" else "old path"
        axes[0].plot(
            n,
            [(r["build_peak_rss"] - r["baseline_rss"]) / 1e9 for r in mine],
            marker=marker,
            label=f"{label}: cache build",
        )
        axes[0].plot(
            n,
            [(r["total_peak_rss"] - r["baseline_rss"]) / 1e9 for r in mine],
            marker=marker,
            linestyle="--",
            label=f"{label}: + standardise + input pipeline",
        )
        axes[1].plot(
            n, [r["records"] / r["build_s"] for r in mine], marker=marker, label=label
        )
    axes[0].axhline(1.5, color="grey", linestyle=":", label="target: 1.5 GB")
    axes[0].set_xlabel("records (10 s, 12 leads, 500 Hz)")
    axes[0].set_ylabel("peak RSS above the import baseline (GB)")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("records (10 s, 12 leads, 500 Hz)")
    axes[1].set_ylabel("cache build records/s")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--old-sizes", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument(
        "--old-tree", default=None, help="folder holding an older keras_ecg package"
    )
    parser.add_argument(
        "--workdir",
        default="/tmp/keras_ecg_cache_bench",
        help="records and caches go here (outside the repository)",
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--plot", default=None, help="PNG path for the plot")
    parser.add_argument("--child", choices=("new", "old"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0

    from keras_ecg.data.signal_cache import default_workers

    args.workers = args.workers or default_workers()
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    print(
        f"machine: {cpu_name()}, {usable_cores()} usable cores "
        f"({os.cpu_count()} logical), {platform.system()} {platform.machine()}, "
        f"python {platform.python_version()}"
    )
    print(
        f"backend: {os.environ.get('KERAS_BACKEND', 'tensorflow')}; data: synthetic "
        f"WFDB records, {NUM_SAMPLES / SAMPLING_RATE:g} s x {len(LEADS)} leads at "
        f"{SAMPLING_RATE} Hz, format 16, in {workdir} ({free / 1e9:.0f} GB free)"
    )
    print(
        f"settings: {args.workers} decoding worker process(es); input pipeline: "
        f"2 views of {CROP_SECONDS:g} s ({int(CROP_SECONDS * SAMPLING_RATE)} "
        f"samples), batch {args.batch_size}, {args.batches} timed batches after 2 "
        "warm-up batches; each size in a fresh process"
    )
    records = make_records(workdir, max(args.sizes + (args.old_sizes or [0])))
    rows = []
    runs = [("new", n, PROJECT_ROOT) for n in args.sizes]
    if args.old_tree:
        runs += [("old", n, pathlib.Path(args.old_tree)) for n in args.old_sizes]
    for mode, num_records, tree in runs:
        folder = size_folder(workdir, records, num_records)
        cache_dir = workdir / f"cache_{mode}_{num_records}"
        shutil.rmtree(cache_dir, ignore_errors=True)
        load_before = os.getloadavg()[0]
        rows.append(run_child(mode, folder, cache_dir, args, tree))
        rows[-1]["load_average"] = [load_before, os.getloadavg()[0]]
        print(f"{mode} {num_records}: {json.dumps(rows[-1])}", flush=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
        report(rows[-1:])
    print()
    report(rows)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
