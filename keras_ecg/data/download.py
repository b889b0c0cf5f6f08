"""PTB-XL and CinC 2021 from PhysioNet: resumable, verified against SHA256SUMS.txt.

`keras-ecg download ptbxl|cinc2021 --output DIR` (and `download_dataset`)
fetch a dataset file by file with wfdb's PhysioNet downloader
(`wfdb.io.download.dl_pn_file`, the worker that `wfdb.dl_database` and
`wfdb.dl_files` map over), into the layout PhysioNet publishes, so that the
folder is `--data DIR` / `load_ptbxl(DIR)` / `load_wfdb_folder(DIR)` as is.

Why the per-file worker and not `dl_database` / `dl_files` themselves: both
first ask `https://physionet.org/content/<slug>/` (a fixed address, not
`wfdb.io.download.config.db_index_url`) for the latest version, so they cannot
be pointed at a mirror or a pinned version; `dl_database` also reads every
record header remotely once more to learn its signal files and skips
non-record files; neither verifies anything. The published `SHA256SUMS.txt`
lists every file of a version with its checksum, so it is the file list here.

Nothing is imported from Keras or a framework: the command trains nothing.
"""

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import os
import pathlib
import posixpath
import re
import shutil
import sys
import tempfile
import time
import urllib.parse

from keras_ecg.data.progress import ReadProgress

# Overrides wfdb's default PhysioNet address (`--base-url` overrides both).
BASE_URL_ENV = "KERAS_ECG_PHYSIONET_URL"
CHECKSUMS_FILE = "SHA256SUMS.txt"
# wfdb's session holds at most 2 connections (as `dl_database` uses 2
# threads, "to avoid overloading the server"); more workers would only wait.
DEFAULT_WORKERS = 2
_CHUNK = 1 << 20
_CHECKSUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


class DownloadError(Exception):
    """A download that cannot go on, in one line (the CLI exits with code 2)."""


@dataclasses.dataclass(frozen=True)
class PhysioNetDataset:
    """A PhysioNet dataset version that `download_dataset` can fetch.

    Args:
        name: the command-line name, e.g. `"ptbxl"`.
        title: the human name, e.g. `"PTB-XL"`.
        slug: PhysioNet's project slug, e.g. `"ptb-xl"`.
        version: the pinned version, e.g. `"1.0.3"`.
        rate_folders: sampling rate (Hz) -> top-level folder holding the
            records at that rate; empty where the dataset has one set of
            files.
        anchors: top-level names that identify the dataset in a folder.
    """

    name: str
    title: str
    slug: str
    version: str
    rate_folders: dict
    anchors: tuple

    @property
    def path(self):
        """`<slug>/<version>`, the dataset's folder under the base URL."""
        return f"{self.slug}/{self.version}"


DATASETS = {
    "ptbxl": PhysioNetDataset(
        name="ptbxl",
        title="PTB-XL",
        slug="ptb-xl",
        version="1.0.3",
        rate_folders={100: "records100", 500: "records500"},
        anchors=("ptbxl_database.csv", "records100", "records500"),
    ),
    "cinc2021": PhysioNetDataset(
        name="cinc2021",
        title="PhysioNet/CinC Challenge 2021",
        slug="challenge-2021",
        version="1.0.3",
        rate_folders={},
        anchors=("training",),
    ),
}


@dataclasses.dataclass(frozen=True)
class DownloadResult:
    """What `download_dataset` did.

    Args:
        dataset: the `PhysioNetDataset`.
        path: the absolute output folder.
        url: the dataset's address (`<base URL>/<slug>/<version>/`).
        files: files verified against `SHA256SUMS.txt` (not counting it).
        records: WFDB records among them (one `.hea` each).
        downloaded: files fetched whole.
        continued: partial local files completed with a range request.
        redownloaded: files fetched again after a checksum mismatch.
        present: files already complete and verified, not requested.
        bytes_fetched: bytes written from the network.
        seconds: wall time.
    """

    dataset: PhysioNetDataset
    path: str
    url: str
    files: int
    records: int
    downloaded: int
    continued: int
    redownloaded: int
    present: int
    bytes_fetched: int
    seconds: float


