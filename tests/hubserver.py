"""A small fake Hugging Face hub for tests (stdlib only): the requests huggingface_hub 0.34 makes for
`hf_hub_download` and `snapshot_download`, answered from in-memory repos on 127.0.0.1.

    with FakeHub({"org/name": {"config.json": b"{}"}}) as hub:
        env["HF_ENDPOINT"] = hub.url
        ...
        assert not [r for r in hub.requests if r.method == "GET" and r.sent]

Endpoints (repo ids are `org/name`; `rev` is `main` or the repo's fixed 40-hex commit):
  HEAD/GET /{repo}/resolve/{rev}/{path}   200, or 206 + Content-Range for `Range: bytes=a-b | a- | -n`, 416 past
      the end. Headers: X-Repo-Commit, ETag, Content-Length, Accept-Ranges; *.safetensors are served like the real
      hub's LFS files (ETag = sha256 of the content, plus X-Linked-Etag / X-Linked-Size), other files get their git
      blob sha1 as ETag.
  GET /api/models/{repo}[/revision/{rev}]  model info: id, sha, siblings (rfilename, size, blobId, lfs).
  GET /api/models/{repo}/tree/{rev}[/{path}]  the files under path (recursive), as list_repo_tree reads them.
Errors carry X-Error-Code like the real hub: 404 RepoNotFound / RevisionNotFound / EntryNotFound; a private repo
answers 401 RepoNotFound and a gated one 403 GatedRepo unless the request has `Authorization: Bearer <its token>`.

Knobs for failure tests:
  `fail_after_bytes=N`  drops the connection after N body bytes on the first GET of each file.
  `hold_after_bytes=N`  on the first GET of each file longer than N, sends N body bytes, sets `hub.holding` and
                        waits for `hub.release` before sending the rest (to kill a client mid-file at a known point).
  `hub.corrupt(repo, path, times=1)`  the next `times` GETs of that file send other bytes of the same length: the
                        content no longer matches the ETag (its sha256) the server advertises.
  `hub.fail_first = N`  the next N requests (any endpoint) answer 500; later ones are served normally.
  `hub.fail_all = True` makes every request answer 500; `hub.stop()` closes the port (network down).
Every request is recorded in `hub.requests` (the Authorization header only as present or not: a token value is never
stored). Responses close the connection (HTTP/1.0), so after stop() no pooled keep-alive connection can reach the
server.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_PATTERNS = ("*.safetensors",)


@dataclass(frozen=True)
class Request:
    """One request as the server saw it: `range` is the Range header or None, `auth` whether an Authorization
    header came, `sent` the body bytes written (0 for HEAD and errors)."""

    method: str
    path: str
    range: str | None
    auth: bool
    status: int
    sent: int


class FakeHub:
    """The server. `repos` maps repo id -> {path in repo: content}; `private` and `gated` map a repo id to the token
    that opens it. Use as a context manager, or call start() / stop()."""

    def __init__(
        self,
        repos: dict[str, dict[str, bytes]],
        *,
        private: dict[str, str] | None = None,
        gated: dict[str, str] | None = None,
        fail_after_bytes: int | None = None,
        hold_after_bytes: int | None = None,
    ):
        self.repos = repos
        self.private = dict(private or {})
        self.gated = dict(gated or {})
        self.fail_after_bytes = fail_after_bytes
        self.hold_after_bytes = hold_after_bytes
        self.holding = threading.Event()  # set once a body is held at hold_after_bytes
        self.release = threading.Event()  # set it to let a held body go on
        self.fail_all = False
        self.fail_first = 0
        self.requests: list[Request] = []
        self._dropped: set[tuple[str, str]] = set()  # files whose first GET was already cut off
        self._held: set[tuple[str, str]] = set()  # files whose first GET was already held
        self._corrupt: dict[tuple[str, str], int] = {}  # file -> GETs still to answer with wrong bytes
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.heads: dict[str, str] = {}  # repo -> commit after an upload (hubupload.py); else commit(repo)

    @staticmethod
    def commit(repo_id: str) -> str:
        """The repo's fixed commit: 40 hex digits derived from its id."""
        return hashlib.sha1(repo_id.encode()).hexdigest()

    @staticmethod
    def etag(path: str, content: bytes) -> str:
        """sha256 for LFS-like files (as the real hub), else the git blob sha1."""
        if any(fnmatch.fnmatch(path, p) for p in LFS_PATTERNS):
            return hashlib.sha256(content).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    def head(self, repo_id: str) -> str:
        """The repo's current commit: its newest uploaded commit, else the fixed one."""
        return self.heads.get(repo_id) or self.commit(repo_id)

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(self.handler_class):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fakehub", daemon=True
        ).start()
        return self

    def corrupt(self, repo_id: str, path: str, times: int = 1) -> None:
        """Answer the next `times` GETs of repo_id/path with bytes of the right length but the wrong content."""
        self._corrupt[(repo_id, path)] = times

    def stop(self) -> None:
        """Stop serving and close the port; later connections are refused. A held body is released."""
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def file_requests(self, method: str = "GET") -> list[Request]:
        """The /resolve/ requests of `method` (file downloads or HEADs), in order."""
        return [r for r in self.requests if r.method == method and "/resolve/" in r.path]


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.0"

    def log_message(self, *args) -> None:  # quiet: tests read hub.requests instead
        pass

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    def _handle(self, head: bool) -> None:
        hub = self.hub
        self._status, self._body_len, self._recorded = 0, 0, False
        path = urlsplit(self.path).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        with hub._lock:
            fail_first = hub.fail_first > 0
            hub.fail_first -= fail_first
        try:
            if hub.fail_all or fail_first:
                self._error(500, None, "Internal Error")
            elif parts[:2] == ["api", "models"] and len(parts) >= 4:
                self._api("/".join(parts[2:4]), parts[4:], head)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
            else:
                self._error(404, None, "Not Found")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away
        if not self._recorded:
            self._record(0)

    # Requests are recorded when the headers go out, before any body byte: a client that has read the whole answer
    # always finds its request in hub.requests (recording after the write raced with fast clients).
    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length":
            self._body_len = int(value)
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        if not self._recorded:
            self._record(0 if self.command == "HEAD" else self._body_len)
        super().end_headers()

    def _record(self, sent: int) -> None:
        self._recorded = True
        self.hub.requests.append(
            Request(
                self.command, self.path, self.headers.get("Range"), "Authorization" in self.headers, self._status, sent
            )
        )

    # -- checks shared by every endpoint ---------------------------------------------------------------------------

    def _check_repo(self, repo: str, rev: str | None) -> int | None:
        """Answer an error and return its status if `repo`/`rev` is not accessible; None if it is."""
        hub = self.hub
        token = self.headers.get("Authorization", "")
        if repo not in hub.repos:
            return self._error(404, "RepoNotFound", "Repository not found")
        if repo in hub.private and token != f"Bearer {hub.private[repo]}":
            return self._error(401, "RepoNotFound", "Invalid username or password.")
        if repo in hub.gated and token != f"Bearer {hub.gated[repo]}":
            return self._error(
                403,
                "GatedRepo",
                f"Access to model {repo} is restricted. You must have access to "
                "it and be authenticated to access it. Please log in.",
            )
        if rev is not None and rev not in ("main", hub.commit(repo), hub.head(repo)):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return None

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> int:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    # -- endpoints -------------------------------------------------------------------------------------------------

    def _resolve(self, repo: str, rev: str, name: str, head: bool) -> tuple[int, int]:
        hub = self.hub
        if (err := self._check_repo(repo, rev)) is not None:
            return err, 0
        content = hub.repos[repo].get(name)
        if content is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist", hub.head(repo)), 0
        size, start, end, status = len(content), 0, len(content) - 1, 200
        rng = self.headers.get("Range")
        if rng and not head:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or m.groups() == ("", ""):
                return self._error(400, None, f"bad Range {rng!r}"), 0
            a, b = m.groups()
            start, end = (max(0, size - int(b)), size - 1) if a == "" else (int(a), min(int(b or size - 1), size - 1))
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416, 0
            status = 206
        etag = hub.etag(name, content)
        self.send_response(status)
        self.send_header("X-Repo-Commit", hub.head(repo))
        self.send_header("ETag", f'"{etag}"')
        if len(etag) == 64:  # LFS-like: the real hub answers with the linked (LFS object) etag and size
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        body = content[start : end + 1]
        if not head and hub._corrupt.get((repo, name), 0) > 0:
            hub._corrupt[(repo, name)] -= 1
            body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]  # same length, other sha256
        hold = (
            not head
            and hub.hold_after_bytes is not None
            and (repo, name) not in hub._held
            and len(body) > hub.hold_after_bytes
        )
        cut = (
            not head
            and hub.fail_after_bytes is not None
            and (repo, name) not in hub._dropped
            and len(body) > hub.fail_after_bytes
        )
        if cut:
            self._body_len = hub.fail_after_bytes  # what will really be sent
        self.end_headers()
        if head:
            return status, 0
        if hold:
            hub._held.add((repo, name))
            self.wfile.write(body[: hub.hold_after_bytes])
            self.wfile.flush()
            hub.holding.set()
            hub.release.wait(timeout=60)
            self.wfile.write(body[hub.hold_after_bytes :])  # BrokenPipe when the client was killed meanwhile
            return status, len(body)
        if cut:
            hub._dropped.add((repo, name))
            self.wfile.write(body[: hub.fail_after_bytes])
            self.wfile.flush()
            self.close_connection = True  # the client sees the connection end before Content-Length bytes
            return status, hub.fail_after_bytes
        self.wfile.write(body)
        return status, len(body)

    def _api(self, repo: str, rest: list[str], head: bool) -> tuple[int, int]:
        hub = self.hub
        kind, rev = (rest[0], rest[1]) if len(rest) >= 2 else (None, None)
        if rest and kind not in ("revision", "tree"):
            return self._error(404, None, "Not Found"), 0
        if (err := self._check_repo(repo, rev)) is not None:
            return err, 0
        files = hub.repos[repo]

        def entry(path: str, tree: bool) -> dict:
            """A siblings entry (model info) or a tree entry, with `lfs` for LFS-like files."""
            data = files[path]
            out = {
                "path" if tree else "rfilename": path,
                "size": len(data),
                "oid" if tree else "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
            }
            sha = hub.etag(path, data)
            if len(sha) == 64:
                out["lfs"] = {"oid" if tree else "sha256": sha, "size": len(data), "pointerSize": 134}
            return out

        if kind == "tree":
            prefix = "/".join(rest[2:]).strip("/")
            body = [
                {"type": "file", **entry(p, True)} for p in sorted(files) if not prefix or p.startswith(prefix + "/")
            ]
        else:
            body = {
                "id": repo,
                "modelId": repo,
                "sha": hub.head(repo),
                "private": repo in hub.private,
                "gated": "manual" if repo in hub.gated else False,
                "siblings": [entry(p, False) for p in sorted(files)],
            }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
        return 200, 0 if head else len(data)


FakeHub.handler_class = _Handler  # the upload side (hubupload.UploadHub) extends it
