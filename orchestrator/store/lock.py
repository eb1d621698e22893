"""One writer at a time per results store (a sweep, or a compaction): a lock file locally, a
lease object on S3.

Two sweeps into the same store would plan the same trials, both train them and race on
``--resume``. The second sweep therefore refuses at once, with one line naming the store and
the holder (host, pid, since when), instead of waiting an unknown time.

- Local store: ``RESULTS/.posetune-sweep.lock`` held with ``flock``; the kernel releases it
  when the holding process dies, however it dies.
- S3 store: ``RESULTS/_posetune-sweep.lease.json`` holding an owner token and an expiry. The
  holder renews it every ``LEASE_S / 3`` seconds from a thread and deletes it at the end;
  a lease left by a killed driver expires after ``LEASE_S`` (the refusal says when). S3 has
  no compare-and-swap here, so after writing its lease the driver reads it back after a
  short pause and proceeds only if its own token is there: of two sweeps starting within
  the same instant, at most one proceeds.

Readers (``posetune query``, ``table``, ``report``) take no lock: rows are immutable files, and
a compaction replaces files so that a reader sees every row exactly once at any moment
(orchestrator.store.layout).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from orchestrator.store import storage

LOCK_FILE = ".posetune-sweep.lock"
LEASE_FILE = "_posetune-sweep.lease.json"
LEASE_S = float(os.environ.get("POSETUNE_LEASE_S", "300"))
SETTLE_S = 1.0


class StoreBusy(RuntimeError):
    """Another sweep or compaction holds the results store."""

    def __init__(self, store: str, holder: str, command: str = "sweep") -> None:
        self.store, self.holder, self.command = store, holder, command
        super().__init__(f"results store {store} is in use by another posetune {command} "
                         f"({holder}); wait for it to end, or use another --results")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.store, self.holder, self.command))


def _holder(command: str) -> dict[str, str | int]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": command,
            "since": datetime.now(UTC).isoformat(timespec="seconds")}


def _describe(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"


@contextmanager
def store_lock(uri: str, command: str = "sweep") -> Iterator[None]:
    """Hold the store for one sweep or compaction (``command`` names it to whoever is
    refused; see the module docstring)."""
    if storage.is_local(uri):
        with _local_lock(Path(storage.strip_scheme(uri)), command):
            yield
    else:
        with _lease(uri, command):
            yield


@contextmanager
def _local_lock(folder: Path, command: str) -> Iterator[None]:
    """``flock`` on the lock file. A store this lock created and the sweep left empty (its
    preflight failed) is removed again, with the parent folders it created (``runs/`` of
    ``runs/NAME``): a refused sweep leaves no folder behind."""
    created = not folder.exists()
    made = [parent for parent in (folder, *folder.absolute().parents) if not parent.exists()]
    try:
        handle = _locked(folder)
    except OSError as error:
        raise not_writable(str(folder), error) from error
    with handle:
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder(command)))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            if created and os.listdir(folder) == [LOCK_FILE]:
                os.unlink(folder / LOCK_FILE)  # still held: no one locks the removed file
                fcntl.flock(handle, fcntl.LOCK_UN)
                with contextlib.suppress(OSError):  # another sweep just started there
                    for empty in made:  # the store's folder first, then its new parents
                        empty.rmdir()
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _locked(folder: Path) -> TextIO:
    """The lock file, open and locked, or :class:`StoreBusy` naming its holder."""
    path = folder / LOCK_FILE
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - returned open, closed by the caller
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                info = json.loads(handle.read() or "{}")
            except ValueError:
                info = {}
            handle.close()
            raise StoreBusy(str(folder), _describe(info), _command(info)) from None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()  # locked a file an ending sweep had just removed: open the new one


@contextmanager
def _lease(uri: str, command: str) -> Iterator[None]:
    path = storage.join(uri, LEASE_FILE)
    token = uuid.uuid4().hex
    try:
        current = _read_lease(path)
        if current and current.get("token") != token and \
                float(current.get("expires", 0)) > time.time():
            raise StoreBusy(uri, f"{_describe(current)}; its lease expires "
                            f"{_when(float(current['expires']))} if it was killed",
                            _command(current))
        _write_lease(path, token, command)
    except StoreBusy:
        raise
    except Exception as error:  # unreachable, bad credentials: one line naming the store
        raise not_writable(uri, error) from error
    time.sleep(SETTLE_S)
    current = _read_lease(path)
    if not current or current.get("token") != token:
        raise StoreBusy(uri, _describe(current or {}), _command(current or {}))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 3):
            _write_lease(path, token, command)

    thread = threading.Thread(target=renew, name="posetune-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        if (_read_lease(path) or {}).get("token") == token:
            storage.delete(path)


def not_writable(store: str, error: BaseException) -> PermissionError:
    lines = str(error).strip().splitlines()
    return PermissionError(f"results store {store} is not writable: {type(error).__name__}: "
                           f"{lines[0] if lines else ''}")


def _command(info: dict[str, Any]) -> str:
    return str(info.get("command") or "sweep")  # leases of older versions name no command


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


def _read_lease(path: str) -> dict[str, Any] | None:
    if not storage.exists(path):
        return None
    try:
        return dict(json.loads(storage.read_bytes(path)))
    except (ValueError, FileNotFoundError):
        return None


def _write_lease(path: str, token: str, command: str) -> None:
    lease = {**_holder(command), "token": token, "expires": time.time() + LEASE_S}
    storage.write_bytes_atomic(path, json.dumps(lease).encode())
