"""Results store on a local folder: derived schema, atomic writes, dedup, SQL and formats."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.store import storage
from orchestrator.store.query import format_table, query
from orchestrator.store.results import ResultsStore
from orchestrator.store.schema import EpochRecord, TrialRecord, arrow_schema

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_trial(**overrides: Any) -> TrialRecord:
    """A complete trial record; metrics and optional fields can be overridden."""
    values: dict[str, Any] = dict(
        experiment="exp",
        stage="main",
        variant_id="v0",
        trial_id="t0",
        seed=0,
        status="ok",
        error=None,
        backbone="hrnet_w32",
        head="heatmap",
        init="imagenet",
        init_checkpoint=None,
        lr=5e-4,
        epochs=3,
        batch_size=8,
        augment="none",
        real_count=10,
        synthetic_count=0,
        datasets="base=animalpose,real=lynx-train,synthetic=lynx-synthetic,test=lynx-test",
        input_size=256,
        loss="mse",
        schedule="study",
        config_json='{"train": {"lr": 0.0005}}',
        subset_digest="abc123",
        AP=0.6,
        AP50=0.8,
        AP75=0.65,
        AP85=0.5,
        AR=0.66,
        PCK05=0.7,
        pck_per_keypoint=[0.5, 0.75, 1.0],
        keypoint_names=["nose", "left_eye", "right_eye"],
        sigma_set="animalpose",
        sigma_digest="d1",
        area_rule="given",
        pck_normaliser="bbox",
        params_m=28.5,
        gflops=7.1,
        best_epoch=2,
        epochs_run=3,
        wall_s=12.5,
        gpu_hours=0.0035,
        train_images_per_s=40.0,
        checkpoint_uri="s3://bucket/ckpt/t0",
        posetune_version="0.1.0",
        torch_version="2.x",
        timm_version="1.x",
        ray_version="2.60.0",
        git_commit=None,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=5),
        node="node-1",
        workers=1,
        use_gpu=False,
    )
    values.update(overrides)
    return TrialRecord(**values)


def make_epoch(epoch: int, **overrides: Any) -> EpochRecord:
    values: dict[str, Any] = dict(
        experiment="exp",
        stage="main",
        variant_id="v0",
        trial_id="t0",
        seed=0,
        epoch=epoch,
        loss=1.0 / (epoch + 1),
        lr=5e-4,
        AP=None,
        PCK05=None,
        wall_s=1.5,
        images_per_s=None,
        restarted=False,
    )
    values.update(overrides)
    return EpochRecord(**values)


NULLABLE = [f.name for f in dataclasses.fields(TrialRecord) if "None" in str(f.type)]


def all_none_trial(**overrides: Any) -> TrialRecord:
    return make_trial(**{name: None for name in NULLABLE}, **overrides)


def test_schema_is_derived_from_the_record() -> None:
    schema = arrow_schema(TrialRecord)
    assert schema.names == [f.name for f in dataclasses.fields(TrialRecord)]
    assert schema.field("seed").type == pa.int64() and not schema.field("seed").nullable
    assert schema.field("AP").type == pa.float64() and schema.field("AP").nullable
    assert schema.field("status").type == pa.string()
    assert schema.field("use_gpu").type == pa.bool_()
    assert schema.field("pck_per_keypoint").type == pa.list_(pa.float64())
    assert schema.field("keypoint_names").type == pa.list_(pa.string())
    assert schema.field("ended_at").type == pa.timestamp("us", tz="UTC")
    assert arrow_schema(EpochRecord).field("restarted").type == pa.bool_()


def test_records_are_checked_and_normalised() -> None:
    record = make_trial(AP=np.float32(0.5), seed=np.int64(3), pck_per_keypoint=(1, 0.5))
    assert type(record.AP) is float and type(record.seed) is int
    assert record.pck_per_keypoint == [1.0, 0.5]
    with pytest.raises(ValueError, match="status"):
        make_trial(status="done")
    with pytest.raises(ValueError, match="timezone-aware"):
        make_trial(ended_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="TrialRecord.lr"):
        make_trial(lr="0.001")
    with pytest.raises(ValueError, match="TrialRecord.seed"):
        make_trial(seed=True)


def test_round_trip_keeps_values_and_types(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "res"))
    full = make_trial(trial_id="t-full", variant_id="a")
    empty = all_none_trial(trial_id="t-none", variant_id="b", status="failed")
    path = store.append_trial(full)
    store.append_trial(empty)
    assert Path(path).parent == tmp_path / "res" / "trials"
    assert Path(path).name.startswith("part-t-full-") and path.endswith(".parquet")

    table = store.read_trials()
    assert table.schema.equals(arrow_schema(TrialRecord))
    rows = table.to_pylist()
    assert rows == [dataclasses.asdict(full), dataclasses.asdict(empty)]


def test_all_none_columns_are_typed_on_disk(tmp_path: Path) -> None:
    path = ResultsStore(str(tmp_path)).append_trial(all_none_trial())
    schema = pq.read_schema(path)
    assert schema.field("error").type == pa.string()
    assert schema.field("pck_per_keypoint").type == pa.list_(pa.float64())
    assert schema.field("best_epoch").type == pa.int64()
    assert not any(pa.types.is_null(field.type) for field in schema)


def test_files_from_older_schemas_are_read_with_missing_columns_as_null(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.append_trial(make_trial())
    old = pa.Table.from_pylist([dataclasses.asdict(make_trial(trial_id="old"))])
    pq.write_table(old.drop_columns(["gflops", "node"]), tmp_path / "trials" / "part-old.parquet")
    table = store.read_trials(latest_only=False)
    assert table.num_rows == 2 and table.schema.equals(arrow_schema(TrialRecord))
    by_id = {row["trial_id"]: row for row in table.to_pylist()}
    assert by_id["old"]["gflops"] is None and by_id["t0"]["gflops"] == 7.1


def test_empty_or_missing_store_reads_as_empty_typed_tables(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "nothing-here"))
    assert store.read_trials().num_rows == 0
    assert store.read_trials().schema.equals(arrow_schema(TrialRecord))
    assert store.read_epochs().schema.equals(arrow_schema(EpochRecord))
    assert store.finished_rows("exp") == {}
    assert query(str(tmp_path / "nothing-here")).num_rows == 0


def test_readers_ignore_hidden_and_underscore_files(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.append_trial(make_trial())
    (tmp_path / "trials" / ".tmp-part-x.parquet").write_bytes(b"half a file")
    (tmp_path / "trials" / "_probe-1234.parquet").write_bytes(b"junk")
    assert store.read_trials().num_rows == 1


def test_a_failed_write_leaves_nothing_visible(tmp_path: Path, monkeypatch: Any) -> None:
    store = ResultsStore(str(tmp_path))
    store.append_trial(make_trial(trial_id="before"))
    seen_during_write: list[int] = []
    real_fsync = os.fsync

    def fsync_then_crash(fd: int) -> None:
        real_fsync(fd)
        # The bytes are on disk under the hidden temp name; a reader must not see them.
        hidden = [p.name for p in (tmp_path / "trials").iterdir() if p.name.startswith(".tmp-")]
        assert len(hidden) == 1
        seen_during_write.append(store.read_trials().num_rows)
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "fsync", fsync_then_crash)
    with pytest.raises(OSError, match="disk full"):
        store.append_trial(make_trial(trial_id="crashed", variant_id="v1"))
    monkeypatch.undo()
    assert seen_during_write == [1]
    assert [p.name.split("-")[1] for p in (tmp_path / "trials").iterdir()] == ["before"]
    assert store.read_trials()["trial_id"].to_pylist() == ["before"]


def test_latest_row_per_trial_key_wins(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.append_trial(make_trial(trial_id="late", AP=0.7, ended_at=T0 + timedelta(hours=2)))
    store.append_trial(make_trial(trial_id="early", AP=0.1, ended_at=T0 + timedelta(hours=1)))
    store.append_trial(make_trial(trial_id="seed1", seed=1, AP=0.2))
    latest = store.read_trials()
    assert latest["trial_id"].to_pylist() == ["late", "seed1"]
    assert latest["AP"].to_pylist() == [0.7, 0.2]
    everything = store.read_trials(latest_only=False)
    assert sorted(everything["trial_id"].to_pylist()) == ["early", "late", "seed1"]


def test_finished_rows_follow_the_latest_row(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.append_trial(make_trial(variant_id="ok", trial_id="a"))
    store.append_trial(make_trial(variant_id="failed", trial_id="b", status="failed", AP=None))
    store.append_trial(make_trial(variant_id="stopped", trial_id="c", status="stopped"))
    store.append_trial(make_trial(variant_id="ok", trial_id="d", seed=1))
    store.append_trial(make_trial(experiment="other", variant_id="elsewhere", trial_id="e"))
    # Succeeded first, then a forced re-run failed: the latest row decides.
    store.append_trial(make_trial(variant_id="rerun", trial_id="f"))
    later = T0 + timedelta(days=1)
    store.append_trial(
        make_trial(variant_id="rerun", trial_id="g", status="failed", ended_at=later)
    )
    assert set(store.finished_rows("exp")) == {("main", "ok", 0), ("main", "ok", 1), ("main", "stopped", 0)}
    assert set(store.finished_rows("other")) == {("main", "elsewhere", 0)}


def test_epochs_round_trip(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    store.append_epochs([make_epoch(e) for e in range(3)])
    store.append_epochs([make_epoch(2, restarted=True, AP=0.4, PCK05=0.5, images_per_s=33.0)])
    table = store.read_epochs()
    assert table.schema.equals(arrow_schema(EpochRecord))
    assert table["epoch"].to_pylist() == [0, 1, 2, 2]
    assert table["restarted"].to_pylist() == [False, False, False, True]
    with pytest.raises(ValueError, match="at least one"):
        store.append_epochs([])


def sample_store(root: Path) -> str:
    store = ResultsStore(str(root))
    for variant, ap in [("low", 0.3), ("high", 0.9), ("mid", 0.6), ("none", None)]:
        store.append_trial(make_trial(variant_id=variant, trial_id=f"t-{variant}", AP=ap))
    store.append_epochs([make_epoch(e, variant_id="high", trial_id="t-high") for e in range(2)])
    return str(root)


def test_query_runs_sql_over_trials_and_epochs(tmp_path: Path) -> None:
    uri = sample_store(tmp_path)
    table = query(uri, "SELECT variant_id, AP FROM trials WHERE AP > 0.5 ORDER BY AP")
    assert table.to_pylist() == [
        {"variant_id": "mid", "AP": 0.6},
        {"variant_id": "high", "AP": 0.9},
    ]
    assert query(uri).num_rows == 4
    epochs = query(uri, "SELECT count(*) AS n, max(epoch) AS last FROM epochs")
    assert epochs.to_pylist() == [{"n": 2, "last": 1}]
    assert query(uri, "SELECT count(*) AS n FROM all_trials").to_pylist() == [{"n": 4}]


def test_query_errors_are_one_line_value_errors(tmp_path: Path) -> None:
    uri = sample_store(tmp_path)
    with pytest.raises(ValueError, match="Binder Error") as info:
        query(uri, "SELECT nope FROM trials")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="Parser Error"):
        query(uri, "SELEC 1")
    with pytest.raises(ValueError, match="query failed"):  # no file access from queries
        query(uri, f"COPY trials TO '{tmp_path / 'leak.csv'}'")
    assert not (tmp_path / "leak.csv").exists()


def test_format_table_csv_json_and_text(tmp_path: Path) -> None:
    uri = sample_store(tmp_path)
    table = query(
        uri, "SELECT variant_id, AP, lr, pck_per_keypoint, ended_at FROM trials ORDER BY variant_id"
    )
    parsed = json.loads(format_table(table, "json"))
    assert [row["variant_id"] for row in parsed] == ["high", "low", "mid", "none"]
    assert parsed[3]["AP"] is None and parsed[0]["pck_per_keypoint"] == [0.5, 0.75, 1.0]
    assert parsed[0]["ended_at"].startswith("2026-01-02T03:09:05")

    rows = list(csv.DictReader(io.StringIO(format_table(table, "csv"))))
    assert rows[0]["variant_id"] == "high" and float(rows[0]["AP"]) == 0.9
    assert rows[3]["AP"] == "" and json.loads(rows[0]["pck_per_keypoint"]) == [0.5, 0.75, 1.0]

    text = format_table(table, "table").splitlines()
    assert text[0].split() == ["variant_id", "AP", "lr", "pck_per_keypoint", "ended_at"]
    assert text[2].split()[:3] == ["high", "0.9", "0.0005"]
    assert text[-1] == "(4 rows)"
    with pytest.raises(ValueError, match="valid formats"):
        format_table(table, "xml")  # type: ignore[arg-type]


def test_local_store_has_no_spool_and_check_writable(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path / "new"))
    store.check_writable()
    assert list((tmp_path / "new").iterdir()) == []  # the probe is deleted
    assert store.spooled_files() == [] and store.flush_spool() == []
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match=str(blocker)):
        ResultsStore(str(blocker / "res")).check_writable()


def test_storage_join_and_local_paths(tmp_path: Path) -> None:
    assert storage.join("s3://bucket/prefix/", "trials", "a.parquet") == (
        "s3://bucket/prefix/trials/a.parquet"
    )
    assert storage.join(str(tmp_path), "a") == str(tmp_path / "a")
    assert storage.local_cache(str(tmp_path / "x")) == str(tmp_path / "x")
    assert storage.local_cache(f"file://{tmp_path}/x") == str(tmp_path / "x")
    storage.write_bytes_atomic(str(tmp_path / "d" / "f.bin"), b"data")
    assert storage.exists(str(tmp_path / "d" / "f.bin"))
    assert storage.read_bytes(str(tmp_path / "d" / "f.bin")) == b"data"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["f.bin"]
