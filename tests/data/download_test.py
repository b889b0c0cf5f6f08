"""`keras-ecg download` against a loopback PhysioNet server built from real records.

The server (127.0.0.1, a free port, threads, stopped by each test) serves a
few PTB-XL and CinC 2021 records of ../shared/data in PhysioNet's layout, with
its own SHA256SUMS.txt, and answers HTTP Range requests, which
`http.server` does not. It logs every request, and can break a connection
mid-file or serve corrupted bytes. No external address is contacted and
nothing of the download is mocked.
"""

import hashlib
import http.server
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.parse

import numpy as np
import pandas as pd
import pytest
import wfdb

from keras_ecg import cli
from keras_ecg.data.download import BASE_URL_ENV
from keras_ecg.data.download import DownloadError
from keras_ecg.data.download import download_dataset
from keras_ecg.data.download import parse_checksums
from keras_ecg.data.sources import detect_source
from keras_ecg.data.sources import load_source
from keras_ecg.testing.test_case import subprocess_env

pytestmark = pytest.mark.backend_agnostic

PTBXL_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11)  # in records100 and records500
PTBXL_PATH = "ptb-xl/1.0.3"
CINC_PATH = "challenge-2021/1.0.3"
# Shared CinC records -> the Challenge 2021 source folder of their prefix.
CINC_RECORDS = {
    "A0689": "cpsc_2018",
    "A1041": "cpsc_2018",
    "E00271": "georgia",
    "HR03961": "ptb-xl",
    "JS01048": "chapman_shaoxing",
}


