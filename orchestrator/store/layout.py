"""The one reader of a results store's files: small per-append files and compacted ones.

Layout under a store URI (a local folder or ``s3://bucket/prefix``)::

    trials/part-<trial_id>-<uuid8>.parquet     one file per append (orchestrator.store.results)
    epochs/part-<trial_id>-<uuid8>.parquet
    trials/compact-<seq>-<uuid8>-<n>.parquet   written by a compaction (orchestrator.store.compact)
    epochs/compact-<seq>-<uuid8>-<n>.parquet
    _compactions/manifest-<seq>.json           the compacted files in use, and the retired ones

The newest manifest (highest ``seq``) decides what a reader reads: the compacted files it names,
plus every small file it does not retire. Compacted files no manifest names (a compaction killed
before its manifest landed) and retired small files (killed before its cleanup deleted them)
are ignored. A compaction writes its files first and its manifest last, in one atomic write
(a local rename, one S3 PUT), so a reader sees the rows either in the small files or in the
compacted ones, never both and never neither.

A reader lists the small files before it reads the manifest and fetches files only after both:
a compaction landing in between retires files the reader then skips, and a file its cleanup
deleted meanwhile makes the reader start again (``FileNotFoundError``), never read less.

A file that is not a readable results file (truncated, foreign schema) stops the read with
:class:`BadStoreFile` naming it, unless the caller is inside :func:`skipping_bad_files`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.store import storage
from orchestrator.store.schema import EpochRecord, TrialRecord, arrow_schema

TABLES: dict[str, type] = {"trials": TrialRecord, "epochs": EpochRecord}
COMPACTIONS = "_compactions"
COMPACTED_PREFIX = "compact-"
MANIFEST = re.compile(r"manifest-(\d+)\.json")
MANIFEST_FORMAT = "posetune-compaction"
READ_BATCH = 256  # small files fetched together (concurrent GETs on S3), bounding raw bytes held
READ_TRIES = 5  # a concurrent compaction's cleanup can delete a listed file: read again
# Per-file column ranges a manifest records, so readers filtering on them skip whole files.
RANGE_COLUMNS = ("experiment", "stage")

Where = Mapping[str, Collection[Any]]


class BadStoreFile(ValueError):
    """A file in a results store that is not a readable results file."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"results store file {path} is not a readable results file ({reason}); "
                         "move it out of the store, or pass --skip-bad-files to read without it")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.reason))


_skipped: ContextVar[dict[str, str] | None] = ContextVar("posetune_skipped_files", default=None)


@contextmanager
def skipping_bad_files() -> Iterator[dict[str, str]]:
    """Within the block, reads skip bad files instead of raising; yields path -> reason of
    each skipped file (filled as reads happen)."""
    skipped: dict[str, str] = {}
    token = _skipped.set(skipped)
    try:
        yield skipped
    finally:
        _skipped.reset(token)


