"""Fetch one file of a Hugging Face Hub repository through ``huggingface_hub``, verified, bounded.

Used by :mod:`.cache` for timm's ``model.safetensors``. Every environment variable is read at call
time and passed to ``huggingface_hub`` explicitly (it reads its own at import time):

* URL ``{HF_ENDPOINT or https://huggingface.co}/{repo_id}/resolve/{revision}/{filename}``;
* ``HF_HUB_OFFLINE`` (``1/true/yes/on``; also ``TRANSFORMERS_OFFLINE``): no network, the file must
  already be in the cache;
* cache ``HF_HUB_CACHE`` (else ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``${XDG_CACHE_HOME:-~/.cache}/huggingface/hub``), the layout huggingface_hub and timm share.

The expected size and sha256 come from the Hub's metadata (``get_hf_file_metadata``: the ETag of an
LFS file is its sha256) or from pinned values; the downloaded file is checked against both. A failure
never leaves a file in the cache (:class:`_CacheGuard` removes what the attempt created).

**Bounded.** ``hf_hub_download`` runs in a child interpreter that is stopped when the download makes
no progress (the partial file grows no further) for ``MINDCV_HALONET_HUB_STALL_SECONDS`` (default 60)
or when the child's resident memory passes ``512 MiB + 2 x file size``. Without this bound, a server
or mirror that truncates every response and ignores ``Range`` keeps huggingface_hub 2.4.0 retrying
for ever (measured: ~16 MB/s of memory growth). Tested with huggingface_hub 0.36.2 and 2.4.0.
"""
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .errors import HubDownloadError, HubUnreachableError
from .files import file_sha256, write_text_atomic

__all__ = [
    "DEFAULT_ENDPOINT", "DEFAULT_FILENAME", "DEFAULT_REVISION", "ENV_STALL", "FetchedFile", "HubDownloadError",
    "HubFile", "HubUnreachableError", "env_true", "fetch", "find_in_cache", "hf_hub_cache", "hub_endpoint",
    "hub_offline",
]

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
DEFAULT_FILENAME = "model.safetensors"
ENV_STALL = "MINDCV_HALONET_HUB_STALL_SECONDS"
_DEFAULT_STALL_SECONDS = 60.0
_MEMORY_BASE = 512 * 2**20
_POLL_SECONDS = 0.1
_TRUE = {"1", "ON", "YES", "TRUE"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TIMEOUT = 10.0  # seconds, huggingface_hub's metadata timeout


def env_true(name: str) -> bool:
    return (os.environ.get(name) or "").strip().upper() in _TRUE


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    return env_true("HF_HUB_OFFLINE") or env_true("TRANSFORMERS_OFFLINE")


def hf_hub_cache() -> str:
    """The Hugging Face hub cache directory, resolved exactly as huggingface_hub's ``constants`` do."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    default = os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return os.path.expandvars(os.path.expanduser(os.environ.get("HF_HUB_CACHE") or default))


def stall_seconds() -> float:
    text = os.environ.get(ENV_STALL)
    if not text:
        return _DEFAULT_STALL_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise HubDownloadError(f"{ENV_STALL}={text!r} is invalid; expected a number of seconds > 0")
    return value


@dataclass(frozen=True)
class HubFile:
    """One file of a model repository at a revision, with optionally pinned size / sha256."""

    repo_id: str
    revision: str = DEFAULT_REVISION
    filename: str = DEFAULT_FILENAME
    sha256: Optional[str] = None
    size: Optional[int] = None

    def url(self, endpoint: Optional[str] = None) -> str:
        return f"{endpoint or hub_endpoint()}/{self.repo_id}/resolve/{self.revision}/{self.filename}"

    def storage_folder(self, cache: Optional[str] = None) -> str:
        return os.path.join(cache or hf_hub_cache(), "models--" + self.repo_id.replace("/", "--"))


@dataclass(frozen=True)
class FetchedFile:
    path: Optional[str]
    sha256: str
    size: Optional[int]
    commit: Optional[str]


def _normalize_etag(etag: Optional[str]) -> Optional[str]:
    if not etag:
        return None
    etag = etag.strip()
    return (etag[2:] if etag.startswith("W/") else etag).strip('"') or None


# --------------------------------------------------------------------------------------------------
# cache lookup (no network)
# --------------------------------------------------------------------------------------------------

def find_in_cache(hub_file: HubFile, cache: Optional[str] = None) -> Optional[str]:
    """Path of ``hub_file`` in the Hugging Face cache (``refs/{revision}`` or a commit revision), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_file.repo_id, hub_file.filename, cache_dir=cache or hf_hub_cache(),
                                   revision=hub_file.revision)
    return found if isinstance(found, str) and os.path.isfile(found) else None


# --------------------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------------------