def download_dataset(
    name,
    output_dir,
    sampling_rate=None,
    base_url=None,
    progress=True,
    workers=DEFAULT_WORKERS,
):
    """Downloads PTB-XL 1.0.3 or CinC 2021 1.0.3 into `output_dir`, verified.

    The folder gets the files exactly as PhysioNet publishes them under
    `<base URL>/<slug>/<version>/`:

    - `ptbxl` (`ptb-xl/1.0.3`, 21,799 records): `ptbxl_database.csv`,
      `scp_statements.csv`, `RECORDS`, `SHA256SUMS.txt`, `LICENSE.txt`,
      `example_physionet.py`, `records100/<NN>000/<ecg_id:05d>_lr.{hea,dat}`
      (100 Hz) and `records500/<NN>000/<ecg_id:05d>_hr.{hea,dat}` (500 Hz),
      as `ptbxl_database.csv`'s `filename_lr` / `filename_hr` name them.
      `sampling_rate=100` (or 500) skips the other rate's folder.
    - `cinc2021` (`challenge-2021/1.0.3`):
      `training/<source>/<group>/<record>.{hea,mat}` for the sources
      `chapman_shaoxing`, `cpsc_2018`, `cpsc_2018_extra`, `georgia`,
      `ningbo`, `ptb`, `ptb-xl`, `st_petersburg_incart` (groups `g1`, `g2`,
      ...), their `RECORDS` files, and the top-level files. It has one set of
      files, at each source's own rate (500 Hz for most, 257 Hz INCART,
      1000 Hz PTB): `sampling_rate` must be `None`.

    The file list is the dataset's `SHA256SUMS.txt` (whatever it lists at the
    chosen rate is fetched; it is downloaded afresh each time). Every file is
    checked against it: a local file that matches is not requested again; a
    partial one is continued with an HTTP range request (wfdb's
    `overwrite=False`); a mismatch is downloaded once more from scratch and,
    still wrong, removed and reported. An interrupted download resumes by
    running the same call again.

    Args:
        name: `"ptbxl"` or `"cinc2021"` (see `DATASETS`).
        output_dir: the dataset folder (created if needed). It must be empty,
            new, or hold this dataset (an earlier, maybe partial, download);
            never another dataset.
        sampling_rate: PTB-XL only: 100 or 500 to fetch that rate's records
            (and the metadata); `None` fetches both.
        base_url: the server's index address standing for
            `https://physionet.org/files/` (wfdb's default), e.g. a mirror.
            `None` uses `$KERAS_ECG_PHYSIONET_URL`, else wfdb's default.
        progress: print a progress bar (a line every 10 s off a terminal)
            and a summary.
        workers: files fetched at once (wfdb's session allows 2 connections).

    Returns:
        A `DownloadResult`.

    Raises:
        DownloadError: unknown dataset, unsupported sampling rate, an output
            folder that cannot be written or holds another dataset, a network
            failure (naming the URL) or files that do not match
            `SHA256SUMS.txt` after a second download (naming them).

    Example:

    ```python
    from keras_ecg.data.download import download_dataset
    from keras_ecg.data import load_ptbxl

    download_dataset("ptbxl", "data/ptb-xl", sampling_rate=100)
    data = load_ptbxl("data/ptb-xl", sampling_rate=100)
    ```
    """
    start = time.monotonic()
    stream = sys.stdout
    dataset = _resolve_dataset(name)
    sampling_rate = _check_sampling_rate(dataset, sampling_rate)
    base_url = resolve_base_url(base_url)
    if int(workers) < 1:
        raise DownloadError(f"workers must be >= 1, got {workers}.")
    output = _prepare_output(dataset, output_dir)
    url = _join_url(base_url, dataset.path) + "/"
    with _wfdb_index_url(base_url):
        listing = _fetch_listing(dataset, base_url, output)
        selected = _select_files(dataset, listing, sampling_rate)
        if not selected:
            raise DownloadError(
                f"{url}{CHECKSUMS_FILE} lists no file of {dataset.title} "
                f"{_scope(dataset, sampling_rate)}."
            )
        if progress:
            records = sum(1 for f in selected if f.endswith(".hea"))
            print(
                f"{dataset.title} {dataset.version} "
                f"{_scope(dataset, sampling_rate)}: {len(selected)} files "
                f"({records} records) from {url} into {output}",
                file=stream,
                flush=True,
            )
        fetcher = _Fetcher(dataset, base_url, output)
        counts = _run(fetcher, selected, workers, progress, stream)
    result = DownloadResult(
        dataset=dataset,
        path=str(output),
        url=url,
        files=len(selected),
        records=sum(1 for f in selected if f.endswith(".hea")),
        seconds=time.monotonic() - start,
        **counts,
    )
    if progress:
        print(_summary(result, sampling_rate), file=stream, flush=True)
    return result