def _write_checksums(folder):
    """Writes SHA256SUMS.txt (sha256sum format) for every file of `folder`."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(folder).as_posix()}\n")
    (folder / "SHA256SUMS.txt").write_text("".join(lines))


def _copy(source, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


@pytest.fixture(scope="module")
def ptbxl_site(tmp_path_factory, ptbxl_dir):
    """A PhysioNet file index serving `ptb-xl/1.0.3` with 10 real records."""
    root = tmp_path_factory.mktemp("physionet")
    folder = root / PTBXL_PATH
    database = pd.read_csv(ptbxl_dir / "ptbxl_database.csv", index_col="ecg_id")
    database = database.loc[list(PTBXL_IDS)]
    folder.mkdir(parents=True)
    database.to_csv(folder / "ptbxl_database.csv")
    for name in ("scp_statements.csv", "LICENSE.txt"):
        _copy(ptbxl_dir / name, folder / name)
    stems = list(database["filename_lr"]) + list(database["filename_hr"])
    for stem in stems:
        for suffix in (".hea", ".dat"):
            _copy(ptbxl_dir / f"{stem}{suffix}", folder / f"{stem}{suffix}")
    (folder / "RECORDS").write_text("".join(f"{s}\n" for s in stems))
    _write_checksums(folder)
    return root


@pytest.fixture(scope="module")
def cinc_site(tmp_path_factory, cinc_dir):
    """A PhysioNet file index serving `challenge-2021/1.0.3` (5 real records)."""
    root = tmp_path_factory.mktemp("physionet")
    folder = root / CINC_PATH
    groups = {}
    for name, source in CINC_RECORDS.items():
        group = f"training/{source}/g1"
        groups.setdefault(group, []).append(name)
        for suffix in (".hea", ".mat"):
            _copy(cinc_dir / f"{name}{suffix}", folder / group / f"{name}{suffix}")
    # RECORDS as wfdb's dl_database reads nested ones: folders, then names.
    for group, names in groups.items():
        (folder / group / "RECORDS").write_text("".join(f"{n}\n" for n in names))
    (folder / "RECORDS").write_text("".join(f"{g}/\n" for g in sorted(groups)))
    _write_checksums(folder)
    return root


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PhysioNet
    timeout = 10  # an idle connection never holds a test
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per file

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def log_message(self, *args):
        pass

    def _serve(self, body):
        site = self.server.site
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        path = path.lstrip("/")
        file = site.root / path
        requested = self.headers.get("Range")
        if not file.is_file():
            site.log.append((self.command, path, requested, 404, 0))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = file.read_bytes()
        if path in site.corrupt or path in site.corrupt_once:
            site.corrupt_once.discard(path)
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        status, start, end = 200, 0, len(data)
        if requested:
            first, _, last = requested.removeprefix("bytes=").partition("-")
            start = int(first)
            end = min(int(last) + 1, len(data)) if last else len(data)
            if start >= len(data):
                site.log.append((self.command, path, requested, 416, 0))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        payload = data[start:end]
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if not body:
            site.log.append((self.command, path, requested, status, 0))
            return
        if path in site.drop:
            site.drop.discard(path)
            payload = payload[: len(payload) // 2]
            self.close_connection = True  # the client sees the file cut short
        # Logged before the body goes out: a client can finish reading (and
        # the test read the log) before this thread runs another line.
        site.log.append((self.command, path, requested, status, len(payload)))
        self.wfile.write(payload)


class PhysioNetServer:
    """A threaded loopback file server with Range support and a request log.

    Attributes:
        url: the index URL (standing for https://physionet.org/files/).
        log: `(method, path, Range header, status, body bytes)` per request.
        drop: paths whose next GET breaks off half way.
        corrupt: paths always served with altered bytes.
        corrupt_once: paths served altered on their next request only.
    """

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.log = []
        self.drop = set()
        self.corrupt = set()
        self.corrupt_once = set()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.site = self
        host, port = self._server.server_address
        self.url = f"http://{host}:{port}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def paths(self, method=None, since=0):
        return [r[1] for r in self.log[since:] if method in (None, r[0])]

    def bytes_served(self, since=0):
        return sum(r[4] for r in self.log[since:])


@pytest.fixture
def ptbxl_server(ptbxl_site):
    with PhysioNetServer(ptbxl_site) as server:
        yield server


@pytest.fixture
def cinc_server(cinc_site):
    with PhysioNetServer(cinc_site) as server:
        yield server


def _listing(site, dataset_path):
    text = (site / dataset_path / "SHA256SUMS.txt").read_text()
    return parse_checksums(text, "test")


def _verified(output, listing):
    """The listed files that are on disk with their published checksum."""
    return {
        path
        for path, digest in listing.items()
        if (output / path).is_file()
        and hashlib.sha256((output / path).read_bytes()).hexdigest() == digest
    }


def _cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-ecg download: error: ")
    return lines[0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_download_reads_like_the_source(ptbxl_server, ptbxl_site, tmp_path):
    output = tmp_path / "ptb-xl"
    listing = _listing(ptbxl_site, PTBXL_PATH)
    result = download_dataset(
        "ptbxl", output, base_url=ptbxl_server.url, progress=False
    )
    assert (result.files, result.records) == (len(listing), 2 * len(PTBXL_IDS))
    assert result.downloaded == len(listing) and result.present == 0
    assert _verified(output, listing) == set(listing)
    assert (output / "SHA256SUMS.txt").read_bytes() == (
        ptbxl_site / PTBXL_PATH / "SHA256SUMS.txt"
    ).read_bytes()
    # One GET per file (and for the listing), no HEAD, no Range.
    assert sorted(ptbxl_server.paths("GET")) == sorted(
        f"{PTBXL_PATH}/{p}" for p in [*listing, "SHA256SUMS.txt"]
    )
    assert result.bytes_fetched == sum(
        (ptbxl_site / PTBXL_PATH / p).stat().st_size for p in listing
    )
    # `--data DIR` reads it as PTB-XL; the signals are the source's.
    assert detect_source(str(output)) == "ptbxl"
    for rate, column in ((100, "filename_lr"), (500, "filename_hr")):
        data = load_source(str(output), sampling_rate=rate)
        assert data.record_ids == [str(i) for i in PTBXL_IDS]
        for i, signal in zip(PTBXL_IDS, data.signals, strict=True):
            stem = data.metadata.loc[i, column]
            reference = wfdb.rdsamp(str(ptbxl_site / PTBXL_PATH / stem))[0]
            np.testing.assert_allclose(signal, reference, rtol=1e-6, atol=1e-6)
    # A second run requests nothing but the listing.
    before = len(ptbxl_server.log)
    again = download_dataset("ptbxl", output, base_url=ptbxl_server.url, progress=False)
    assert ptbxl_server.paths(since=before) == [f"{PTBXL_PATH}/SHA256SUMS.txt"]
    assert again.present == len(listing) and again.bytes_fetched == 0


def test_sampling_rate_100_fetches_no_records500(
    ptbxl_server, ptbxl_site, tmp_path, capsys
):
    output = tmp_path / "ptb-xl"
    argv = ["download", "ptbxl", "--output", output, "--sampling-rate", "100"]
    code, out, err = _cli([*argv, "--base-url", ptbxl_server.url], capsys)
    assert code == 0, err
    requested = ptbxl_server.paths()
    assert requested and not [p for p in requested if "records500" in p]
    assert not (output / "records500").exists()
    listing = _listing(ptbxl_site, PTBXL_PATH)
    wanted = {p for p in listing if not p.startswith("records500/")}
    assert _verified(output, listing) == wanted
    assert f"verified {len(wanted)} files ({len(PTBXL_IDS)} records)" in out
    assert "(records100 only)" in out and f"--data {output}" in out
    data = load_source(str(output), sampling_rate=100)
    assert data.record_ids == [str(i) for i in PTBXL_IDS]


def test_interrupted_download_resumes_with_only_the_missing_files(
    ptbxl_server, ptbxl_site, tmp_path, capsys
):
    output = tmp_path / "ptb-xl"
    listing = _listing(ptbxl_site, PTBXL_PATH)
    cut = "records100/00000/00005_lr.dat"
    ptbxl_server.drop.add(f"{PTBXL_PATH}/{cut}")
    argv = ["download", "ptbxl", "--output", output]
    argv += ["--base-url", ptbxl_server.url]
    line = _one_line_error(*_cli(argv, capsys)[::2])
    assert f"cannot download {ptbxl_server.url}{PTBXL_PATH}/{cut}" in line
    assert "the connection broke mid-file" in line and "run the same" in line
    kept = _verified(output, listing)
    assert cut not in kept and len(kept) < len(listing)
    assert f"{len(kept)} verified file(s) are kept" in line
    # Whatever is on disk is verified: wfdb writes a file once it has it all.
    on_disk = {
        p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()
    }
    assert on_disk == kept | {"SHA256SUMS.txt"}

    before = len(ptbxl_server.log)
    code, out, err = _cli(argv, capsys)
    assert code == 0, err
    missing = set(listing) - kept
    assert sorted(ptbxl_server.paths(since=before)) == sorted(
        f"{PTBXL_PATH}/{p}" for p in [*missing, "SHA256SUMS.txt"]
    )
    listing_size = (ptbxl_site / PTBXL_PATH / "SHA256SUMS.txt").stat().st_size
    assert ptbxl_server.bytes_served(since=before) == listing_size + sum(
        (ptbxl_site / PTBXL_PATH / p).stat().st_size for p in missing
    )
    assert f"{len(missing)} downloaded" in out
    assert f"{len(kept)} already present" in out
    assert _verified(output, listing) == set(listing)


def _partial_download(server, site, output, path, prefix):
    """Runs a download where `output/path` starts as `prefix`."""
    (output / path).parent.mkdir(parents=True)
    (output / path).write_bytes(prefix)
    result = download_dataset(
        "ptbxl", output, sampling_rate=100, base_url=server.url, progress=False
    )
    requests = [r[:4] for r in server.log if r[1] == f"{PTBXL_PATH}/{path}"]
    return result, requests


def test_partial_file_is_continued_with_a_range_request(
    ptbxl_server, ptbxl_site, tmp_path
):
    path = "records100/00000/00003_lr.dat"
    source = (ptbxl_site / PTBXL_PATH / path).read_bytes()
    output = tmp_path / "ptb-xl"
    result, requests = _partial_download(
        ptbxl_server, ptbxl_site, output, path, source[:10000]
    )
    # wfdb: the remote size (HEAD), then the rest from byte 10000.
    assert requests == [
        ("HEAD", f"{PTBXL_PATH}/{path}", None, 200),
        ("GET", f"{PTBXL_PATH}/{path}", "bytes=10000-", 206),
    ]
    served = [r[4] for r in ptbxl_server.log if r[1] == f"{PTBXL_PATH}/{path}"]
    assert sum(served) == len(source) - 10000
    assert (output / path).read_bytes() == source
    assert (result.continued, result.redownloaded) == (1, 0)
    assert result.downloaded == result.files - 1


def test_corrupted_partial_file_is_downloaded_again(ptbxl_server, ptbxl_site, tmp_path):
    path = "records100/00000/00003_lr.dat"
    source = (ptbxl_site / PTBXL_PATH / path).read_bytes()
    output = tmp_path / "ptb-xl"
    garbage = bytes(255 - b for b in source[:10000])
    result, requests = _partial_download(
        ptbxl_server, ptbxl_site, output, path, garbage
    )
    # Continued (checksum mismatch), then fetched whole once more.
    assert requests == [
        ("HEAD", f"{PTBXL_PATH}/{path}", None, 200),
        ("GET", f"{PTBXL_PATH}/{path}", "bytes=10000-", 206),
        ("GET", f"{PTBXL_PATH}/{path}", None, 200),
    ]
    assert (output / path).read_bytes() == source
    assert (result.continued, result.redownloaded) == (0, 1)


def test_corrupted_file_is_downloaded_again_once(ptbxl_server, ptbxl_site, tmp_path):
    path = "records100/00000/00002_lr.hea"
    ptbxl_server.corrupt_once.add(f"{PTBXL_PATH}/{path}")
    output = tmp_path / "ptb-xl"
    result = download_dataset(
        "ptbxl", output, sampling_rate=100, base_url=ptbxl_server.url, progress=False
    )
    assert ptbxl_server.paths("GET").count(f"{PTBXL_PATH}/{path}") == 2
    assert result.redownloaded == 1
    assert (output / path).read_bytes() == (ptbxl_site / PTBXL_PATH / path).read_bytes()


def test_file_still_corrupted_after_a_second_download_is_reported(
    ptbxl_server, ptbxl_site, tmp_path, capsys
):
    path = "records100/00000/00002_lr.dat"
    ptbxl_server.corrupt.add(f"{PTBXL_PATH}/{path}")
    output = tmp_path / "ptb-xl"
    argv = ["download", "ptbxl", "--output", output, "--sampling-rate", "100"]
    line = _one_line_error(*_cli([*argv, "--base-url", ptbxl_server.url], capsys)[::2])
    assert "1 file(s) do not match SHA256SUMS.txt after a second download" in line
    assert path in line and "removed" in line
    assert ptbxl_server.paths("GET").count(f"{PTBXL_PATH}/{path}") == 2
    assert not (output / path).exists()
    listing = _listing(ptbxl_site, PTBXL_PATH)
    wanted = {p for p in listing if not p.startswith("records500/")}
    assert _verified(output, listing) == wanted - {path}


def test_cinc2021_download_is_a_wfdb_folder(cinc_server, cinc_site, tmp_path, capsys):
    output = tmp_path / "cinc2021"
    argv = ["download", "cinc2021", "--output", output]
    code, out, err = _cli([*argv, "--base-url", cinc_server.url], capsys)
    assert code == 0, err
    listing = _listing(cinc_site, CINC_PATH)
    assert _verified(output, listing) == set(listing)
    assert f"({len(CINC_RECORDS)} records)" in out
    assert detect_source(str(output)) == "wfdb"
    data = load_source(str(output), sampling_rate=500, label_set="all")
    expected = {f"training/{s}/g1/{n}": n for n, s in CINC_RECORDS.items()}
    assert sorted(data.record_ids) == sorted(expected)
    for record_id, signal in zip(data.record_ids, data.signals, strict=True):
        source = cinc_site / CINC_PATH / record_id
        reference = wfdb.rdsamp(str(source))[0]
        np.testing.assert_allclose(signal, reference, rtol=1e-5, atol=1e-5)
    # One set of files: a sampling rate is refused.
    code, _, err = _cli([*argv, "--sampling-rate", "500"], capsys)
    assert "--sampling-rate does not apply" in _one_line_error(code, err)


def test_base_url_from_the_environment_and_the_flag(
    ptbxl_server, tmp_path, capsys, monkeypatch
):
    argv = ["download", "ptbxl", "--sampling-rate", "100", "--output"]
    monkeypatch.setenv(BASE_URL_ENV, ptbxl_server.url)
    code, out, err = _cli([*argv, tmp_path / "a"], capsys)
    assert code == 0, err
    assert f"from {ptbxl_server.url}{PTBXL_PATH}/ into" in out
    assert ptbxl_server.log
    # --base-url wins over the variable (here a closed port).
    closed = f"http://127.0.0.1:{_free_port()}/"
    monkeypatch.setenv(BASE_URL_ENV, closed)
    count = len(ptbxl_server.log)
    code, _, err = _cli([*argv, tmp_path / "b", "--base-url", ptbxl_server.url], capsys)
    assert code == 0, err
    assert len(ptbxl_server.log) > count
    # The variable alone now fails, naming its URL.
    line = _one_line_error(*_cli([*argv, tmp_path / "c"], capsys)[::2])
    assert f"network failure: cannot download {closed}{PTBXL_PATH}/SHA256SUMS.txt" in (
        line
    )
    assert "Connection refused" in line


def test_errors_are_one_line(ptbxl_server, tmp_path, capsys):
    def error(*argv):
        argv = ["download", *argv]
        return _one_line_error(*_cli(argv, capsys)[::2])

    url = ptbxl_server.url
    good = ["--base-url", url]
    assert "unknown dataset 'mitdb'" in error("mitdb", "--output", tmp_path, *good)
    assert "unsupported sampling rate 250" in error(
        "ptbxl", "--output", tmp_path / "x", "--sampling-rate", "250", *good
    )
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "exists and is not a folder" in error("ptbxl", "--output", a_file, *good)
    assert "is not writable: Not a directory" in error(
        "ptbxl", "--output", a_file / "sub", *good
    )
    # Another dataset in the folder: by its files, or by its SHA256SUMS.txt.
    other = tmp_path / "cinc"
    (other / "training").mkdir(parents=True)
    assert "holds PhysioNet/CinC Challenge 2021 (training), not PTB-XL" in error(
        "ptbxl", "--output", other, *good
    )
    mitdb = tmp_path / "mitdb"
    mitdb.mkdir()
    (mitdb / "SHA256SUMS.txt").write_text(f"{'0' * 64}  100.dat\n")
    assert "holds another dataset" in error("ptbxl", "--output", mitdb, *good)
    unrelated = tmp_path / "home"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("x")
    assert "is not empty and holds no PTB-XL files" in error(
        "ptbxl", "--output", unrelated, *good
    )
    assert list(unrelated.iterdir()) == [unrelated / "notes.txt"]  # untouched
    # A server without the dataset, and no server at all: the URL is named.
    empty = f"{url}nothing/"
    assert f"cannot download {empty}{PTBXL_PATH}/SHA256SUMS.txt (HTTP 404)" in error(
        "ptbxl", "--output", tmp_path / "y", "--base-url", empty
    )
    assert "expected http(s)://" in error(
        "ptbxl", "--output", tmp_path / "z", "--base-url", "ftp://example.org/"
    )


def test_unsafe_or_malformed_checksum_lists_are_refused():
    digest = "a" * 64
    assert parse_checksums(f"{digest}  a/b.hea\n{digest} *c.dat\n\n", "x") == {
        "a/b.hea": digest,
        "c.dat": digest,
    }
    for text in (
        f"{digest}  ../outside.dat",
        f"{digest}  /etc/passwd",
        f"{digest}  a/../../b",
        "<html>not found</html>",
        "",
    ):
        with pytest.raises(DownloadError):
            parse_checksums(text, "x")


def test_download_and_cache_commands_import_no_framework(ptbxl_server, tmp_path):
    output = str(tmp_path / "o")
    script = textwrap.dedent(
        f"""
        import sys

        sys.argv = ["keras-ecg"]  # as the console script
        from keras_ecg import cli

        code = cli.main(["download", "ptbxl", "--output", {output!r},
                         "--sampling-rate", "100", "--base-url",
                         {ptbxl_server.url!r}])
        code += cli.main(["cache", "list", "--cache-dir", {output!r}])
        loaded = [m for m in ("keras", "tensorflow", "jax", "torch")
                  if m in sys.modules]
        print("exit", code, "loaded", loaded)
        """
    )
    process = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "exit 0 loaded []" in process.stdout, process.stdout + process.stderr
    assert os.path.isfile(tmp_path / "o" / "ptbxl_database.csv")