def expected_values(hub_file: HubFile, metadata_sha256: Optional[str], metadata_size: Optional[int], url: str):
    """(sha256, size) the download must have: pinned values win, and must agree with the Hub's metadata."""
    sha256 = hub_file.sha256.lower() if hub_file.sha256 else None
    if sha256 and metadata_sha256 and sha256 != metadata_sha256:
        raise HubDownloadError(
            f"{url}: the Hub reports sha256 {metadata_sha256}, but {sha256} is pinned; the upstream file changed. "
            "Nothing was downloaded.")
    if hub_file.size is not None and metadata_size is not None and hub_file.size != metadata_size:
        raise HubDownloadError(
            f"{url}: the Hub reports {metadata_size} bytes, but {hub_file.size} are pinned. Nothing was downloaded.")
    sha256 = sha256 or metadata_sha256
    if not sha256:
        raise HubDownloadError(
            f"{url}: no sha256 to verify the download against: none is pinned and the server's metadata has no "
            "sha256 ETag (X-Linked-Etag / ETag of an LFS file). Nothing was downloaded.")
    size = hub_file.size if hub_file.size is not None else metadata_size
    return sha256, size


def verify(path: str, url: str, sha256: str, size: Optional[int]) -> None:
    got_size = os.path.getsize(path)
    if size is not None and got_size != size:
        raise HubDownloadError(f"{url}: downloaded {got_size} bytes, expected {size} (truncated or wrong file)")
    got = file_sha256(path)
    if got != sha256:
        raise HubDownloadError(f"{url}: sha256 of the downloaded file is {got}, expected {sha256} (corrupt or wrong file)")


def _incomplete_files(storage: str) -> dict:
    blobs = os.path.join(storage, "blobs")
    try:
        names = [n for n in os.listdir(blobs) if n.endswith(".incomplete")]
    except OSError:
        return {}
    sizes = {}
    for name in names:
        try:
            sizes[os.path.join(blobs, name)] = os.path.getsize(os.path.join(blobs, name))
        except OSError:
            pass
    return sizes


class _CacheGuard:
    """Remove what a failed fetch created in the Hugging Face cache (and nothing that was there before)."""

    def __init__(self, hub_file: HubFile, cache: str):
        self.storage = hub_file.storage_folder(cache)
        self.lock_dir = os.path.join(cache, ".locks", os.path.basename(self.storage))
        self.existed = os.path.isdir(self.storage)
        self.lock_existed = os.path.isdir(self.lock_dir)
        self.pointer_existed = find_in_cache(hub_file, cache) is not None
        self.incomplete_before = set(_incomplete_files(self.storage))
        self.cache = cache
        self.cache_existed = os.path.isdir(cache)

    def rollback(self, pointer: Optional[str] = None) -> None:
        self._rollback_entry(pointer)
        if not self.cache_existed:  # leave no empty cache skeleton (.locks, CACHEDIR.TAG) behind either
            for leftover in (os.path.join(self.cache, ".locks"), os.path.join(self.cache, "CACHEDIR.TAG")):
                if os.path.isdir(leftover) and not any(os.scandir(leftover)):
                    os.rmdir(leftover)
                elif os.path.isfile(leftover):
                    os.remove(leftover)
            if os.path.isdir(self.cache) and not any(os.scandir(self.cache)):
                os.rmdir(self.cache)

    def _rollback_entry(self, pointer: Optional[str]) -> None:
        import shutil

        if not self.existed:
            shutil.rmtree(self.storage, ignore_errors=True)
        else:
            if pointer and not self.pointer_existed:
                blob = os.path.realpath(pointer)
                for path in (pointer, blob):
                    if os.path.lexists(path):
                        os.remove(path)
            for path in set(_incomplete_files(self.storage)) - self.incomplete_before:
                os.remove(path)
        if not self.lock_existed:
            shutil.rmtree(self.lock_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# metadata and download, through huggingface_hub
# --------------------------------------------------------------------------------------------------

def _connection_errors() -> tuple:
    """The transport's "cannot reach the server" exceptions: httpx (huggingface_hub >= 1) or requests (0.x)."""
    errors = []
    for module, names in (("httpx2", ("ConnectError", "TimeoutException")), ("httpx", ("ConnectError", "TimeoutException")),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        errors += [getattr(mod, name) for name in names if hasattr(mod, name)]
    return tuple(errors)


def _metadata(url: str):
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        meta = get_hf_file_metadata(url, timeout=_TIMEOUT)
    except (OfflineModeIsEnabled,) + _connection_errors() as exc:
        raise HubUnreachableError(f"{url}: cannot reach the server ({exc})") from exc
    except HfHubHTTPError as exc:
        raise HubDownloadError(f"{url}: {str(exc).splitlines()[0].rstrip('.')}") from None
    return meta


# Runs in a child interpreter: imports huggingface_hub only, prints one JSON line.
_CHILD = """
import json, sys
args = json.loads(sys.argv[1])
try:
    from huggingface_hub import hf_hub_download
    path = hf_hub_download(args["repo_id"], args["filename"], revision=args["revision"],
                           cache_dir=args["cache"], endpoint=args["endpoint"])
    print(json.dumps({"path": path}))
except Exception as exc:
    text = str(exc).splitlines()[0] if str(exc) else ""
    print(json.dumps({"error": type(exc).__name__ + (": " + text if text else "")}))
    sys.exit(1)
"""


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0  # no /proc (not Linux): the stall bound still holds


def _bounded_download(hub_file: HubFile, commit: str, cache: str, url: str, size: Optional[int]) -> str:
    """``hf_hub_download`` in a child interpreter, stopped on no progress or runaway memory."""
    stall, memory_cap = stall_seconds(), _MEMORY_BASE + 2 * (size or 0)
    args = dict(repo_id=hub_file.repo_id, filename=hub_file.filename, revision=commit, cache=cache,
                endpoint=hub_endpoint())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the same huggingface_hub
    storage = hub_file.storage_folder(cache)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)], stdout=subprocess.PIPE, env=env)
    best, last_progress, problem = -1, time.monotonic(), None
    try:
        while proc.poll() is None:
            time.sleep(_POLL_SECONDS)
            now = time.monotonic()
            got = max(_incomplete_files(storage).values(), default=0)
            if got > best:
                best, last_progress = got, now
            rss = _rss_bytes(proc.pid)
            if now - last_progress > stall:
                problem = (f"no progress for {stall:g} s (at most {best} of {size if size else '?'} bytes arrived; a "
                           f"server that truncates responses and ignores Range requests never completes). Set "
                           f"{ENV_STALL} to wait longer")
            elif rss > memory_cap:
                problem = (f"the download used {rss / 2**20:.0f} MiB of memory, more than its cap of "
                           f"{memory_cap / 2**20:.0f} MiB (512 MiB + 2 x the file size); the server keeps "
                           f"restarting the transfer")
            if problem:
                proc.kill()
                break
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if problem:
        raise HubDownloadError(f"{url}: download stopped: {problem}")
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"error": f"the downloading interpreter exited with status {proc.returncode} and no result"}
    if "path" not in result:
        cut = f"the response was truncated after {best} of {size} bytes; " if size and 0 <= best < size else ""
        raise HubDownloadError(f"{url}: download failed ({cut}{result.get('error', '?').rstrip('.')})")
    return result["path"]


