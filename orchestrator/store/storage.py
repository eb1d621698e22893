"""One place that turns a results or checkpoint URI into a filesystem: local paths or ``s3://``.

S3 credentials come from the usual boto sources (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, an instance or pod role) or from ``storage_options`` (``key``, ``secret``,
``profile``...). The endpoint can be overridden for S3-compatible stores (SeaweedFS, MinIO, Ceph)
by ``storage_options["endpoint_url"]``, else env ``POSETUNE_S3_ENDPOINT``, else env
``AWS_ENDPOINT_URL``. Nothing here logs ``storage_options``: they may hold secrets.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

S3_SCHEMES = ("s3://", "s3a://")

# botocore's defaults (60 s connect timeout, several retries, times s3fs's own retries) turn an
# outage into a many-minute hang before the results spool can take over; these bound it.
DEFAULT_S3_CONFIG: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 60,
    "retries": {"max_attempts": 3, "mode": "standard"},
}


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEMES)


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def s3_options(storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``s3fs.S3FileSystem``: the caller's options plus endpoint/timeouts."""
    options = dict(storage_options or {})
    explicit = options.pop("endpoint_url", None) or (options.get("client_kwargs") or {}).get(
        "endpoint_url"
    )
    endpoint = (
        explicit or os.environ.get("POSETUNE_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        options["client_kwargs"] = {
            **(options.get("client_kwargs") or {}),
            "endpoint_url": endpoint,
        }
    config = dict(DEFAULT_S3_CONFIG)
    config.update(options.get("config_kwargs") or {})
    options["config_kwargs"] = config
    return options


def strip_scheme(uri: str) -> str:
    """``s3://bucket/key`` -> ``bucket/key``; ``file:///x`` -> ``/x``; a local path unchanged."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" in uri:
        return uri.split("://", 1)[1]
    return uri


def filesystem_for(
    uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``uri`` and the path to use with it (scheme removed).

    Local paths are made absolute; other schemes than s3 go through ``fsspec.url_to_fs``.
    """
    if is_local(uri):
        return LocalFileSystem(), os.path.abspath(os.path.expanduser(strip_scheme(uri)))
    if is_s3(uri):
        import s3fs

        return s3fs.S3FileSystem(**s3_options(storage_options)), strip_scheme(uri).rstrip("/")
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return fs, path


def pyarrow_filesystem(
    uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and scheme-less path, e.g. for Ray's ``storage_filesystem``.

    S3 goes through s3fs (wrapped in ``PyFileSystem(FSSpecHandler(...))``) so that Ray, the
    results store and checkpoint downloads share one set of credentials and endpoint rules.
    """
    fs, path = filesystem_for(uri, storage_options)
    if isinstance(fs, LocalFileSystem):
        return pafs.LocalFileSystem(), path
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def join(uri: str, *parts: str) -> str:
    """Append path parts to a local path or URI with ``/`` separators for URIs."""
    if is_local(uri) and not uri.startswith("file://"):
        return os.path.join(uri, *parts)
    cleaned = [part.strip("/") for part in parts if part.strip("/")]
    return posixpath.join(uri.rstrip("/"), *cleaned) if cleaned else uri


def exists(uri: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = filesystem_for(uri, storage_options)
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def read_bytes(uri: str, storage_options: dict[str, Any] | None = None) -> bytes:
    fs, path = filesystem_for(uri, storage_options)
    data: bytes = fs.cat_file(path)
    return data


def write_bytes_atomic(
    uri: str, data: bytes, storage_options: dict[str, Any] | None = None
) -> None:
    """Write ``data`` so that readers see either nothing or the whole file.

    Local: write a hidden ``.tmp-*`` sibling (readers skip dot files), fsync, then ``os.replace``.
    S3: one PUT of the complete bytes. S3 makes an object visible only when its PUT completes,
    so there is never a half-written object; we deliberately never stream through
    ``fs.open("wb")``, whose multipart upload can be left dangling by a crash.
    """
    fs, path = filesystem_for(uri, storage_options)
    if isinstance(fs, LocalFileSystem):
        _write_local_atomic(Path(path), data)
        return
    # 5 GiB is S3's single-PUT limit; s3fs switches to multipart above 2 * chunksize.
    fs.pipe_file(path, data, chunksize=4 * 2**30)


def _write_local_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def delete(uri: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, path = filesystem_for(uri, storage_options)
    fs.rm_file(path)


def cache_root() -> Path:
    """Root of downloaded copies: env ``POSETUNE_CACHE_DIR`` or ``~/.cache/posetune/files``."""
    configured = os.environ.get("POSETUNE_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "posetune" / "files"


def local_cache(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
) -> str:
    """A local path for ``uri``: local paths as they are, remote files or folders downloaded once.

    The copy is keyed by the URI, so it suits immutable objects (checkpoints, weight files);
    a changed remote object under the same URI is not fetched again.
    """
    if is_local(uri):
        return os.path.abspath(os.path.expanduser(strip_scheme(uri)))
    fs, path = filesystem_for(uri, storage_options)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    key = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    name = posixpath.basename(path.rstrip("/")) or "object"
    target = root / key / name
    if target.exists():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    # Download into a private temp dir, then rename: a crash never leaves a half copy at target.
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        fs.invalidate_cache(path)
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(staging / name), recursive=True)
        else:
            fs.get_file(path, str(staging / name))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging / name, target)
        except OSError:
            if not target.exists():  # another process may have won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
