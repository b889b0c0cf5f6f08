"""Run folders that never mix or lose results: a manifest checked before work.

Every CLI command that writes into `--output` first describes its run in a
manifest (the command, every setting, the data with a fingerprint of its
records, package versions). The manifest decides what happens to a folder
that already exists:

- same settings and data, unfinished run: resume (pretraining picks up its
  step checkpoint) or redo;
- same settings and data, finished run: refused unless `--overwrite`;
- anything different: refused with one message naming every difference,
  unless `--overwrite` (which deletes the earlier run first);
- a non-empty folder without a manifest is never touched.

Nothing is created or deleted before `RunFolder.check` has passed, so a run
refused for bad input leaves the disk as it was.
"""

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil

import numpy as np

MANIFEST = "manifest.json"
_VERSIONED = ("keras-ecg", "keras", "tensorflow-cpu", "tensorflow", "jax", "torch")


class RunFolderError(Exception):
    """The output folder holds a run this one must not resume or overwrite."""


def dataset_fingerprint(data):
    """A BLAKE2b digest of the records: ids, rate, leads, signals and labels.

    Two loads of the same records give the same fingerprint; any change of a
    sample, a label, the rate or the lead order changes it.

    Args:
        data: an `ECGDataset`.

    Returns:
        A 32-character hex string.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(
        json.dumps(
            [
                [str(r) for r in data.record_ids],
                float(data.sampling_rate),
                list(data.lead_names),
                list(data.classes),
            ]
        ).encode()
    )
    for signal in data.signals:
        signal = np.ascontiguousarray(signal, dtype=np.float32)
        digest.update(np.asarray(signal.shape, dtype=np.int64).tobytes())
        digest.update(signal.tobytes())
    if data.labels is not None:
        digest.update(np.ascontiguousarray(data.labels, dtype=np.float32).tobytes())
    return digest.hexdigest()


def package_versions():
    """Versions of keras-ecg and of the frameworks it runs on (if installed)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _differences(old, new, prefix=""):
    """`["key: old -> new", ...]` for every differing leaf of two dicts."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


class RunFolder:
    """The output folder of one CLI run and its manifest.

    Args:
        path: the folder.
        command: the CLI command (`"pretrain"`, `"finetune"`, ...).
        settings: a JSON-able dict of every setting that changes the result.
        data: a JSON-able description of the input data (path, fingerprint,
            number of records, sampling rate, ...).
        overwrite: delete an earlier run in `path` instead of refusing.

    Example:

    ```python
    folder = RunFolder("runs/simclr", "pretrain", settings, data_info)
    state = folder.check()  # "new" or "resume"; raises RunFolderError
    folder.create()
    ...
    folder.finish(results)
    ```
    """

    def __init__(self, path, command, settings, data, overwrite=False):
        self.path = str(path)
        self.command = command
        self.settings = json.loads(json.dumps(settings, default=str))
        self.data = json.loads(json.dumps(data, default=str))
        self.overwrite = bool(overwrite)
        self.state = None
        # Set by `create`: whether this run made the folder (a new run, not a
        # resumed one) and whether it existed (empty) before.
        self.created = False
        self.existed = None

    @property
    def manifest_path(self):
        return os.path.join(self.path, MANIFEST)

    @property
    def results_path(self):
        return os.path.join(self.path, f"{self.command}_results.json")

    def identity(self):
        """What must match for a run to be resumed: command, settings, data."""
        return {"command": self.command, "settings": self.settings, "data": self.data}

    def check(self):
        """Decides what to do with `path`, changing nothing on disk.

        Returns:
            `"new"` (empty or absent folder, or an earlier run to be deleted
            with `overwrite`) or `"resume"` (the same run, unfinished).

        Raises:
            RunFolderError: the folder holds another or a finished run (without
                `overwrite`), or is not a keras-ecg run folder.
        """
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunFolderError(f"--output {self.path} exists and is not a folder.")
        if not os.path.isdir(self.path) or not os.listdir(self.path):
            self.state = "new"
            return self.state
        if not os.path.exists(self.manifest_path):
            raise RunFolderError(
                f"--output {self.path} is not empty and holds no {MANIFEST}: it is "
                "not a keras-ecg run folder, and nothing in it is touched. Choose "
                "a new or empty folder."
            )
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                previous = json.load(f)
        except (OSError, ValueError) as error:
            raise RunFolderError(
                f"{self.manifest_path} is unreadable ({error}); remove the folder "
                "or choose another --output."
            ) from error
        if self.overwrite:
            self.state = "new"
            return self.state
        old = {key: previous.get(key) for key in ("command", "settings", "data")}
        differences = _differences(old, self.identity())
        if differences:
            listed = "\n  ".join(differences)
            raise RunFolderError(
                f"--output {self.path} holds a different run "
                f"({previous.get('command')}, {previous.get('status')}); "
                f"differences:\n  {listed}\nChoose another --output, or pass "
                "--overwrite to delete the earlier run."
            )
        if previous.get("status") == "finished":
            raise RunFolderError(
                f"--output {self.path} already holds this finished run "
                f"({os.path.basename(self.results_path)}); pass --overwrite to "
                "run it again."
            )
        self.state = "resume"
        return self.state

    def create(self):
        """Creates the folder (deleting an earlier run when overwriting) and
        writes the manifest with status "running"."""
        if self.state is None:
            self.check()
        if self.state == "new" and os.path.exists(self.manifest_path):
            shutil.rmtree(self.path)
        self.existed = os.path.isdir(self.path)
        os.makedirs(self.path, exist_ok=True)
        self.created = self.state == "new"
        self._write("running")
        return self

    def holds_checkpoint(self):
        """Whether the folder holds a resumable step checkpoint (`backup/`)."""
        from keras_ecg.callbacks import StepCheckpoint

        backup = os.path.join(self.path, "backup")
        return (
            os.path.isdir(backup) and StepCheckpoint(backup).read_metadata() is not None
        )

    def discard(self):
        """After a failed run: removes the folder this run created (leaving an
        empty folder that existed before as it was), unless it holds a
        resumable checkpoint, which the same command resumes. A resumed run's
        folder is kept."""
        if not self.created or not os.path.isdir(self.path):
            return
        if self.holds_checkpoint():
            print(
                f"{self.path} is kept: it holds a resumable checkpoint (the same "
                "command resumes it)",
                flush=True,
            )
            return
        shutil.rmtree(self.path, ignore_errors=True)
        if self.existed:
            os.makedirs(self.path, exist_ok=True)
        self.created = False

    def finish(self, results):
        """Writes `<command>_results.json` and marks the manifest finished."""
        payload = {**self.identity(), "versions": package_versions(), **results}
        with open(self.results_path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, default=_json_default)
        self._write("finished")
        return self.results_path

    def _write(self, status):
        manifest = {
            **self.identity(),
            "status": status,
            "versions": package_versions(),
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, default=str)
        os.replace(tmp, self.manifest_path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
