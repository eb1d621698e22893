"""Compaction: a store's many small files rewritten into a few large sorted ones, safely.

Every row stays: superseded trial rows (a retried or rerun trial's earlier rows) are kept as
history, so ``all_trials`` and the latest-row rule read exactly as before, and every epoch row
stays with its trial's key and ``trial_id``. Compacted files are sorted by the trial key
(experiment, stage, variant, seed; epochs then by trial and epoch) and written with row-group
statistics on those columns, and the manifest records each file's experiment and stage range,
so a reader filtering on them skips whole files and row groups.

The steps, and what a kill after each leaves (readers: orchestrator.store.layout):

1. read the live small files, and compacted files under half the target size: nothing changed;
2. write the new compacted files: files no manifest names, ignored by readers;
3. write the manifest naming them and retiring what was read (one atomic write): readers
   switch from the old files to the new ones at once;
4. delete the retired files, older manifests, and files of killed compactions: each is
   ignored until deleted; the next compaction finishes the job;
5. rewrite the manifest without its retired list (readers no longer need it).

A compaction holds the store's lock (:func:`orchestrator.store.lock.store_lock`), so it never
runs beside a sweep or another compaction; a sweep compacting after a stage already holds it
(``lock=False``). Input is read whole before anything is written: a bad file stops it
(:class:`~orchestrator.store.layout.BadStoreFile`) unless ``skip_bad_files``, which leaves the
bad file where it is, unread and unretired.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.store.layout import (
    COMPACTIONS,
    RANGE_COLUMNS,
    READ_BATCH,
    TABLES,
    FileEntry,
    Manifest,
    Snapshot,
    StoreFiles,
    is_compacted,
    skipping_bad_files,
)
from orchestrator.store.lock import store_lock
from orchestrator.store.results import ResultsStore
from orchestrator.store.schema import TRIAL_KEY, arrow_schema

# Rows per compacted file: bounds a compaction's memory (the rows of one file at a time) and
# keeps a 100k-trial store to one trials file. Smaller compacted files are merged again.
TARGET_ROWS = {"trials": 100_000, "epochs": 2_000_000}
ROW_GROUP_ROWS = {"trials": 4_000, "epochs": 100_000}
SORT_KEYS = {
    "trials": (*TRIAL_KEY, "ended_at", "trial_id"),
    "epochs": (*TRIAL_KEY, "trial_id", "epoch", "restarted"),
}
DELETE_BATCH = 1000  # S3 deletes up to 1000 objects per request
STATISTICS = [*TRIAL_KEY, "trial_id"]  # never config_json: its min/max would bloat footers

Hook = Callable[[str], None]


@dataclass
class Compaction:
    """What one compaction did."""

    files_before: int = 0  # data files a reader read before
    files_after: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # rows rewritten per table
    deleted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # bad file -> why (skip_bad_files)
    seconds: float = 0.0

    def summary(self, uri: str) -> str:
        if not self.rows and not self.deleted:
            return f"{uri}: nothing to compact ({self.files_before} file(s))"
        rows = ", ".join(f"{n} {t} rows" for t, n in self.rows.items()) or "no rows"
        return (f"{uri}: {self.files_before} file(s) -> {self.files_after} ({rows} rewritten, "
                f"{self.deleted} file(s) deleted) in {self.seconds:.1f} s")


def compact(
    store: ResultsStore, say: Callable[[str], None] = print, lock: bool = True,
    hook: Hook | None = None, skip_bad_files: bool = False,
) -> Compaction:
    """Compact ``store`` (see the module docstring). ``lock=False``: the caller holds the
    store's lock already (a sweep). ``hook(step)`` is called at each step (fault tests)."""
    if not store.remote and not Path(store.uri).is_dir():  # the lock would create it
        raise FileNotFoundError(f"no results store at {store.uri}")
    started = time.monotonic()
    holding: AbstractContextManager[None] = (
        store_lock(store.uri, "compaction") if lock else nullcontext())
    skipping: AbstractContextManager[dict[str, str]] = (
        skipping_bad_files() if skip_bad_files else nullcontext({}))
    with holding, skipping as skipped:
        if store.remote:
            store.flush_spool()  # spooled rows become ordinary small files first
        result = _compact(store.files, hook or (lambda step: None), skipped)
    result.seconds = time.monotonic() - started
    say(result.summary(store.uri))
    if result.skipped:
        say(f"{len(result.skipped)} bad file(s) left as they are: "
            + "; ".join(f"{path} ({why})" for path, why in list(result.skipped.items())[:3]))
    return result


