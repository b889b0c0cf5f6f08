"""A loopback HTTP server speaking enough of the Hugging Face Hub and Kaggle
Models APIs for `huggingface_hub`'s and `kagglehub`'s real download code.

Tests point the libraries at it the way a user points them at a mirror:
`HF_ENDPOINT=<server.url>` for the Hugging Face Hub; for Kaggle, whose client
only knows fixed endpoints, `KAGGLE_API_ENVIRONMENT=LOCALHOST` (requests to
`http://localhost/api/v1/...`) with `HTTP_PROXY=<server.url>`, the server
answering as that proxy. It binds 127.0.0.1 on a free port, serves from a
daemon thread, and stops itself after `max_seconds` if the test has not.

Routes, as the libraries call them (huggingface_hub 2.4, kagglehub 1.0):

- `GET /api/models/{repo}/revision/{rev}`: `repo_info` (`sha`, `siblings`);
- `GET /api/models/{repo}/tree/{rev}`: the file listing of `snapshot_download`;
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: `ETag`, `X-Repo-Commit`,
  `Content-Length` and the bytes; unknown repositories, revisions and files
  answer 404 with Hugging Face's `X-Error-Code`;
- `POST /api/v1/models.ModelApiService/GetModelInstance` (latest version),
  `ListModelInstanceVersionFiles` and `DownloadModelInstanceVersion` (a 302
  to `/blobs/...`, served with `Content-Length` and an `X-Goog-Hash` MD5).
"""

import base64
import hashlib
import http.server
import json
import os
import re
import threading
import urllib.parse

_HF_INFO = re.compile(r"^/api/models/(?P<repo>.+?)/revision/(?P<rev>[^/]+)$")
_HF_TREE = re.compile(r"^/api/models/(?P<repo>.+?)/tree/(?P<rev>[^/]+)(?:/.*)?$")
_HF_FILE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_KAGGLE = re.compile(r"^/api/v1/models\.ModelApiService/(?P<method>\w+)$")
_BLOB = re.compile(r"^/blobs/(?P<key>\w+)$")


def _read_folder(folder):
    return {
        name: open(os.path.join(folder, name), "rb").read()
        for name in sorted(os.listdir(folder))
        if os.path.isfile(os.path.join(folder, name))
    }