def resolve_base_url(base_url=None):
    """The index URL to use: `base_url`, `$KERAS_ECG_PHYSIONET_URL`, wfdb's.

    Raises:
        DownloadError: the URL is not http(s).
    """
    if not base_url:
        base_url = os.environ.get(BASE_URL_ENV) or None
    if not base_url:
        from wfdb.io import download

        base_url = download.PN_INDEX_URL
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DownloadError(
            f"base URL {base_url!r}: expected http(s)://host/path/ (the folder "
            "that holds <dataset>/<version>/, as https://physionet.org/files/)."
        )
    return base_url


def parse_checksums(text, source):
    """`{relative path: sha256 hex}` from `sha256sum` output.

    Args:
        text: the content of a `SHA256SUMS.txt`.
        source: where it came from, for messages.

    Raises:
        DownloadError: a line is not `<64 hex digits>  <path>`, or a path is
            absolute or climbs out of the dataset folder.
    """
    entries = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        match = _CHECKSUM_LINE.fullmatch(line)
        if match is None:
            raise DownloadError(
                f"{source} line {number} is not '<sha256>  <file>': {line[:80]!r} "
                "(is the base URL a PhysioNet file index?)"
            )
        digest, path = match.group(1).lower(), match.group(2)
        normal = posixpath.normpath(path)
        if (
            path.startswith("/")
            or "\\" in path
            or normal != path
            or normal.split("/")[0] in ("..", ".")
        ):
            raise DownloadError(
                f"{source} line {number}: unsafe file path {path!r} (not "
                "relative to the dataset folder)"
            )
        if path != CHECKSUMS_FILE:
            entries[path] = digest
    if not entries:
        raise DownloadError(f"{source} lists no files.")
    return entries


