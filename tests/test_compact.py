"""Compaction of a results store: every row kept, readers correct at every step, a kill at
any step losing and duplicating nothing (local and on SeaweedFS S3), the lock, bad files.

Kills are real: the compaction runs in a child process that SIGKILLs itself at a step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from orchestrator.store import compact as compact_module
from orchestrator.store import lock
from orchestrator.store.compact import compact
from orchestrator.store.layout import BadStoreFile, StoreFiles, _row_groups
from orchestrator.store.lock import StoreBusy, store_lock
from orchestrator.store.query import query
from orchestrator.store.results import LATEST_COLUMNS, ResultsStore
from tests.s3server import SeaweedS3
from tests.test_results import T0, make_epoch, make_trial

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("augmentations", "backbones", "real_amount")


def fill(store: ResultsStore, trials: int = 12, start: int = 0) -> None:
    """Trials of three experiments with their epochs; every fourth one also has an earlier,
    superseded row (a rerun) so the latest-row rule has work to do."""
    for i in range(start, start + trials):
        key = dict(experiment=EXPERIMENTS[i % 3], stage=f"s{i % 2}", variant_id=f"v{i}")
        ended = T0 + timedelta(minutes=i)
        if i % 4 == 0:
            store.append_trial(make_trial(**key, trial_id=f"old{i}", status="failed", AP=None,
                                          ended_at=ended - timedelta(seconds=30)))
        store.append_trial(make_trial(**key, trial_id=f"t{i}", AP=i / 100, ended_at=ended))
        store.append_epochs([make_epoch(e, **key, trial_id=f"t{i}") for e in range(3)])


def contents(store: ResultsStore) -> tuple[list[Any], list[Any], list[Any]]:
    """Every trial row, the latest rows and every epoch row, as sorted tuples: equal contents
    mean no row lost and none duplicated."""
    def rows(table: pa.Table) -> list[Any]:
        return sorted(tuple(json.dumps(v, default=str) for v in r.values())
                      for r in table.to_pylist())
    return (rows(store.read_trials(latest_only=False)), rows(store.read_trials()),
            rows(store.read_epochs()))


def data_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_compaction_keeps_every_row_superseded_ones_as_history(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    fill(store)
    before = contents(store)
    sql = "SELECT experiment, count(*) AS n, avg(AP) AS ap FROM trials GROUP BY 1 ORDER BY 1"
    answer = query(store.uri, sql).to_pylist()
    lines: list[str] = []
    result = compact(store, lines.append)
    assert contents(store) == before and query(store.uri, sql).to_pylist() == answer
    assert len(before[0]) == 15 and len(before[1]) == 12  # 3 superseded rows kept as history
    assert data_files(tmp_path) == [f"epochs/{n}" for n in names(tmp_path / "epochs")] + \
        [f"trials/{n}" for n in names(tmp_path / "trials")]
    assert len(data_files(tmp_path)) == 2 and result.files_before == 27
    assert result.rows == {"trials": 15, "epochs": 36} and "27 file(s) -> 2" in lines[0]
    assert [p.name for p in (tmp_path / "_compactions").iterdir()] == ["manifest-0000000001.json"]

    compact(store, lines.append)  # nothing new: nothing rewritten
    assert "nothing to compact" in lines[-1] and contents(store) == before

    fill(store, trials=4, start=100)  # new small files beside the compacted ones
    grown = contents(store)
    assert len(grown[1]) == 16
    compact(store, lines.append)
    assert contents(store) == grown and len(data_files(tmp_path)) == 2


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_filters_and_columns_read_only_what_is_asked(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultsStore(str(tmp_path))
    fill(store, trials=30)
    monkeypatch.setattr(compact_module, "ROW_GROUP_ROWS", {"trials": 5, "epochs": 20})
    compact(store, lambda line: None)
    fill(store, trials=3, start=200)  # and small files after it (v202 is a backbones trial)
    expected = sorted(r["trial_id"] for r in store.read_trials().to_pylist()
                      if r["experiment"] == "backbones")
    assert "t202" in expected and len(expected) == 11

    got = store.read_trials(where={"experiment": ["backbones"]})
    assert sorted(got["trial_id"].to_pylist()) == expected
    narrow = store.read_trials(columns=["status", "AP"], where={"experiment": ["backbones"]})
    assert set(narrow.column_names) == {*LATEST_COLUMNS, "status", "AP"}
    assert sorted(narrow["trial_id"].to_pylist()) == expected
    epochs = store.read_epochs(columns=["loss"], where={"trial_id": ["t3"]})
    assert epochs.num_rows == 3 and "lr" not in epochs.column_names
    # The sorted file's row groups let a filter on experiment skip most of them.
    files = StoreFiles(store.uri)
    (entry,) = files.snapshot().compacted("trials")
    assert (entry.low["experiment"], entry.high["experiment"]) == ("augmentations", "real_amount")
    assert not entry.may_hold({"experiment": ["zebra"]})
    parquet = pq.ParquetFile(files.path("trials", entry.name))
    kept = _row_groups(parquet, {"experiment": ["backbones"]})
    assert kept is not None and 0 < len(kept) <= parquet.metadata.num_row_groups / 2
    with pytest.raises(ValueError, match="no results column 'nope'"):
        store.read_trials(columns=["nope"])


def test_readers_see_every_row_once_at_every_step(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    fill(store)
    before = contents(store)
    steps: list[str] = []

    def check(step: str) -> None:
        steps.append(step)
        assert contents(ResultsStore(str(tmp_path))) == before, step

    compact(store, lambda line: None, hook=check)
    assert steps[0] == "listed" and "manifest" in steps and steps[-1] == "cleaned"


def test_a_reader_whose_files_a_compaction_deleted_reads_again(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    fill(store)
    files = StoreFiles(store.uri)
    stale = files.snapshot()  # listed before the compaction, read after its cleanup
    compact(store, lambda line: None)
    schema = store.read_trials().schema
    with pytest.raises(FileNotFoundError):
        files.read_snapshot(stale, "trials", schema)
    assert store.read_trials(latest_only=False).num_rows == 15  # read() starts again


def kill_at(uri: str, step: str, options_json: str = "null") -> None:
    """Child process: compact ``uri`` and SIGKILL itself at ``step`` (``wrote trials``:
    after its first trials file, whatever its name)."""
    options = json.loads(options_json)
    compact_module.DELETE_BATCH = 3  # several delete requests, to die between two of them

    def hook(at: str) -> None:
        if at.split("/")[0] == step:
            os.kill(os.getpid(), signal.SIGKILL)

    compact(ResultsStore(uri, options), lambda line: None, hook=hook)


def run_killed(uri: str, step: str, options: dict[str, Any] | None = None) -> None:
    code = (f"from tests.test_compact import kill_at; "
            f"kill_at({uri!r}, {step!r}, {json.dumps(json.dumps(options))})")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def seeded(uri: str, options: dict[str, Any] | None = None) -> ResultsStore:
    store = ResultsStore(uri, options)
    fill(store)
    store.append_trial(make_trial(trial_id="keep", variant_id="x"))
    return store


def steps_of(uri: str, options: dict[str, Any] | None = None) -> list[str]:
    """The steps of compacting a store as :func:`seeded` makes it, by a run that is not
    killed (names of written files left out: they differ per run)."""
    steps: list[str] = []
    saved, compact_module.DELETE_BATCH = compact_module.DELETE_BATCH, 3
    try:
        compact(seeded(uri, options), lambda line: None, hook=steps.append)
    finally:
        compact_module.DELETE_BATCH = saved
    return [step.split("/")[0] for step in steps]


def kill_points(steps: list[str]) -> list[str]:
    """Every step, of the deletes the first, a middle and the last one."""
    deletes = [s for s in steps if s.startswith("deleted")]
    chosen = {deletes[0], deletes[len(deletes) // 2], deletes[-1]}
    return [s for s in steps if not s.startswith("deleted") or s in chosen]


def check_kill(uri: str, step: str, options: dict[str, Any] | None = None,
               after_kill: Callable[[], None] | None = None) -> None:
    """Killed at ``step``: readers see every row once; a sweep can write again; the next
    compaction finishes the killed one's work and leaves a clean store."""
    store = seeded(uri, options)
    before = contents(store)
    run_killed(uri, step, options)
    assert contents(store) == before, f"killed at {step}: rows lost or duplicated"
    if after_kill:
        after_kill()
    fill(store, trials=2, start=50)
    grown = contents(store)
    compact(store, lambda line: None)
    assert contents(store) == grown, f"killed at {step}, compacted again"
    snapshot = StoreFiles(uri, options).snapshot()
    assert not any(snapshot.small.values()) and not any(snapshot.orphans.values())
    assert not any(snapshot.retired.values()) and len(snapshot.manifests) == 1