class FakeHub:
    """The server and the repositories it serves.

    Args:
        max_seconds: the server stops itself after this long.

    Example:

    ```python
    with FakeHub() as hub:
        hub.add_hugging_face_repo("lab/ecg-simclr", "presets/simclr")
        hub.add_kaggle_model("lab/ecg-simclr/keras/tiny", 1, "presets/simclr")
        env = {"HF_ENDPOINT": hub.url, **hub.kaggle_env()}
        ...  # run the download in a process with `env`
    ```
    """

    def __init__(self, max_seconds=120):
        self.max_seconds = float(max_seconds)
        self.hf_repos = {}
        self.kaggle_models = {}
        self.blobs = {}
        # (method, path) of every request, for tests to check what was asked.
        self.requests = []
        self._server = None
        self._thread = None
        self._timer = None
        self._lock = threading.Lock()
        self._stopped = False

    def add_hugging_face_repo(self, repo_id, folder):
        """Serves the files of `folder` as model repository `repo_id`; returns
        its commit sha (the hash of its content)."""
        files = _read_folder(folder)
        digest = hashlib.sha1()
        for name, content in files.items():
            digest.update(name.encode() + hashlib.sha1(content).digest())
        commit = digest.hexdigest()
        self.hf_repos[repo_id] = {"commit": commit, "files": files}
        return commit

    def add_kaggle_model(self, handle, version, folder):
        """Serves `folder` as `version` of `owner/model/framework/variation`."""
        owner, model, framework, variation = handle.split("/")
        versions = self.kaggle_models.setdefault(
            (owner, model, variation), {"framework": framework, "versions": {}}
        )
        versions["versions"][int(version)] = _read_folder(folder)

    @property
    def url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def kaggle_env(self):
        """The environment that sends kagglehub's requests here."""
        return {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": self.url,
            "http_proxy": self.url,
            "NO_PROXY": "",
            "no_proxy": "",
        }

    def start(self):
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}
        )
        self._thread.daemon = True
        self._thread.start()
        self._timer = threading.Timer(self.max_seconds, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self):
        """Stops serving (the port is closed); idempotent."""
        with self._lock:
            if self._stopped or self._server is None:
                return
            self._stopped = True
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Handler(http.server.BaseHTTPRequestHandler):
    hub = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _path(self):
        # A proxied request names the whole URL: keep its path.
        return urllib.parse.urlsplit(self.path).path

    def _send(self, status, body=b"", headers=None, head=False):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(body))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status, content, headers=None):
        self._send(status, json.dumps(content).encode(), headers)

    def _hf_error(self, status, code, head=False, commit=None):
        headers = {"X-Error-Code": code, "X-Error-Message": code}
        if commit:
            headers["X-Repo-Commit"] = commit
        body = b"" if head else json.dumps({"error": code}).encode()
        self._send(status, body, headers, head=head)

    def _hf_repo(self, repo_id, revision, head=False):
        repo = self.hub.hf_repos.get(repo_id)
        if repo is None:
            self._hf_error(404, "RepoNotFound", head)
            return None
        if revision not in ("main", repo["commit"]):
            self._hf_error(404, "RevisionNotFound", head)
            return None
        return repo

    def do_HEAD(self):
        self.hub.requests.append(("HEAD", self._path()))
        match = _HF_FILE.match(self._path())
        if match is None:
            return self._send(404, head=True)
        self._hf_file(match, head=True)

    def do_GET(self):
        path = self._path()
        self.hub.requests.append(("GET", path))
        if match := _HF_INFO.match(path):
            repo = self._hf_repo(match["repo"], urllib.parse.unquote(match["rev"]))
            if repo is not None:
                self._json(
                    200,
                    {
                        "id": match["repo"],
                        "sha": repo["commit"],
                        "private": False,
                        "siblings": [{"rfilename": name} for name in repo["files"]],
                    },
                )
        elif match := _HF_TREE.match(path):
            repo = self._hf_repo(match["repo"], urllib.parse.unquote(match["rev"]))
            if repo is not None:
                self._json(
                    200,
                    [
                        {
                            "type": "file",
                            "path": name,
                            "size": len(content),
                            "oid": _git_blob_sha(content),
                        }
                        for name, content in repo["files"].items()
                    ],
                )
        elif match := _HF_FILE.match(path):
            self._hf_file(match, head=False)
        elif match := _BLOB.match(path):
            content = self.hub.blobs.get(match["key"])
            if content is None:
                return self._send(404)
            md5 = base64.b64encode(hashlib.md5(content).digest()).decode()
            self._send(
                200,
                content,
                {
                    "Content-Type": "application/octet-stream",
                    "X-Goog-Hash": f"md5={md5}",
                },
            )
        else:
            self._send(404)

    def _hf_file(self, match, head):
        repo = self._hf_repo(match["repo"], urllib.parse.unquote(match["rev"]), head)
        if repo is None:
            return
        name = urllib.parse.unquote(match["file"])
        content = repo["files"].get(name)
        if content is None:
            return self._hf_error(404, "EntryNotFound", head, commit=repo["commit"])
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{_git_blob_sha(content)}"',
            "X-Repo-Commit": repo["commit"],
        }
        self._send(200, content, headers, head=head)

    def do_POST(self):
        path = self._path()
        self.hub.requests.append(("POST", path))
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._json(400, {"code": 400, "message": "bad JSON"})
        match = _KAGGLE.match(path)
        if match is None:
            return self._json(404, {"code": 404, "message": "no such API"})
        entry = self.hub.kaggle_models.get(
            (
                request.get("ownerSlug"),
                request.get("modelSlug"),
                request.get("instanceSlug"),
            )
        )
        framework = str(request.get("framework", "")).replace("_", "").lower()
        if entry is None or not framework.endswith(entry["framework"].replace("_", "")):
            return self._json(404, {"code": 404, "message": "Model not found"})
        versions = entry["versions"]
        method = match["method"]
        if method == "GetModelInstance":
            return self._json(200, {"versionNumber": max(versions)})
        files = versions.get(int(request.get("versionNumber") or 0))
        if files is None:
            return self._json(404, {"code": 404, "message": "Version not found"})
        if method == "ListModelInstanceVersionFiles":
            return self._json(
                200,
                {
                    "files": [{"name": n, "size": len(c)} for n, c in files.items()],
                    "nextPageToken": "",
                },
            )
        if method == "DownloadModelInstanceVersion":
            content = files.get(request.get("path"))
            if content is None:
                return self._json(404, {"code": 404, "message": "File not found"})
            key = hashlib.sha1(content).hexdigest()
            self.hub.blobs[key] = content
            # As Kaggle: a redirect to the blob store.
            return self._send(
                302, headers={"Location": f"http://localhost/blobs/{key}"}
            )
        self._json(404, {"code": 404, "message": f"no method {method}"})


def _git_blob_sha(content):
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