def sha256_file(path):
    """The SHA-256 hex digest of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _resolve_dataset(name):
    dataset = DATASETS.get(str(name).lower())
    if dataset is None:
        raise DownloadError(
            f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}."
        )
    return dataset


def _check_sampling_rate(dataset, sampling_rate):
    if sampling_rate is None:
        return None
    if not dataset.rate_folders:
        raise DownloadError(
            f"{dataset.name}: --sampling-rate does not apply: {dataset.title} is "
            "published as one set of files at each source's own rate (500 Hz "
            "for most, 257 Hz INCART, 1000 Hz PTB); the readers resample."
        )
    try:
        rate = int(sampling_rate)
    except (TypeError, ValueError):
        rate = None
    if rate not in dataset.rate_folders or rate != sampling_rate:
        rates = " or ".join(str(r) for r in dataset.rate_folders)
        raise DownloadError(
            f"{dataset.name}: --sampling-rate: unsupported sampling rate "
            f"{sampling_rate!r}: "
            f"{dataset.title} provides {rates} Hz."
        )
    return rate


def _scope(dataset, sampling_rate):
    if not dataset.rate_folders:
        return "(all files)"
    if sampling_rate is None:
        return f"({' + '.join(dataset.rate_folders.values())})"
    return f"({dataset.rate_folders[sampling_rate]} only)"


def _join_url(base_url, *parts):
    return posixpath.join(base_url, *parts)


def _visible_entries(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _prepare_output(dataset, output_dir):
    """The output folder, created and checked for writing and foreign data."""
    output = pathlib.Path(output_dir).expanduser().absolute()
    if output.exists() and not output.is_dir():
        raise DownloadError(f"output {output} exists and is not a folder.")
    if output.is_dir():
        for other in DATASETS.values():
            if other is dataset:
                continue
            found = [a for a in other.anchors if (output / a).exists()]
            if found:
                raise DownloadError(
                    f"output {output} holds {other.title} ({found[0]}), not "
                    f"{dataset.title}: choose another folder."
                )
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise DownloadError(
            f"output {output} is not writable: {error.strerror or error}."
        ) from error
    return output


@contextlib.contextmanager
def _wfdb_index_url(base_url):
    """Points wfdb's downloader at `base_url` for the block, then restores it.

    wfdb keeps it in one module-level setting, so two downloads to different
    servers must not run at once in one process.
    """
    from wfdb.io import download

    previous = download.config.db_index_url
    download.set_db_index_url(base_url)
    try:
        yield
    finally:
        download.set_db_index_url(previous)


def _network_errors():
    """The exceptions that mean the network or the server failed."""
    import requests
    from wfdb.io import _url  # wfdb raises its NetFileError for HTTP errors

    return (requests.RequestException, _url.NetFileError)


def _reason(error):
    """A short one-line reason for a network error."""
    status = getattr(error, "status_code", None)
    if status:
        return f"HTTP {status}"
    text = " ".join(str(error).split())
    errno_match = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno_match:
        return errno_match.group(0).strip()
    if "IncompleteRead" in text or "Connection broken" in text:
        return "the connection broke mid-file"
    return f"{type(error).__name__}: {text[:200]}"


def _fetch_listing(dataset, base_url, output):
    """Downloads and parses `SHA256SUMS.txt`, then checks `output` against it.

    It is fetched into a temporary folder first, so a folder that turns out
    to hold something else is left untouched.
    """
    url = _join_url(base_url, dataset.path, CHECKSUMS_FILE)
    with tempfile.TemporaryDirectory(prefix="keras-ecg-download-") as scratch:
        _call_wfdb(dataset, scratch, CHECKSUMS_FILE, overwrite=True, url=url)
        fetched = pathlib.Path(scratch) / CHECKSUMS_FILE
        text = fetched.read_text(encoding="utf-8", errors="replace")
        listing = parse_checksums(text, url)
        _check_output_contents(dataset, output, listing)
        try:
            shutil.copyfile(fetched, output / CHECKSUMS_FILE)
        except OSError as error:
            raise DownloadError(
                f"cannot write {output / CHECKSUMS_FILE}: {error.strerror or error}."
            ) from error
    return listing


def _check_output_contents(dataset, output, listing):
    """Refuses a folder that holds another dataset or unrelated files."""
    local_sums = output / CHECKSUMS_FILE
    if local_sums.is_file():
        text = local_sums.read_text(encoding="utf-8", errors="replace")
        paths = set()
        for line in text.splitlines():
            match = _CHECKSUM_LINE.fullmatch(line.rstrip("\r"))
            if match:
                paths.add(match.group(2))
        if paths and not paths & set(listing):
            raise DownloadError(
                f"output {output} holds another dataset: its {CHECKSUMS_FILE} "
                f"lists none of the files of {dataset.title} {dataset.version}; "
                "choose another folder."
            )
    entries = _visible_entries(output)
    expected = {path.split("/")[0] for path in listing} | {CHECKSUMS_FILE}
    if entries and not set(entries) & expected:
        raise DownloadError(
            f"output {output} is not empty and holds no {dataset.title} files "
            f"(it has {entries[0]!r}, ...): choose an empty or new folder, or "
            "the folder of an earlier download."
        )


def _select_files(dataset, listing, sampling_rate):
    """The listed files at `sampling_rate`: metadata first, then records."""
    skipped = {
        folder
        for rate, folder in dataset.rate_folders.items()
        if sampling_rate is not None and rate != sampling_rate
    }
    selected = {p: d for p, d in listing.items() if p.split("/")[0] not in skipped}
    stems = {p[: -len(".hea")] for p in selected if p.endswith(".hea")}
    in_record = {p: posixpath.splitext(p)[0] in stems for p in selected}
    order = sorted(selected, key=lambda p: (in_record[p], p))
    return {p: selected[p] for p in order}


def _call_wfdb(dataset, dl_dir, path, overwrite, url):
    """`wfdb.io.download.dl_pn_file` for one file, errors made one line.

    With `overwrite=False` wfdb fetches a missing file whole, leaves a file of
    the remote size alone, continues a shorter one from its end with an HTTP
    `Range` request and fetches a longer one again; `overwrite=True` always
    fetches it whole.
    """
    from wfdb.io import download

    subdir, basefile = posixpath.split(path)
    local = os.path.join(dl_dir, *path.split("/"))
    try:
        download.dl_pn_file(
            (basefile, subdir, dataset.path, str(dl_dir), True, overwrite)
        )
    except _network_errors() as error:
        raise DownloadError(
            f"network failure: cannot download {url} ({_reason(error)})."
        ) from error
    except OSError as error:
        raise DownloadError(
            f"cannot write {local}: {error.strerror or error}."
        ) from error


@dataclasses.dataclass
class _Outcome:
    path: str
    status: str  # present, downloaded, continued, redownloaded, mismatch
    fetched: int
    detail: str = ""


class _Fetcher:
    """Brings one listed file to its published checksum (runs in a thread)."""

    def __init__(self, dataset, base_url, output):
        self.dataset = dataset
        self.base_url = base_url
        self.output = output

    def __call__(self, path, digest):
        local = self.output.joinpath(*path.split("/"))
        url = _join_url(self.base_url, self.dataset.path, path)
        size = local.stat().st_size if local.is_file() else None
        if size is not None and sha256_file(local) == digest:
            return _Outcome(path, "present", 0)
        local.parent.mkdir(parents=True, exist_ok=True)
        # First try: wfdb's resume (continues a partial file, fetches a
        # missing one); second: a fresh copy. A mismatch after it is reported.
        _call_wfdb(self.dataset, self.output, path, overwrite=False, url=url)
        after = local.stat().st_size
        fetched = _bytes_written(size, after)
        got = sha256_file(local)
        if got == digest:
            status = "downloaded" if size is None or size > after else "continued"
            return _Outcome(path, status, fetched)
        _call_wfdb(self.dataset, self.output, path, overwrite=True, url=url)
        fetched += local.stat().st_size
        got = sha256_file(local)
        if got == digest:
            return _Outcome(path, "redownloaded", fetched)
        local.unlink()
        return _Outcome(
            path, "mismatch", fetched, f"SHA-256 {got[:12]}... != {digest[:12]}..."
        )


def _bytes_written(before, after):
    """Bytes wfdb wrote, from the sizes before and after `dl_pn_file`."""
    if before is None or before > after:
        return after  # fetched whole
    return after - before  # appended (0: a complete-size file left alone)


def _run(fetcher, selected, workers, progress, stream):
    """Fetches `selected` on `workers` threads; counts of each outcome."""
    counts = dict.fromkeys(
        ("downloaded", "continued", "redownloaded", "present", "bytes_fetched"), 0
    )
    stems = {p[: -len(".hea")] for p in selected if p.endswith(".hea")}
    remaining = {}
    for path in selected:
        stem = posixpath.splitext(path)[0]
        if stem in stems:
            remaining[stem] = remaining.get(stem, 0) + 1
    records_done = 0
    mismatches = []
    bar = ReadProgress(
        len(selected),
        "downloading",
        enabled=progress,
        stream=stream,
        unit="files",
    )
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=int(workers))
    futures = []
    try:
        # wfdb prints a line per partial file; the summary counts them instead.
        with contextlib.redirect_stdout(io.StringIO()):
            futures = [executor.submit(fetcher, p, d) for p, d in selected.items()]
            for future in concurrent.futures.as_completed(futures):
                outcome = future.result()
                if outcome.status == "mismatch":
                    mismatches.append(outcome)
                else:
                    counts[outcome.status] += 1
                counts["bytes_fetched"] += outcome.fetched
                stem = posixpath.splitext(outcome.path)[0]
                if stem in remaining:
                    remaining[stem] -= 1
                    records_done += remaining[stem] == 0
                bar.update(
                    detail=f", {records_done}/{len(stems)} records, "
                    f"{_megabytes(counts['bytes_fetched'])} fetched"
                )
    except BaseException as error:
        executor.shutdown(wait=True, cancel_futures=True)
        bar.close()
        if isinstance(error, DownloadError):
            # Files in flight when the error came are finished by now.
            verified = sum(
                1
                for f in futures
                if f.done()
                and not f.cancelled()
                and f.exception() is None
                and f.result().status != "mismatch"
            )
            raise DownloadError(
                f"{error} {verified} verified file(s) are kept: run the same "
                "command again to resume."
            ) from error
        raise
    executor.shutdown(wait=True)
    bar.close()
    if mismatches:
        first = sorted(mismatches, key=lambda m: m.path)[:3]
        names = ", ".join(f"{m.path} ({m.detail})" for m in first)
        more = f" and {len(mismatches) - 3} more" if len(mismatches) > 3 else ""
        raise DownloadError(
            f"{len(mismatches)} file(s) do not match {CHECKSUMS_FILE} after a "
            f"second download, removed: {names}{more}; the other "
            f"{len(selected) - len(mismatches)} files are verified."
        )
    return counts


def _megabytes(count):
    return f"{count / 1e6:.1f} MB"


def _summary(result, sampling_rate):
    scope = _scope(result.dataset, sampling_rate)
    seconds = f"{result.seconds:.1f} s"
    return (
        f"verified {result.files} files ({result.records} records) of "
        f"{result.dataset.title} {result.dataset.version} {scope} against "
        f"{CHECKSUMS_FILE} in {result.path}: {result.downloaded} downloaded, "
        f"{result.continued} continued, {result.redownloaded} re-downloaded, "
        f"{result.present} already present; {_megabytes(result.bytes_fetched)} "
        f"fetched in {seconds}.\nuse it with: --data {result.path}"
    )
