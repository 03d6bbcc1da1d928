"""Fetch one file of a Hugging Face Hub repository, verified, into the Hugging Face cache layout.

Used by :mod:`.pretrained` for timm's ``model.safetensors``. Behaves like ``huggingface_hub``:

* URL ``{HF_ENDPOINT or https://huggingface.co}/{repo_id}/resolve/{revision}/{filename}``;
* ``HF_HUB_OFFLINE`` (``1/true/yes/on``, like huggingface_hub; also ``TRANSFORMERS_OFFLINE``): no network,
  the file must already be in the cache;
* cache ``HF_HUB_CACHE`` (else ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``${XDG_CACHE_HOME:-~/.cache}/huggingface/hub``), laid out as huggingface_hub lays it out
  (``models--{org}--{name}/blobs/{etag}``, ``snapshots/{commit}/{filename}`` -> blob, ``refs/{revision}``),
  so timm and huggingface_hub find a file downloaded here and vice versa.

Every environment variable is read at call time (huggingface_hub reads its own at import time; the
endpoint, cache directory and offline flag are therefore passed to it explicitly).

Two transports: ``huggingface_hub.hf_hub_download`` when huggingface_hub >= 1 is importable (and
``MINDCV_HALONET_NO_HF_HUB`` is not set), else the standard library (``urllib``) with a progress
counter on stderr. Both take the expected size and sha256 from the Hub's metadata (``HEAD`` of the
resolve URL: ``X-Linked-Size`` / ``Content-Length`` and ``X-Linked-Etag`` / ``ETag``, which for an LFS
file is its sha256, plus ``X-Repo-Commit``), or from pinned values, and check the downloaded bytes
against them. The standard-library path writes to a temporary file and moves it into the cache only
after the check; huggingface_hub moves its file into its cache itself (after its own size check), so
on a failed sha256 check the entries it created are removed again. A failure never leaves a file in
the cache.
"""
import hashlib
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

from mindcv_halonet.convert.progress import Progress

ENV_NO_HF_HUB = "MINDCV_HALONET_NO_HF_HUB"
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "ON", "YES", "TRUE"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
_TIMEOUT = 10.0  # seconds, like huggingface_hub's metadata timeout


class HubDownloadError(RuntimeError):
    """The file could not be fetched or did not verify; nothing was cached."""


class HubUnreachableError(HubDownloadError):
    """No network use allowed (HF_HUB_OFFLINE) or the endpoint could not be reached."""


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


def use_huggingface_hub() -> bool:
    """huggingface_hub's transport: when it is importable, ``MINDCV_HALONET_NO_HF_HUB`` is not set and it is
    1.0 or newer. The 0.x line (on ``requests``; what MindOCR 0.5.0 users have, as it needs < 1) raises
    bare ``requests`` errors that do not say truncated / unreachable, so the standard library is used."""
    if env_true(ENV_NO_HF_HUB):
        return False
    try:
        import huggingface_hub
    except ImportError:
        return False
    major = str(getattr(huggingface_hub, "__version__", "0")).split(".")[0]
    return major.isdigit() and int(major) >= 1


@dataclass(frozen=True)
class HubFile:
    """One file of a model repository at a revision, with optionally pinned size / sha256."""

    repo_id: str
    revision: str = "main"
    filename: str = "model.safetensors"
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


@dataclass(frozen=True)
class _Metadata:
    commit: Optional[str]
    etag: Optional[str]
    size: Optional[int]
    location: str


def _normalize_etag(etag: Optional[str]) -> Optional[str]:
    if not etag:
        return None
    etag = etag.strip()
    return (etag[2:] if etag.startswith("W/") else etag).strip('"') or None


def _int_or_none(value) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# cache lookup (no network)
# --------------------------------------------------------------------------------------------------

def find_in_cache(hub_file: HubFile, cache: Optional[str] = None) -> Optional[str]:
    """Path of ``hub_file`` in the Hugging Face cache (via ``refs/{revision}`` or a commit revision), or None."""
    storage = hub_file.storage_folder(cache)
    commit = hub_file.revision if _COMMIT.match(hub_file.revision) else None
    ref = os.path.join(storage, "refs", hub_file.revision)
    if commit is None and os.path.isfile(ref):
        with open(ref, encoding="utf-8") as f:
            commit = f.read().strip()
    if not commit:
        return None
    path = os.path.join(storage, "snapshots", commit, *hub_file.filename.split("/"))
    return path if os.path.isfile(path) else None


