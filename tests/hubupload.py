"""The upload side of the fake hub (hubserver.FakeHub): what huggingface_hub 0.34 sends for `create_repo`,
`create_commit` and `upload_folder`, answered like the real hub, so the project's real upload code runs in tests.

    with UploadHub({}, users={"hf_writer": "alice"}) as hub:
        env["HF_ENDPOINT"], env["HF_TOKEN"] = hub.url, "hf_writer"
        ...
        hub.created["alice/my-lora"]["private"]; hub.files("alice/my-lora"); hub.lfs_puts

Endpoints (huggingface_hub 0.34.3: hf_api.py create_repo / _validate_yaml / create_commit, _commit_api.py
_fetch_upload_modes / _upload_lfs_files / _prepare_commit_payload, lfs.py post_lfs_batch_info / lfs_upload):
  POST /api/repos/create                 {name, organization, private, type}: 200 {"url"}; 409 (with "url") when
      it exists; 401 without a token of `users` (token -> user name), 403 for another user's namespace.
  POST /api/validate-yaml                {content}: the README parsed by huggingface_hub's RepoCard (its YAML front
      matter); 400 with {"errors": [...]} when it does not parse.
  POST /api/models/{repo}/preupload/{rev}  {files: [{path, sample, size}]}: uploadMode "lfs" for *.safetensors,
      *.mp4, *.png and files over 10 MB (as .gitattributes and the real hub decide), else "regular"; `oid` of the
      file now at that path (sha256 for LFS, git blob sha1 otherwise), so unchanged files are left out of a commit.
  POST /{repo}.git/info/lfs/objects/batch  objects already held are answered without "actions" (the client skips
      them: this is what makes a second upload send only what is missing); others get an upload action (a single
      PUT, or with `multipart_chunk` set and a larger object, one PUT per part + a completion POST) and a verify
      action.
  PUT  /lfs/{repo}/{oid}, .../{oid}/part/{n}   the bytes (Content-Length or chunked); a whole object is kept (for
      that repo, as the hub's LFS storage) only when its sha256 is the oid. POST /lfs/{repo}/{oid} completes a
      multipart upload; POST /lfs/{repo}/{oid}/verify checks it.
  POST /api/models/{repo}/commit/{rev}   NDJSON: header, file (base64), lfsFile (the object must be held: 400 if
      not), deletedFile; the new files become downloadable through the GET endpoints of FakeHub.
Write requests need `Authorization: Bearer <token of the repo's owner>`. Every upload PUT is recorded in
`hub.lfs_puts` (repo, oid, part, bytes received, whether the body was complete; `hub.progress` is notified), every
commit in `hub.commits[repo]`.

Knob: `hold_upload_after_bytes=N` holds the first PUT of each object longer than N after reading N bytes: sets
`hub.holding`, waits for `hub.release` (a test kills the client meanwhile; the object is then not kept).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import math
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from hubserver import FakeHub, Request, _Handler

UPLOAD_LFS_PATTERNS = ("*.safetensors", "*.mp4", "*.png")
LFS_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True)
class Put:
    """One upload PUT as the server saw it: the repo and object, the part (0 for a single PUT), bytes read, and
    whether the whole body arrived."""

    repo: str
    oid: str
    part: int
    received: int
    complete: bool


class UploadHub(FakeHub):
    """FakeHub with the upload endpoints. `users` maps a write token to its user name (its namespace)."""

    def __init__(
        self,
        repos: dict[str, dict[str, bytes]] | None = None,
        *,
        users: dict[str, str] | None = None,
        multipart_chunk: int | None = None,
        hold_upload_after_bytes: int | None = None,
        **kw,
    ):
        super().__init__(repos if repos is not None else {}, **kw)
        self.users = dict(users or {})
        self.multipart_chunk = multipart_chunk
        self.hold_upload_after_bytes = hold_upload_after_bytes
        self.created: dict[str, dict] = {}  # repo -> {"private", "owner"}
        self.objects: dict[tuple[str, str], bytes] = {}  # LFS objects held: (repo, sha256) -> bytes
        self.lfs_puts: list[Put] = []
        self.progress = threading.Condition()  # notified after every recorded PUT (wait_for a state, no sleeping)
        self.commits: dict[str, list[dict]] = {}
        self._parts: dict[tuple[str, str], dict[int, bytes]] = {}
        self._held_uploads: set[tuple[str, str]] = set()
        self._commit_lock = threading.Lock()

    def files(self, repo_id: str) -> dict[str, bytes]:
        """The repo's files at its head."""
        return dict(self.repos.get(repo_id, {}))


