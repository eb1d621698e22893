"""Storage and results store against a real S3 server (SeaweedFS on 127.0.0.1).

The `s3_server` fixture comes from tests/s3server.py through tests/conftest.py.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs

from orchestrator.store import storage
from orchestrator.store.query import query
from orchestrator.store.results import ResultsStore
from tests.s3server import SeaweedS3, start_s3
from tests.test_results import make_epoch, make_trial

pytestmark = pytest.mark.s3


def fresh_prefix(server: SeaweedS3, name: str) -> str:
    return server.uri(f"{name}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(autouse=True)
def private_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    spool = tmp_path / "spool"
    monkeypatch.setenv("POSETUNE_SPOOL_DIR", str(spool))
    monkeypatch.setenv("POSETUNE_CACHE_DIR", str(tmp_path / "cache"))
    return spool


def test_storage_functions_over_s3(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    base = fresh_prefix(s3_server, "storage")
    options = {"key": s3_server.key, "secret": s3_server.secret}
    # The endpoint may come from the environment instead of storage_options.
    monkeypatch.setenv("POSETUNE_S3_ENDPOINT", s3_server.endpoint_url)
    target = storage.join(base, "dir", "blob.bin")
    assert not storage.exists(target, options)
    storage.write_bytes_atomic(target, b"payload", options)
    assert storage.exists(target, options)
    assert storage.read_bytes(target, options) == b"payload"
    # An endpoint in storage_options wins over the environment.
    monkeypatch.setenv("POSETUNE_S3_ENDPOINT", "http://127.0.0.1:9")
    assert storage.exists(target, s3_server.storage_options)
    monkeypatch.setenv("POSETUNE_S3_ENDPOINT", s3_server.endpoint_url)

    fs, path = storage.filesystem_for(target, options)
    assert isinstance(fs, s3fs.S3FileSystem) and path == target.removeprefix("s3://")
    assert "secret" not in repr(fs) and s3_server.secret not in repr(fs)

    pafs, folder = storage.pyarrow_filesystem(storage.join(base, "table"), options)
    pq.write_table(pa.table({"x": [1, 2]}), f"{folder}/t.parquet", filesystem=pafs)
    assert pq.read_table(f"{folder}/t.parquet", filesystem=pafs)["x"].to_pylist() == [1, 2]


def test_local_cache_downloads_once(s3_server: SeaweedS3, tmp_path: Path) -> None:
    base = fresh_prefix(s3_server, "cache")
    options = s3_server.storage_options
    storage.write_bytes_atomic(storage.join(base, "w.pth"), b"weights", options)
    storage.write_bytes_atomic(storage.join(base, "ckpt", "a.pt"), b"a", options)
    storage.write_bytes_atomic(storage.join(base, "ckpt", "sub", "b.pt"), b"b", options)

    single = Path(storage.local_cache(storage.join(base, "w.pth"), options))
    folder = Path(storage.local_cache(storage.join(base, "ckpt"), options))
    assert single.read_bytes() == b"weights" and single.is_relative_to(tmp_path / "cache")
    assert (folder / "a.pt").read_bytes() == b"a" and (folder / "sub" / "b.pt").read_bytes() == b"b"

    fs, path = storage.filesystem_for(base, options)
    fs.rm(path, recursive=True)  # gone remotely: the cached copies are still served
    assert storage.local_cache(storage.join(base, "w.pth"), options) == str(single)
    assert storage.local_cache(storage.join(base, "ckpt"), options) == str(folder)


def test_results_store_over_s3(s3_server: SeaweedS3) -> None:
    uri = fresh_prefix(s3_server, "results")
    store = ResultsStore(uri, s3_server.storage_options)
    store.check_writable()
    written = store.append_trial(make_trial(trial_id="a", variant_id="va", AP=0.4))
    store.append_trial(make_trial(trial_id="b", variant_id="vb", AP=0.8))
    store.append_epochs([make_epoch(e, trial_id="a", variant_id="va") for e in range(3)])
    assert written.startswith(f"{uri}/trials/part-a-")
    assert storage.exists(written, s3_server.storage_options)

    assert store.read_trials()["trial_id"].to_pylist() == ["a", "b"]
    assert store.read_epochs().num_rows == 3
    assert set(store.finished_rows("exp")) == {("main", "va", 0), ("main", "vb", 0)}
    best = query(uri, "SELECT variant_id, AP FROM trials WHERE AP > 0.5", s3_server.storage_options)
    assert best.to_pylist() == [{"variant_id": "vb", "AP": 0.8}]
    assert store.spooled_files() == []
    fs, path = storage.filesystem_for(uri, s3_server.storage_options)
    assert not any("_probe" in name for name in fs.find(path))


def test_check_writable_names_the_uri_on_bad_credentials(s3_server: SeaweedS3) -> None:
    uri = fresh_prefix(s3_server, "denied")
    options = {**s3_server.storage_options, "secret": "wrong-secret"}
    with pytest.raises(PermissionError, match=uri) as info:
        ResultsStore(uri, options).check_writable()
    assert "wrong-secret" not in str(info.value)


def trial_ids(store: ResultsStore, latest_only: bool = True) -> list[str]:
    return sorted(store.read_trials(latest_only=latest_only)["trial_id"].to_pylist())


def test_outage_spools_locally_and_flushes_when_s3_is_back(
    tmp_path: Path, private_spool: Path, caplog: Any
) -> None:
    server = start_s3(tmp_path / "weed")
    try:
        uri = server.uri("outage")
        # One attempt per request: retries cannot help against a stopped server, only slow us.
        options = {**server.storage_options, "config_kwargs": {"retries": {"max_attempts": 1}}}
        store = ResultsStore(uri, options)
        store.append_trial(make_trial(trial_id="t1", variant_id="v1"))

        server.stop()
        with caplog.at_level(logging.WARNING, logger="orchestrator.store.results"):
            spooled = store.append_trial(make_trial(trial_id="t2", variant_id="v2"))
            store.append_epochs([make_epoch(0, trial_id="t2", variant_id="v2")])
        assert Path(spooled).is_file() and Path(spooled).is_relative_to(private_spool)
        assert any(spooled in record.getMessage() for record in caplog.records)
        assert len(store.spooled_files()) == 2

        server.start()
        # Before the flush, reads merge the spool: every row is visible exactly once.
        assert trial_ids(store) == ["t1", "t2"]
        uploaded = store.flush_spool()
        assert len(uploaded) == 2 and all(u.startswith(uri) for u in uploaded)
        assert store.spooled_files() == []
        assert trial_ids(store, latest_only=False) == ["t1", "t2"]
        assert store.read_epochs()["trial_id"].to_pylist() == ["t2"]

        # A writer that cannot reach S3 spools; the next healthy append uploads its file first.
        dead = {**options, "endpoint_url": "http://127.0.0.1:9"}
        ResultsStore(uri, dead).append_trial(make_trial(trial_id="t3", variant_id="v3"))
        assert len(store.spooled_files()) == 1
        store.append_trial(make_trial(trial_id="t4", variant_id="v4"))
        assert store.spooled_files() == []
        assert trial_ids(store, latest_only=False) == ["t1", "t2", "t3", "t4"]
    finally:
        server.stop()