def _compact(files: StoreFiles, step: Hook, skipped: dict[str, str]) -> Compaction:
    snapshot = files.snapshot()
    step("listed")
    result = Compaction(skipped=skipped)
    result.files_before = sum(len(snapshot.small[t]) + len(snapshot.compacted(t)) for t in TABLES)
    seq = snapshot.manifest.seq + 1
    token = uuid.uuid4().hex[:8]
    current: dict[str, list[FileEntry]] = {}
    # Files the new manifest makes unread, per table: small files read, retired files an
    # earlier compaction left, compacted files merged into new ones, files of killed ones.
    doomed = {t: [*snapshot.retired[t], *snapshot.orphans[t]] for t in TABLES}
    written: list[tuple[str, str]] = []
    try:
        for table in TABLES:
            small, merged = _inputs(snapshot, table)
            if not small and len(merged) <= 1:
                current[table] = snapshot.compacted(table)
                continue
            new: list[FileEntry] = []
            for chunk in _chunks(files, table, [e.name for e in merged], small):
                name = f"compact-{seq:06d}-{token}-{len(new):03d}.parquet"
                files.write(table, name, data=_parquet(chunk, table))
                written.append((table, name))
                step(f"wrote {table}/{name}")
                new.append(_entry(name, chunk))
                result.rows[table] = result.rows.get(table, 0) + chunk.num_rows
            bad = {path for path in skipped}
            kept_bad = [e for e in merged if files.path(table, e.name) in bad]
            others = [e for e in snapshot.compacted(table) if e not in merged]
            current[table] = [*others, *kept_bad, *new]
            doomed[table] += [n for n in small if files.path(table, n) not in bad]
            doomed[table] += [e.name for e in merged if e not in kept_bad]
    except BaseException:
        for table, name in written:  # not named by any manifest: ignored, removed here if we can
            files.delete(table, name)
        raise
    manifest = snapshot.manifest
    if written:
        # Retired: every small file in doomed (compacted ones need no entry: a compacted file
        # the manifest does not name is not read).
        retired = {t: frozenset(n for n in doomed[t] if not is_compacted(n)) for t in TABLES}
        manifest = Manifest(seq, current, retired)
        step("manifest")
        files.write(COMPACTIONS, _manifest_name(seq), data=manifest.to_json())
        step("committed")
    result.deleted = _clean(files, snapshot, manifest, doomed, step)
    result.files_after = sum(len(files.snapshot().small[t]) + len(manifest.files.get(t, []))
                             for t in TABLES)
    return result


def _inputs(snapshot: Snapshot, table: str) -> tuple[list[str], list[FileEntry]]:
    """Small files, and compacted files small enough to merge with them."""
    limit = TARGET_ROWS[table] // 2
    return snapshot.small[table], [e for e in snapshot.compacted(table) if e.rows < limit]


def _chunks(files: StoreFiles, table: str, compacted: list[str], small: list[str]
            ) -> Iterator[pa.Table]:
    """The inputs' rows as sorted tables of about TARGET_ROWS rows (memory: one chunk)."""
    schema = arrow_schema(TABLES[table])
    parts: list[pa.Table] = []
    rows = 0

    def sources() -> Iterator[list[pa.Table]]:
        for name in compacted:
            yield [files.read_compacted(table, name, schema, schema)]
        for start in range(0, len(small), READ_BATCH):
            yield files.read_small(table, small[start : start + READ_BATCH], schema, schema)

    for loaded in sources():
        for part in loaded:
            parts.append(part)
            rows += part.num_rows
        if rows >= TARGET_ROWS[table]:
            yield _sorted(pa.concat_tables(parts), table)
            parts, rows = [], 0
    if rows:
        yield _sorted(pa.concat_tables(parts), table)


def _sorted(table: pa.Table, name: str) -> pa.Table:
    return table.sort_by([(key, "ascending") for key in SORT_KEYS[name]]).combine_chunks()


def _parquet(table: pa.Table, name: str) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ROWS[name], compression="zstd",
                   write_statistics=[c for c in STATISTICS if c in table.column_names])
    return bytes(sink.getvalue().to_pybytes())


def _entry(name: str, table: pa.Table) -> FileEntry:
    low, high = {}, {}
    for column in RANGE_COLUMNS:
        bounds = pc.min_max(table[column])
        low[column], high[column] = bounds["min"].as_py(), bounds["max"].as_py()
    return FileEntry(name, table.num_rows, low, high)


def _manifest_name(seq: int) -> str:
    return f"manifest-{seq:010d}.json"


def _clean(files: StoreFiles, snapshot: Snapshot, manifest: Manifest,
           doomed: dict[str, list[str]], step: Hook) -> int:
    """Delete what ``manifest`` (now current) makes unread, then drop its retired list."""
    paths = [files.path(table, name) for table in TABLES for name in doomed[table]]
    paths += [files.path(COMPACTIONS, name) for name in snapshot.manifests
              if name != _manifest_name(manifest.seq)]
    for start in range(0, len(paths), DELETE_BATCH):
        files.delete_many(paths[start : start + DELETE_BATCH])
        step(f"deleted {min(start + DELETE_BATCH, len(paths))} of {len(paths)}")
    if any(manifest.retired.values()):
        cleared = Manifest(manifest.seq, manifest.files, {})
        files.write(COMPACTIONS, _manifest_name(manifest.seq), data=cleared.to_json())
        step("cleaned")
    return len(paths)
