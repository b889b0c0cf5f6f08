"""The signal cache built by two real processes at once (issue 22, part 3).

Each test starts two Python processes that load the same data into the same
cache folder at the same moment (they wait for each other before loading), as
the processes of a multi-process training job do. Every decode call is logged
with the process's id, so the tests can count how often each record was
decoded across the processes.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_ecg.testing.test_case import subprocess_env

pytestmark = pytest.mark.backend_agnostic

NUM_RECORDS = 40
CHUNK = 3

# Runs in each process: argv = index, folder of the test, what to load.
_CHILD = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    index, folder, mode = int(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    from keras_ecg.data import record_stream, signal_cache, wfdb_folder

    log = open(folder / f"decoded-{index}.log", "a", buffering=1)

    # Start together: each process waits for the other to be ready.
    (folder / f"ready-{index}").touch()
    while not all((folder / f"ready-{i}").exists() for i in (0, 1)):
        time.sleep(0.01)

    if mode == "tasks":
        import numpy as np

        if os.environ.get("FAIL_AFTER_CHUNKS"):
            signal_cache.SignalCache.fail_after_chunks = int(
                os.environ["FAIL_AFTER_CHUNKS"]
            )

        def decode(task):
            log.write(f"{task}\\n")
            time.sleep(0.05)  # the processes' decoding overlaps
            return np.full((task + 1, 2), task, dtype=np.float32), task

        def keep(task, value, counts):
            return f"r{task}", value[0], {"n": value[1]}

        result = record_stream.read_records(
            list(range(int(sys.argv[4]))),
            decode,
            keep,
            cache=signal_cache.SignalCache(folder / "cache"),
            key="k",
            workers=1,
            chunk_records=int(sys.argv[5]),
        )
        ids, total = result.record_ids, float(sum(s.sum() for s in result.signals))
    else:
        signal_cache.DEFAULT_CHUNK_RECORDS = int(sys.argv[4])
        real = wfdb_folder.read_wfdb_record

        def counting(*args, **kwargs):
            log.write(f"{args[1]}\\n")
            time.sleep(0.05)
            return real(*args, **kwargs)

        wfdb_folder.read_wfdb_record = counting
        data = wfdb_folder.load_wfdb_folder(
            folder / "records", sampling_rate=100, workers=1, classes=[]
        )
        ids, total = data.record_ids, float(sum(s.sum() for s in data.signals))
    print(json.dumps({"ids": ids, "total": total, "pid": os.getpid()}))
    """
)


def _start(tmp_path, index, *args, env=None):
    environment = subprocess_env(backend="numpy", **(env or {}))
    # Named `keras-ecg`, the child imports the data modules without Keras
    # (keras_ecg/__init__.py's `_started_as_cli`): seconds less per process.
    script = tmp_path / "keras-ecg"
    script.write_text(_CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), str(index), str(tmp_path), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _finish(process):
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def _decoded(tmp_path, index):
    path = tmp_path / f"decoded-{index}.log"
    return path.read_text().split() if path.exists() else []


def _result(out):
    return json.loads(out.strip().splitlines()[-1])


def test_two_processes_share_the_build_and_decode_each_record_once(tmp_path):
    processes = [_start(tmp_path, i, "tasks", NUM_RECORDS, CHUNK) for i in (0, 1)]
    results = []
    for process in processes:
        code, out, err = _finish(process)
        assert code == 0, err
        results.append(_result(out))
    expected = [f"r{t}" for t in range(NUM_RECORDS)]
    assert [r["ids"] for r in results] == [expected, expected]
    total = float(sum(t * (t + 1) * 2 for t in range(NUM_RECORDS)))
    assert [r["total"] for r in results] == [total, total]
    first, second = _decoded(tmp_path, 0), _decoded(tmp_path, 1)
    # Every record decoded exactly once, over both processes ...
    assert sorted(map(int, first + second)) == list(range(NUM_RECORDS))
    # ... and both processes decoded some of them, whole chunks each.
    assert first and second
    for decoded in (first, second):
        tasks = set(map(int, decoded))
        for chunk in {t // CHUNK for t in tasks}:
            start = chunk * CHUNK
            assert set(range(start, min(start + CHUNK, NUM_RECORDS))) <= tasks
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert names == ["k.json", "k.lock", "k.npy"]


def test_a_killed_process_leaves_its_chunks_to_the_other_and_the_next_run(
    tmp_path, monkeypatch
):
    # Process 0 stops (as if killed) after its first chunk, process 1 after
    # its second: the build is left partial, its finished chunks on disk.
    processes = [
        _start(
            tmp_path,
            i,
            "tasks",
            NUM_RECORDS,
            CHUNK,
            env={"FAIL_AFTER_CHUNKS": str(i + 1)},
        )  # fmt: skip
        for i in (0, 1)
    ]
    for process in processes:
        code, _, err = _finish(process)
        assert code != 0 and "KeyboardInterrupt" in err
    first, second = _decoded(tmp_path, 0), _decoded(tmp_path, 1)
    assert (len(first), len(second)) == (CHUNK, 2 * CHUNK)
    # The next run (here, this process) decodes only the rest.
    from keras_ecg.data.record_stream import read_records
    from keras_ecg.data.signal_cache import SignalCache

    resumed = []

    def decode(task):
        resumed.append(task)
        return np.full((task + 1, 2), task, dtype=np.float32), task

    result = read_records(
        list(range(NUM_RECORDS)),
        decode,
        lambda task, value, counts: (f"r{task}", value[0], {"n": value[1]}),
        cache=SignalCache(tmp_path / "cache"),
        key="k",
        workers=1,
        chunk_records=CHUNK,
    )
    assert result.record_ids == [f"r{t}" for t in range(NUM_RECORDS)]
    assert resumed == [t for t in range(NUM_RECORDS) if str(t) not in first + second]
    for t, signal in enumerate(result.signals):
        np.testing.assert_array_equal(signal, np.full((t + 1, 2), t))


def test_load_wfdb_folder_in_two_processes_into_the_default_cache(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    records = tmp_path / "records"
    records.mkdir()
    rng = np.random.default_rng(0)
    leads = ["I", "II", "III", "aVR", "aVL", "aVF"] + [f"V{i}" for i in range(1, 7)]
    for i in range(NUM_RECORDS):
        wfdb.wrsamp(
            f"r{i:02d}",
            fs=100,
            units=["mV"] * 12,
            sig_name=leads,
            p_signal=rng.normal(size=(100, 12)),
            fmt=["16"] * 12,
            adc_gain=[1000.0] * 12,
            baseline=[0] * 12,
            write_dir=str(records),
        )
    cache = tmp_path / "default-cache"
    processes = [
        _start(tmp_path, i, "folder", 4, env={"KERAS_ECG_CACHE_DIR": str(cache)})
        for i in (0, 1)
    ]
    results = []
    for process in processes:
        code, out, err = _finish(process)
        assert code == 0, err
        results.append(_result(out))
    expected = [f"r{i:02d}" for i in range(NUM_RECORDS)]
    assert [r["ids"] for r in results] == [expected, expected]
    assert results[0]["total"] == results[1]["total"]
    first, second = _decoded(tmp_path, 0), _decoded(tmp_path, 1)
    assert sorted(first + second) == expected
    assert first and second
    # The default cache folder ($KERAS_ECG_CACHE_DIR) holds the one entry.
    assert [p.suffix for p in sorted(cache.iterdir())] == [".json", ".lock", ".npy"]