def _lfs(path: str, size: int) -> bool:
    return size > LFS_SIZE or any(fnmatch.fnmatch(path, p) for p in UPLOAD_LFS_PATTERNS)


def _oid(path: str, data: bytes) -> str:
    if _lfs(path, len(data)):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _UploadHandler(_Handler):
    hub: UploadHub

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        self._status, self._body_len, self._recorded = 0, 0, False
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        try:
            if self.hub.fail_all:
                self._error(500, None, "Internal Error")
            elif method == "PUT" and parts[0] == "lfs":
                self._put("/".join(parts[1:3]), parts[3], int(parts[5]) if len(parts) == 6 else 0)
            elif parts[0] == "lfs":
                self._lfs_post("/".join(parts[1:3]), parts[3], verify=len(parts) == 5)
            elif parts[:3] == ["api", "repos", "create"]:
                self._create(self._json())
            elif parts[:2] == ["api", "validate-yaml"]:
                self._validate_yaml(self._json())
            elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("preupload", "commit"):
                repo = "/".join(parts[2:4])
                if self._may_write(repo):
                    (self._preupload if parts[4] == "preupload" else self._commit)(repo)
            elif len(parts) >= 5 and parts[1].endswith(".git") and parts[2:] == ["info", "lfs", "objects", "batch"]:
                repo = f"{parts[0]}/{parts[1][:-4]}"
                if self._may_write(repo):
                    self._batch(repo, self._json())
            else:
                self._error(404, None, "Not Found")
        except (BrokenPipeError, ConnectionResetError):
            pass
        if not self._recorded:
            self._record(0)

    # -- plumbing --------------------------------------------------------------------------------------------------

    def _body(self, limit: int | None = None) -> bytes:
        """The request body (Content-Length or chunked); with `limit`, stop after that many bytes."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while limit is None or len(out) < limit:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            return out if limit is None else out[:limit]
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length if limit is None else min(length, limit))

    def _json(self):
        return json.loads(self._body() or b"{}")

    def _send_json(self, status: int, body, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return self.hub.users.get(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None

    def _may_write(self, repo: str) -> bool:
        user = self._user()
        if repo not in self.hub.created and repo not in self.hub.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return False
        if user is None or self.hub.created.get(repo, {}).get("owner") != user:
            self._error(401 if user is None else 403, None, "You don't have the rights to write to this repo")
            return False
        return True

    # -- endpoints -------------------------------------------------------------------------------------------------

    def _create(self, body: dict) -> None:
        hub, user = self.hub, self._user()
        if user is None:
            self._error(401, None, "Invalid username or password.")
            return
        namespace = body.get("organization") or user
        if namespace != user:
            self._error(403, None, f"You don't have the rights to create a model under {namespace}")
            return
        repo = f"{namespace}/{body['name']}"
        url = f"{hub.url}/{repo}"
        if repo in hub.created or repo in hub.repos:
            self._send_json(409, {"error": "You already created this model repo", "url": url})
            return
        private = bool(body.get("private"))
        hub.created[repo] = {"private": private, "owner": user, "type": body.get("type")}
        hub.repos[repo] = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        if private:
            hub.private[repo] = next(t for t, u in hub.users.items() if u == user)
        self._send_json(200, {"url": url, "name": repo})

    def _validate_yaml(self, body: dict) -> None:
        from huggingface_hub import RepoCard

        try:
            RepoCard(body.get("content", ""))
        except Exception as e:  # noqa: BLE001 - yaml's errors or a ValueError: the hub answers 400 for any
            self._send_json(400, {"errors": [{"message": str(e)}], "warnings": []})
            return
        self._send_json(200, {"errors": [], "warnings": []})

    def _preupload(self, repo: str) -> None:
        current = self.hub.repos.get(repo, {})
        files = []
        for f in self._json().get("files", []):
            mode = "lfs" if _lfs(f["path"], f["size"]) else "regular"
            held = current.get(f["path"])
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": mode,
                    "shouldIgnore": False,
                    "oid": _oid(f["path"], held) if held is not None else None,
                }
            )
        self._send_json(200, {"files": files, "commitOid": self.hub.head(repo)})

    def _batch(self, repo: str, body: dict) -> None:
        hub, objects = self.hub, []
        chunk = hub.multipart_chunk
        for o in body.get("objects", []):
            oid, size = o["oid"], o["size"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if (repo, oid) not in hub.objects:  # held objects get no actions: the client skips them
                href = f"{hub.url}/lfs/{repo}/{oid}"
                upload = {"href": href}
                if chunk and size > chunk:
                    parts = math.ceil(size / chunk)
                    upload["header"] = {"chunk_size": str(chunk)}
                    upload["header"].update({f"{n:05d}": f"{href}/part/{n}" for n in range(1, parts + 1)})
                entry["actions"] = {"upload": upload, "verify": {"href": f"{href}/verify"}}
            objects.append(entry)
        self._send_json(200, {"transfer": "multipart" if chunk else "basic", "objects": objects})

    def _put(self, repo: str, oid: str, part: int) -> None:
        hub = self.hub
        expected = int(self.headers.get("Content-Length") or -1)
        hold = hub.hold_upload_after_bytes
        if hold is not None and (repo, oid) not in hub._held_uploads and (expected < 0 or expected > hold):
            hub._held_uploads.add((repo, oid))
            first = self._body(limit=hold)
            hub.holding.set()
            hub.release.wait(timeout=60)
            data = first + self._rest(expected - len(first) if expected >= 0 else None)
        else:
            data = self._body()
        complete = expected < 0 or len(data) == expected
        with hub.progress:
            hub.lfs_puts.append(Put(repo, oid, part, len(data), complete))
            hub.progress.notify_all()
        if not complete:
            self._record(0)
            return  # the client went away mid-body: nothing is kept
        if part:
            hub._parts.setdefault((repo, oid), {})[part] = data
            self.send_response(200)
            self.send_header("ETag", f'"etag-{oid[:8]}-{part}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._keep(repo, oid, data)

    def _rest(self, remaining: int | None) -> bytes:
        try:
            return self.rfile.read(remaining) if remaining else (b"" if remaining == 0 else self._body())
        except OSError:
            return b""

    def _keep(self, repo: str, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            self._error(400, None, f"content does not match oid {oid}")
            return
        self.hub.objects[(repo, oid)] = data
        self._send_json(200, {})

    def _lfs_post(self, repo: str, oid: str, verify: bool) -> None:
        hub = self.hub
        if verify:
            body = self._json()
            held = hub.objects.get((repo, oid))
            ok = held is not None and len(held) == body.get("size")
            self._send_json(200 if ok else 404, {"ok": ok})
            return
        body = self._json()  # multipart completion: {"oid", "parts": [{"partNumber", "etag"}]}
        parts = hub._parts.pop((repo, oid), {})
        numbers = [p["partNumber"] for p in body.get("parts", [])]
        if sorted(numbers) != sorted(parts):
            self._error(400, None, f"parts {numbers} do not match the uploaded parts {sorted(parts)}")
            return
        self._keep(repo, oid, b"".join(parts[n] for n in sorted(parts)))

    def _commit(self, repo: str) -> None:
        hub = self.hub
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        with hub._commit_lock:
            files = dict(hub.repos.get(repo, {}))
            summary = ""
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "header":
                    summary = value.get("summary", "")
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if (repo, value["oid"]) not in hub.objects:
                        self._error(400, None, f"LFS object {value['oid']} of {value['path']} was not uploaded")
                        return
                    files[value["path"]] = hub.objects[(repo, value["oid"])]
                elif key in ("deletedFile", "deletedFolder"):
                    files = {p: d for p, d in files.items() if p != value["path"] and not p.startswith(value["path"])}
            digest = hashlib.sha1(json.dumps(sorted((p, _oid(p, d)) for p, d in files.items())).encode())
            oid = hashlib.sha1((hub.head(repo) + digest.hexdigest()).encode()).hexdigest()
            hub.repos[repo] = files
            hub.heads[repo] = oid
            hub.commits.setdefault(repo, []).append({"oid": oid, "summary": summary, "paths": sorted(files)})
        self._send_json(200, {"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None})


UploadHub.handler_class = _UploadHandler
__all__ = ["UploadHub", "Put", "Request"]
