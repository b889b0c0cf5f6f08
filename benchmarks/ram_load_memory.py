"""Anonymous memory of loading WFDB records into RAM (no cache), per record.

Writes `--records` synthetic 12-lead WFDB records (`wfdb.wrsamp`, 16-bit) of
`--seconds` seconds at `--rate` Hz into a temporary folder, then, in a fresh
Python process per run, loads them with `load_wfdb_folder(cache_dir=False)`
(the signals decoded in RAM) and reads the process's anonymous memory
(`RssAnon` of /proc/self/status) before and after. The difference divided by
the number of records is compared with the float32 signal of one record
(`seconds * rate * 12 * 4` bytes, 240 kB for 10 s at 500 Hz). A last run
builds the default memory-mapped cache instead (in a temporary folder): its
signals are page cache of the file, not anonymous memory.

    python benchmarks/ram_load_memory.py --records 300 --seconds 10 --rate 500
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import gc, json, sys
from keras_ecg.data import signal_cache
from keras_ecg.data.wfdb_folder import load_wfdb_folder

def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

folder, warm = sys.argv[1], sys.argv[2]
rate, workers = int(sys.argv[3]), int(sys.argv[4])
# Before the default cache existed, None meant no cache.
no_cache = False if hasattr(signal_cache, "default_cache_dir") else None
if len(sys.argv) > 5:  # a cache folder: the build, then the memory map
    no_cache = sys.argv[5]
# Warm-up on 2 other records: imports, pools (not the measured records, whose
# freed memory the measured load would reuse).
load_wfdb_folder(warm, sampling_rate=rate, cache_dir=no_cache, workers=workers,
                 classes=[])
gc.collect()
before = anon()
data = load_wfdb_folder(folder, sampling_rate=rate, cache_dir=no_cache,
                        workers=workers, classes=[])
gc.collect()
after = anon()
signal_bytes = sum(s.nbytes for s in data.signals)
print(json.dumps({"records": len(data), "before": before, "after": after,
                  "signal_bytes": signal_bytes,
                  "dtype": str(data.signals[0].dtype)}))
"""


def write_records(folder, records, seconds, rate):
    import numpy as np
    import wfdb

    leads = ["I", "II", "III", "aVR", "aVL", "aVF"] + [f"V{i}" for i in range(1, 7)]
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    for i in range(records):
        signal = rng.normal(scale=0.5, size=(n, len(leads)))
        wfdb.wrsamp(
            f"r{i:05d}",
            fs=rate,
            units=["mV"] * len(leads),
            sig_name=leads,
            p_signal=signal,
            fmt=["16"] * len(leads),
            adc_gain=[1000.0] * len(leads),
            baseline=[0] * len(leads),
            write_dir=folder,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data, warm = os.path.join(folder, "data"), os.path.join(folder, "warm")
        os.makedirs(data)
        os.makedirs(warm)
        write_records(data, args.records, args.seconds, args.rate)
        write_records(warm, 2, args.seconds, args.rate)
        print(
            f"{args.records} records x {args.seconds:g} s x 12 leads at "
            f"{args.rate} Hz (float32 signal {args.seconds * args.rate * 48 / 1e3:.0f}"
            " kB per record)"
        )
        runs = [(workers, []) for workers in args.workers]
        runs.append((args.workers[-1], [os.path.join(folder, "cache")]))
        for workers, cache in runs:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, data, warm, str(args.rate), str(workers)]
                + cache,
                check=True,
                capture_output=True,
                text=True,
                env=dict(os.environ, KERAS_BACKEND="numpy"),
            ).stdout.splitlines()[-1]
            r = json.loads(out)
            grown = r["after"] - r["before"]
            per = grown / r["records"]
            signal = r["signal_bytes"] / r["records"]
            print(
                f"{'cache' if cache else 'in RAM'}, workers={workers}: "
                f"anonymous memory +{grown / 2**20:.1f} MiB "
                f"for {r['records']} records = {per / 1e3:.0f} kB per record, "
                f"{per / signal:.2f}x the {r['dtype']} signal ({signal / 1e3:.0f} kB)"
            )


if __name__ == "__main__":
    main()