def is_data_file(name: str) -> bool:
    """A Parquet file readers consider (hidden ``.tmp-*`` and ``_*`` files are not)."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(".parquet") and not base.startswith((".", "_"))


def is_compacted(name: str) -> bool:
    return name.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)


@dataclass(frozen=True)
class FileEntry:
    """A compacted file as its manifest names it: rows and per-column value ranges."""

    name: str
    rows: int
    low: dict[str, Any] = field(default_factory=dict)
    high: dict[str, Any] = field(default_factory=dict)

    def may_hold(self, where: Where | None) -> bool:
        return all(_overlaps(self.low.get(c), self.high.get(c), v) for c, v in (where or {}).items())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "min": self.low, "max": self.high}


@dataclass(frozen=True)
class Manifest:
    """What one compaction made current: compacted files and retired small files, per table
    (names relative to the table's folder). ``seq`` 0: the store was never compacted."""

    seq: int = 0
    files: dict[str, list[FileEntry]] = field(default_factory=dict)
    retired: dict[str, frozenset[str]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({
            "format": MANIFEST_FORMAT, "version": 1, "seq": self.seq,
            "files": {t: [e.to_dict() for e in entries] for t, entries in self.files.items()},
            "retired": {t: sorted(names) for t, names in self.retired.items()},
        }, indent=1).encode()

    @classmethod
    def parse(cls, data: bytes, path: str) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format is not {MANIFEST_FORMAT!r}")
            files = {t: [FileEntry(str(e["name"]), int(e["rows"]), dict(e.get("min") or {}),
                                   dict(e.get("max") or {})) for e in entries]
                     for t, entries in dict(raw["files"]).items()}
            retired = {t: frozenset(map(str, names)) for t, names in dict(raw["retired"]).items()}
            return cls(int(raw["seq"]), files, retired)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            # Never skippable: ignoring a manifest would make its retired files live again.
            raise ValueError(f"results store manifest {path} is unreadable ({error}); "
                             "restore it from a backup or remove the store's compaction") from None


@dataclass(frozen=True)
class Snapshot:
    """The files a reader reads at one moment, and the leftovers nobody reads."""

    manifest: Manifest
    manifest_name: str | None
    manifests: list[str]  # every manifest name present, newest last
    small: dict[str, list[str]]  # live small files per table
    retired: dict[str, list[str]]  # small files the manifest retired, still present
    orphans: dict[str, list[str]]  # compacted files the manifest does not name

    def compacted(self, table: str) -> list[FileEntry]:
        return self.manifest.files.get(table, [])


class StoreFiles:
    """The files of one store: listing, snapshot and reading (see the module docstring)."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.uri, self.storage_options = uri, storage_options
        self.fs, self.root = storage.filesystem_for(uri, storage_options)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def names(self, folder: str) -> list[str]:
        """Names under ``folder`` (relative to it, recursively), sorted."""
        base = self.path(folder)
        self.fs.invalidate_cache(base)  # files written by other processes must be seen
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        prefix = base.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in found if p.startswith(prefix))

    def snapshot(self) -> Snapshot:
        # Small files first, manifest second: see the module docstring for why this order.
        listed = {table: [n for n in self.names(table) if is_data_file(n)] for table in TABLES}
        manifests = sorted((n for n in self.names(COMPACTIONS) if MANIFEST.fullmatch(n)),
                           key=lambda n: int(MANIFEST.fullmatch(n).group(1)))  # type: ignore[union-attr]
        manifest, name = Manifest(), None
        if manifests:
            name = manifests[-1]
            path = self.path(COMPACTIONS, name)
            manifest = Manifest.parse(self.fs.cat_file(path), path)
        small, retired, orphans = {}, {}, {}
        for table, names in listed.items():
            gone = manifest.retired.get(table, frozenset())
            named = {e.name for e in manifest.files.get(table, [])}
            small[table] = [n for n in names if not is_compacted(n) and n not in gone]
            retired[table] = [n for n in names if not is_compacted(n) and n in gone]
            orphans[table] = [n for n in names if is_compacted(n) and n not in named]
        return Snapshot(manifest, name, manifests, small, retired, orphans)

    def read(
        self, table: str, columns: Sequence[str] | None = None, where: Where | None = None,
        spooled: Sequence[Path] = (),
    ) -> pa.Table:
        """The rows of ``table`` (all of them, in no particular order), only ``columns`` (all
        if None) and only rows whose ``where`` columns hold one of the given values."""
        schema = _subset(arrow_schema(TABLES[table]), columns, where)
        for attempt in range(READ_TRIES):
            snapshot = self.snapshot()
            try:
                return self.read_snapshot(snapshot, table, schema, where, spooled)
            except FileNotFoundError:
                if attempt == READ_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def read_snapshot(
        self, snapshot: Snapshot, table: str, schema: pa.Schema, where: Where | None = None,
        spooled: Sequence[Path] = (),
    ) -> pa.Table:
        full = arrow_schema(TABLES[table])
        parts = [self.read_compacted(table, entry.name, full, schema, where)
                 for entry in snapshot.compacted(table) if entry.may_hold(where)]
        parts += self.read_small(table, snapshot.small[table], full, schema, where)
        known = set(snapshot.small[table]) | set(snapshot.retired[table])
        for local in spooled:
            if local.parent.name == table and local.name not in known:
                part = _load(str(local), str(local), full, schema, where)
                parts += [part] if part is not None else []
        parts = [p for p in parts if p.num_rows]
        return pa.concat_tables(parts) if parts else schema.empty_table()

    def read_small(
        self, table: str, names: Sequence[str], full: pa.Schema, schema: pa.Schema,
        where: Where | None = None,
    ) -> list[pa.Table]:
        """Small files in batches of concurrent GETs; each batch combined into one table."""
        paths = [self.path(table, name) for name in names]
        out = []
        for start in range(0, len(paths), READ_BATCH):
            blobs = self.fs.cat(paths[start : start + READ_BATCH], on_error="raise")
            loaded = [_load(pa.BufferReader(blob), path, full, schema, where)
                      for path, blob in blobs.items()]
            batch = [t for t in loaded if t is not None and t.num_rows]
            if batch:
                out.append(pa.concat_tables(batch).combine_chunks())
        return out

    def read_compacted(
        self, table: str, name: str, full: pa.Schema, schema: pa.Schema,
        where: Where | None = None,
    ) -> pa.Table:
        path = self.path(table, name)
        local = storage.is_local(self.uri)
        # One GET of the whole file on S3 (few, large files); locally the file is read in place.
        source = path if local else pa.BufferReader(self.fs.cat_file(path))
        return _load(source, path, full, schema, where) or schema.empty_table()

    def write(self, *parts: str, data: bytes) -> None:
        storage.write_bytes_atomic(storage.join(self.uri, *parts), data, self.storage_options)

    def delete(self, *parts: str) -> None:
        self.delete_many([self.path(*parts)])

    def delete_many(self, paths: Sequence[str]) -> None:
        """Delete files (paths as :meth:`path` gives them); missing ones are no error."""
        if storage.is_local(self.uri):
            for path in paths:
                Path(path).unlink(missing_ok=True)
        elif paths:
            self.fs.rm(list(paths))  # S3: one DeleteObjects request per 1000 keys


def _subset(full: pa.Schema, columns: Sequence[str] | None, where: Where | None) -> pa.Schema:
    if columns is None:
        return full
    wanted = [*columns, *(c for c in (where or {}) if c not in columns)]
    unknown = [c for c in wanted if c not in full.names]
    if unknown:
        raise ValueError(f"no results column {unknown[0]!r}; valid: {', '.join(full.names)}")
    return pa.schema([full.field(c) for c in full.names if c in wanted])


def _overlaps(low: Any, high: Any, values: Collection[Any]) -> bool:
    """False only when every value lies outside [low, high] (None: unknown range)."""
    if low is None or high is None:
        return True
    try:
        return any(low <= value <= high for value in values)
    except TypeError:
        return True


def _row_groups(file: pq.ParquetFile, where: Where | None) -> list[int] | None:
    """Row groups whose statistics may hold the ``where`` values (None: all of them)."""
    meta = file.metadata
    if not where or meta.num_row_groups <= 1:
        return None
    keep = []
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        columns = {group.column(j).path_in_schema: group.column(j) for j in range(group.num_columns)}
        ok = True
        for name, values in where.items():
            stats = columns[name].statistics if name in columns else None
            if stats is not None and stats.has_min_max and not _overlaps(stats.min, stats.max, values):
                ok = False
                break
        if ok:
            keep.append(index)
    return keep


def _load(
    source: str | pa.BufferReader, label: str, full: pa.Schema, schema: pa.Schema,
    where: Where | None,
) -> pa.Table | None:
    """One file as ``schema`` (rows filtered by ``where``); None when a bad file is skipped."""
    try:
        file = pq.ParquetFile(source)
        present = file.schema_arrow.names
        missing = [f.name for f in full if not f.nullable and f.name not in present]
        if missing:
            raise ValueError(f"no column {missing[0]!r}: not a posetune results file")
        names = [n for n in schema.names if n in present]
        groups = _row_groups(file, where)
        raw = (file.read(columns=names, use_threads=False) if groups is None
               else file.read_row_groups(groups, columns=names, use_threads=False))
        table = conform(raw, schema)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, ValueError) as error:
        skipped = _skipped.get()
        if skipped is None:
            raise BadStoreFile(label, brief(error)) from None
        skipped[label] = brief(error)
        return None
    for name, values in (where or {}).items():
        wanted = pa.array(list(values), schema.field(name).type)
        table = table.filter(pc.is_in(table[name], value_set=wanted))
    return table


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast to ``schema``; columns missing from older files become nulls."""
    if table.schema.equals(schema):
        return table
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def brief(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