def ref_after_revision(hub_file: HubFile, commit: str, cache: Optional[str] = None) -> None:
    """Record ``refs/{revision} = commit`` (the download was pinned to the commit, so huggingface_hub did not)."""
    if commit == hub_file.revision:
        return
    refs = os.path.join(hub_file.storage_folder(cache or hf_hub_cache()), "refs")
    os.makedirs(refs, exist_ok=True)
    write_text_atomic(os.path.join(refs, hub_file.revision), commit)


def fetch(hub_file: HubFile, ready: Optional[Callable[[str], bool]] = None,
          use: Optional[Callable[[FetchedFile], object]] = None):
    """Download (or find in the Hugging Face cache) and verify ``hub_file``; returns ``(FetchedFile, use(...))``.

    ``ready(sha256)``: when it returns True for the sha256 the Hub reports, nothing is downloaded and
    the result has ``path=None`` (the caller already holds what it made from that file).
    ``use(fetched)``: run on the verified file; if it raises (e.g. the file does not convert), the
    download is removed from the cache again, like any other failure.

    Raises :class:`HubUnreachableError` when offline / unreachable (the caller then looks for other
    caches), :class:`HubDownloadError` for any other failure; the cache is left as it was.
    """
    url = hub_file.url()
    if hub_offline():
        raise HubUnreachableError(f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE') or os.environ.get('TRANSFORMERS_OFFLINE')}: "
                                  f"network use is disabled, so {url} is not fetched")
    meta = _metadata(url)
    etag = _normalize_etag(meta.etag)
    sha256, size = expected_values(hub_file, etag if etag and _SHA256.match(etag) else None, meta.size, url)
    if not meta.commit_hash:
        raise HubDownloadError(f"{url}: the response has no X-Repo-Commit header; HF_ENDPOINT={hub_endpoint()!r} "
                               "does not look like a Hugging Face Hub endpoint")
    if ready is not None and ready(sha256):
        return FetchedFile(path=None, sha256=sha256, size=size, commit=meta.commit_hash), None
    cache = hf_hub_cache()
    guard = _CacheGuard(hub_file, cache)
    pointer = None
    try:
        pointer = _bounded_download(hub_file, meta.commit_hash, cache, url, size)
        verify(pointer, url, sha256, size)
        fetched = FetchedFile(path=pointer, sha256=sha256, size=os.path.getsize(pointer), commit=meta.commit_hash)
        used = use(fetched) if use is not None else None
        ref_after_revision(hub_file, meta.commit_hash, cache)
    except BaseException:
        guard.rollback(pointer)
        raise
    return fetched, used