def test_kill_at_each_step_of_a_local_compaction(tmp_path: Path) -> None:
    steps = steps_of(str(tmp_path / "dry"))
    deletes = [s for s in steps if s.startswith("deleted")]
    assert steps == ["listed", "wrote trials", "wrote epochs", "manifest", "committed",
                     *deletes, "cleaned"] and len(deletes) > 2
    for n, step in enumerate(kill_points(steps)):
        check_kill(str(tmp_path / f"store{n}"), step)


def test_compaction_and_sweeps_take_turns_on_the_lock(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    fill(store)
    with store_lock(store.uri):  # a sweep is writing: a compaction is refused, no file touched
        files = data_files(tmp_path)
        with pytest.raises(StoreBusy, match="in use by another posetune sweep"):
            compact(store, lambda line: None)
        assert data_files(tmp_path) == files
        compact(store, lambda line: None, lock=False)  # the sweep itself compacts
    assert len(data_files(tmp_path)) == 2

    fill(store, trials=3, start=40)
    refused: list[str] = []

    def sweep_starts(step: str) -> None:
        if step == "listed":
            with pytest.raises(StoreBusy) as busy, store_lock(store.uri):
                pass
            refused.append(str(busy.value))

    compact(store, lambda line: None, hook=sweep_starts)
    assert "in use by another posetune compaction" in refused[0]
    assert f"pid {os.getpid()}" in refused[0]


def write_foreign(path: Path) -> None:
    pq.write_table(pa.table({"x": [1, 2]}), path)


def test_a_bad_file_is_named_or_skipped_and_never_compacted_away(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ResultsStore(str(tmp_path))
    fill(store)
    good = contents(store)
    truncated = tmp_path / "trials" / "part-cut-0000.parquet"
    truncated.write_bytes((tmp_path / "trials").glob("part-t1-*").__next__().read_bytes()[:300])
    write_foreign(tmp_path / "epochs" / "part-foreign.parquet")
    files = data_files(tmp_path)

    with pytest.raises(BadStoreFile, match="part-cut-0000.parquet"):
        store.read_trials()
    assert main(["query", str(tmp_path)]) == 2
    assert "part-cut-0000.parquet is not a readable results file" in capsys.readouterr().err
    assert main(["compact", str(tmp_path)]) == 2  # nothing written, nothing deleted
    assert data_files(tmp_path) == files and not (tmp_path / "_compactions").exists()

    sql = "SELECT (SELECT count(*) FROM all_trials) AS trials, (SELECT count(*) FROM epochs) AS e"
    assert main(["query", str(tmp_path), "--sql", sql, "--format", "json",
                 "--skip-bad-files"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"trials": 15, "e": 36}]
    assert "skipped 2 bad file(s)" in err and "part-foreign.parquet" in err
    assert "no column 'experiment'" in err

    assert main(["compact", str(tmp_path), "--skip-bad-files"]) == 0
    assert "2 bad file(s) left as they are" in capsys.readouterr().out
    assert truncated.exists() and (tmp_path / "epochs" / "part-foreign.parquet").exists()
    truncated.unlink()
    (tmp_path / "epochs" / "part-foreign.parquet").unlink()
    assert contents(store) == good


def test_a_damaged_manifest_stops_every_read(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    fill(store)
    compact(store, lambda line: None)
    (manifest,) = (tmp_path / "_compactions").iterdir()
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match="manifest .*manifest-0000000001.json is unreadable"):
        store.read_trials()
    assert main(["query", str(tmp_path), "--skip-bad-files"]) == 2  # never skipped


def test_posetune_compact_as_the_readme_shows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    store = ResultsStore("runs/study")
    fill(store)
    assert main(["query", "runs/study", "--sql", "SELECT count(*) AS n FROM trials",
                 "--format", "csv"]) == 0
    before = capsys.readouterr().out
    assert main(["compact", "runs/study"]) == 0
    assert "27 file(s) -> 2" in capsys.readouterr().out
    assert main(["query", "runs/study", "--sql", "SELECT count(*) AS n FROM trials",
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out == before == "n\n12\n\n"
    assert main(["compact", "runs/nothing-here"]) == 2
    assert "no results store at" in capsys.readouterr().err and not Path("runs/nothing-here").exists()


@pytest.mark.s3
def test_kill_at_each_step_of_a_compaction_on_s3(
        s3_server: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Configured as a user would: credentials and endpoint in the environment (the lock's
    # lease reads them there too); the child processes inherit them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("POSETUNE_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("POSETUNE_SPOOL_DIR", str(tmp_path / "spool"))
    base = s3_server.uri(f"compact-{os.getpid()}-{tmp_path.name}")
    steps = steps_of(f"{base}/dry")
    assert steps[:5] == ["listed", "wrote trials", "wrote epochs", "manifest", "committed"]
    assert steps[-1] == "cleaned"
    monkeypatch.setattr(lock, "SETTLE_S", 0.1)  # this process's leases; the children wait 1 s
    for n, step in enumerate(kill_points(steps)):
        uri = f"{base}/store{n}"

        def lease_expires(uri: str = uri) -> None:
            # The killed compaction's lease stays until it expires (LEASE_S): until then a
            # sweep or compaction is refused; here it expires at once.
            with pytest.raises(StoreBusy, match="compaction"):
                compact(ResultsStore(uri), lambda line: None)
            fs, root = StoreFiles(uri).fs, StoreFiles(uri).root
            fs.rm_file(f"{root}/_posetune-sweep.lease.json")

        check_kill(uri, step, after_kill=lease_expires)