# --------------------------------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------------------------------

def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


class _CacheGuard:
    """Remove what a failed fetch created in the Hugging Face cache (and nothing that was there before)."""

    def __init__(self, hub_file: HubFile, cache: str):
        self.storage = hub_file.storage_folder(cache)
        self.lock_dir = os.path.join(cache, ".locks", os.path.basename(self.storage))
        self.existed = os.path.isdir(self.storage)
        self.lock_existed = os.path.isdir(self.lock_dir)
        self.pointer_existed = find_in_cache(hub_file, cache) is not None
        self.hub_file, self.cache = hub_file, cache
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
        if not self.existed:
            shutil.rmtree(self.storage, ignore_errors=True)
        elif pointer and not self.pointer_existed:
            blob = os.path.realpath(pointer)
            for path in (pointer, blob):
                if os.path.lexists(path):
                    os.remove(path)
        if not self.lock_existed:
            shutil.rmtree(self.lock_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# metadata + transports
# --------------------------------------------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _headers() -> dict:
    from mindcv_halonet import __version__

    return {"User-Agent": f"mindcv-halonet/{__version__}; python/{sys.version.split()[0]}",
            "Accept-Encoding": "identity"}


def _origin(url: str):
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _stdlib_metadata(url: str) -> _Metadata:
    """HEAD the resolve URL like huggingface_hub: follow redirects within the same origin, stop at
    one to another origin (the CDN); the file's metadata is on that redirect response."""
    opener = urllib.request.build_opener(_NoRedirect)
    current = url
    for _ in range(10):
        request = urllib.request.Request(current, method="HEAD", headers=_headers())
        try:
            response = opener.open(request, timeout=_TIMEOUT)
            status, headers = response.status, response.headers
            response.close()
        except urllib.error.HTTPError as exc:
            status, headers = exc.code, exc.headers
            if status not in (301, 302, 303, 307, 308):
                raise HubDownloadError(f"{url}: HTTP {status} {exc.reason}"
                                       + (f" ({headers.get('X-Error-Message')})" if headers.get("X-Error-Message") else "")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise HubUnreachableError(f"{url}: cannot reach the server ({getattr(exc, 'reason', exc)})") from exc
        location = headers.get("Location")
        redirect = status in (301, 302, 303, 307, 308) and location
        if redirect and _origin(urllib.parse.urljoin(current, location)) == _origin(current):
            current = urllib.parse.urljoin(current, location)
            continue
        return _Metadata(
            commit=headers.get("X-Repo-Commit"),
            etag=_normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag")),
            size=_int_or_none(headers.get("X-Linked-Size") or (None if redirect else headers.get("Content-Length"))),
            location=location if redirect else current,
        )
    raise HubDownloadError(f"{url}: too many redirects")


def _hf_metadata(url: str) -> _Metadata:
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        meta = get_hf_file_metadata(url)
    except (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled) as exc:
        raise HubUnreachableError(f"{url}: cannot reach the server ({exc})") from exc
    except HfHubHTTPError as exc:
        raise HubDownloadError(f"{url}: {str(exc).splitlines()[0].rstrip('.')}") from None
    return _Metadata(commit=meta.commit_hash, etag=_normalize_etag(meta.etag), size=meta.size, location=meta.location)


def _metadata(url: str, with_hf: bool) -> _Metadata:
    if with_hf:
        try:
            import httpx2  # noqa: F401
        except ImportError:  # an older huggingface_hub on requests: its own metadata errors are generic
            with_hf = False
    return _hf_metadata(url) if with_hf else _stdlib_metadata(url)


def _stdlib_get(location: str, url: str, tmp: str, size: Optional[int], quiet: bool) -> None:
    request = urllib.request.Request(location, headers=_headers())
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT)
    except urllib.error.HTTPError as exc:
        raise HubDownloadError(f"{url}: HTTP {exc.code} {exc.reason} on download ({location})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise HubUnreachableError(f"{url}: cannot reach the server ({getattr(exc, 'reason', exc)})") from exc
    total = size or _int_or_none(response.headers.get("Content-Length")) or 0
    show = not quiet and total > 0 and not env_true("HF_HUB_DISABLE_PROGRESS_BARS")
    progress = Progress(f"downloading {url} (bytes)", enabled=show)
    done = 0
    try:
        with response, open(tmp, "wb") as out:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                progress(done, total)
    except Exception as exc:  # http.client.IncompleteRead, connection reset, timeout, ...
        raise HubDownloadError(f"{url}: download broke off after {done} of {total or '?'} bytes ({exc!r})") from exc


def _place_in_cache(hub_file: HubFile, cache: str, tmp: str, etag: str, commit: str) -> str:
    """Move a verified download into the HF layout: blobs/{etag}, snapshots/{commit}/{file}, refs/{revision}."""
    storage = hub_file.storage_folder(cache)
    blob = os.path.join(storage, "blobs", etag)
    pointer = os.path.join(storage, "snapshots", commit, *hub_file.filename.split("/"))
    os.makedirs(os.path.dirname(pointer), exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, blob)
    if not os.path.lexists(pointer):
        try:
            os.symlink(os.path.relpath(blob, os.path.dirname(pointer)), pointer)
        except OSError:  # no symlinks (e.g. Windows without developer mode): keep the file itself
            os.replace(blob, pointer)
    ref_after_revision(hub_file, commit, cache)
    return pointer


def fetch(hub_file: HubFile, quiet: bool = False, ready: Optional[Callable[[str], bool]] = None,
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
    with_hf = use_huggingface_hub()
    meta = _metadata(url, with_hf)
    sha256, size = expected_values(hub_file, meta.etag if meta.etag and _SHA256.match(meta.etag) else None,
                                   meta.size, url)
    if not meta.commit:
        raise HubDownloadError(f"{url}: the response has no X-Repo-Commit header; HF_ENDPOINT={hub_endpoint()!r} "
                               "does not look like a Hugging Face Hub endpoint")
    if ready is not None and ready(sha256):
        return FetchedFile(path=None, sha256=sha256, size=size, commit=meta.commit), None
    cache = hf_hub_cache()
    guard = _CacheGuard(hub_file, cache)
    pointer = None
    try:
        if with_hf:
            pointer = _hf_download(hub_file, meta.commit, cache, url)
        else:
            pointer = os.path.join(hub_file.storage_folder(cache), "snapshots", meta.commit,
                                   *hub_file.filename.split("/"))
            if not os.path.isfile(pointer):
                blobs = os.path.join(hub_file.storage_folder(cache), "blobs")
                os.makedirs(blobs, exist_ok=True)
                tmp = os.path.join(blobs, f".{sha256}.{uuid.uuid4().hex[:8]}.incomplete")
                try:
                    _stdlib_get(meta.location, url, tmp, size, quiet)
                    verify(tmp, url, sha256, size)
                    pointer = _place_in_cache(hub_file, cache, tmp, sha256, meta.commit)
                finally:
                    if os.path.exists(tmp):
                        os.remove(tmp)
        verify(pointer, url, sha256, size)
        fetched = FetchedFile(path=pointer, sha256=sha256, size=os.path.getsize(pointer), commit=meta.commit)
        used = use(fetched) if use is not None else None
        # huggingface_hub downloaded by commit, so it recorded no refs/{revision} (the stdlib path did)
        ref_after_revision(hub_file, meta.commit, cache)
    except BaseException:
        guard.rollback(pointer)
        raise
    return fetched, used


def _hf_download(hub_file: HubFile, commit: str, cache: str, url: str) -> str:
    from huggingface_hub import hf_hub_download

    # its own progress bar (tqdm; HF_HUB_DISABLE_PROGRESS_BARS turns it off)
    try:
        return hf_hub_download(hub_file.repo_id, hub_file.filename, revision=commit, cache_dir=cache,
                               endpoint=hub_endpoint())
    except Exception as exc:  # huggingface_hub / httpx errors: one clear error naming the URL
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HubDownloadError(f"{url}: download failed ({type(exc).__name__}: {first.rstrip('.')})") from exc


def ref_after_revision(hub_file: HubFile, commit: str, cache: Optional[str] = None) -> None:
    """Record ``refs/{revision} = commit`` (huggingface_hub records it itself; used after a commit-pinned download)."""
    if commit == hub_file.revision:
        return
    storage = hub_file.storage_folder(cache or hf_hub_cache())
    os.makedirs(os.path.join(storage, "refs"), exist_ok=True)
    tmp = os.path.join(storage, "refs", f".{hub_file.revision}.{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(commit)
    os.replace(tmp, os.path.join(storage, "refs", hub_file.revision))
