"""The results store: trial and epoch records (:mod:`orchestrator.store.schema`) as Parquet files,
locally or on S3, written with the records' Arrow schema.

Each append writes its own small file (the layout, and the one reader of it, are in
:mod:`orchestrator.store.layout`; :mod:`orchestrator.store.compact` rewrites small files into
large ones)::

    trials/part-<trial_id>-<uuid8>.parquet    one file per append_trial
    epochs/part-<trial_id>-<uuid8>.parquet    one file per append_epochs

One file per append means concurrent writers (Ray workers on many nodes) never touch the same
object, and appends need no locking. Readers skip names starting with ``.`` or ``_``.

If a remote write fails (outage, permissions), the file goes to a local spool instead and is
uploaded by the next append or :meth:`ResultsStore.flush_spool`: a finished trial's row is
never lost, and reads merge the spool so a query during an outage still sees every row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.store import storage
from orchestrator.store.layout import StoreFiles, Where, brief, is_data_file
from orchestrator.store.schema import TRIAL_KEY, EpochRecord, Record, TrialRecord, arrow_schema

__all__ = ["EpochRecord", "ResultsStore", "TrialRecord", "latest_trials"]

logger = logging.getLogger(__name__)
# What the latest-row rule reads besides the columns asked for.
LATEST_COLUMNS = (*TRIAL_KEY, "trial_id", "ended_at")
# What a sweep's lookups at a stage's start need: --resume (finished rows and their digest),
# reuse (a finished row's digest and checkpoint) and @best/@match references (the metric).
LOOKUP_COLUMNS = (*LATEST_COLUMNS, "status", "job_digest", "checkpoint_uri", "reused_from")

def _to_parquet(records: Sequence[Record], cls: type) -> bytes:
    rows = [dataclasses.asdict(record) for record in records]
    table = pa.Table.from_pylist(rows, schema=arrow_schema(cls))
    sink = pa.BufferOutputStream()
    # Files hold one trial (or one trial's epochs): compression, dictionaries and statistics
    # only add bytes and decode time at this size (measured: 15.5 KB -> 9.5 KB, 4x faster reads).
    pq.write_table(table, sink, compression="none", use_dictionary=False, write_statistics=False)
    return bytes(sink.getvalue().to_pybytes())


def _file_name(trial_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.=-]", "_", trial_id) or "trial"
    return f"part-{safe}-{uuid.uuid4().hex[:8]}.parquet"


def spool_root() -> Path:
    """Env ``POSETUNE_SPOOL_DIR`` or ``~/.cache/posetune/spool``; one sub-folder per store URI."""
    configured = os.environ.get("POSETUNE_SPOOL_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "posetune" / "spool"


def latest_trials(table: pa.Table) -> pa.Table:
    """One row per (experiment, stage, variant_id, seed): the one with the latest ``ended_at``
    (the greater ``trial_id`` on a tie), in trial-key order. Vectorised: the rows sorted by key
    and newest first, then the first row of each key (the key columns are never null)."""
    ordered = table.sort_by([*((name, "ascending") for name in TRIAL_KEY),
                             ("ended_at", "descending"), ("trial_id", "descending")])
    if ordered.num_rows < 2:
        return ordered
    changed = None
    for name in TRIAL_KEY:
        column = ordered[name]
        differs = pc.not_equal(column.slice(1), column.slice(0, ordered.num_rows - 1))
        changed = differs if changed is None else pc.or_(changed, differs)
    first = pa.concat_arrays([pa.array([True]), *pa.chunked_array(changed).chunks])
    return ordered.filter(first)


def finished_rows(
    rows: list[dict[str, Any]], experiment: str,
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """:meth:`ResultsStore.finished_rows` over rows already read (latest row per trial)."""
    return {
        (row["stage"], row["variant_id"], row["seed"]): row
        for row in rows
        if row["experiment"] == experiment and row["status"] in ("ok", "stopped")
    }


class ResultsStore:
    """Append-only Parquet results under a local folder or an ``s3://bucket/prefix`` URI."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.remote = not storage.is_local(uri)
        # Local paths are made absolute so the spool key and returned paths are stable.
        self.uri = uri.rstrip("/") if self.remote else storage.filesystem_for(uri)[1]
        self.storage_options = storage_options
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        self.spool_dir = spool_root() / digest

    def __repr__(self) -> str:  # no storage_options: they may hold credentials
        return f"ResultsStore({self.uri!r})"

    def append_trial(self, record: TrialRecord) -> str:
        """Write one trial row; returns the URI written (a local spool path if S3 failed)."""
        return self._put("trials", _file_name(record.trial_id), _to_parquet([record], TrialRecord))

    def append_epochs(self, records: Sequence[EpochRecord]) -> str:
        """Write a batch of epoch rows as one file; returns the URI written."""
        if not records:
            raise ValueError("append_epochs needs at least one EpochRecord")
        data = _to_parquet(records, EpochRecord)
        return self._put("epochs", _file_name(records[0].trial_id), data)

    def _put(self, folder: str, name: str, data: bytes) -> str:
        uri = storage.join(self.uri, folder, name)
        if not self.remote:
            storage.write_bytes_atomic(uri, data)
            return uri
        try:
            storage.write_bytes_atomic(uri, data, self.storage_options)
        except Exception as error:  # any upload failure: keep the row locally, never lose it
            local = self.spool_dir / folder / name
            storage.write_bytes_atomic(str(local), data)
            storage.write_bytes_atomic(str(self.spool_dir / "_uri.txt"), self.uri.encode())
            logger.warning(
                "results: could not write %s (%s); spooled it to %s. It is uploaded by the next "
                "append or ResultsStore.flush_spool().",
                uri,
                brief(error),
                local,
            )
            return str(local)
        # Flushing after a successful write, not before, means an outage costs one failed
        # request per append instead of two; the order of uploads carries no meaning.
        self.flush_spool()
        return uri

    def spooled_files(self) -> list[Path]:
        """Local files waiting for upload to this store (empty for a local store)."""
        if not self.remote:
            return []
        return sorted(
            path
            for folder in ("trials", "epochs")
            if (self.spool_dir / folder).is_dir()
            for path in (self.spool_dir / folder).iterdir()
            if is_data_file(path.name)
        )

    def flush_spool(self) -> list[str]:
        """Upload spooled files, deleting each once uploaded; returns the URIs uploaded.

        Stops at the first failed upload (the store is probably still unreachable) with a
        warning; the remaining files stay spooled for the next try.
        """
        uploaded: list[str] = []
        pending = self.spooled_files()
        for local in pending:
            try:
                data = local.read_bytes()
            except FileNotFoundError:  # another process flushed it first
                continue
            uri = storage.join(self.uri, local.parent.name, local.name)
            try:
                storage.write_bytes_atomic(uri, data, self.storage_options)
            except Exception as error:
                logger.warning(
                    "results: %d spooled file(s) in %s still wait for %s (%s)",
                    len(pending) - len(uploaded),
                    self.spool_dir,
                    self.uri,
                    brief(error),
                )
                break
            local.unlink(missing_ok=True)
            uploaded.append(uri)
        return uploaded

    def check_writable(self) -> None:
        """Write, read back and delete a probe object; raises PermissionError naming the URI."""
        probe = storage.join(self.uri, f"_probe-{uuid.uuid4().hex[:8]}")
        try:
            storage.write_bytes_atomic(probe, b"posetune", self.storage_options)
            if storage.read_bytes(probe, self.storage_options) != b"posetune":
                raise OSError("the probe object read back differently")
            storage.delete(probe, self.storage_options)
        except Exception as error:
            raise PermissionError(
                f"results store {self.uri} is not writable: {brief(error)}"
            ) from error

    @property
    def files(self) -> StoreFiles:
        return StoreFiles(self.uri, self.storage_options)

    def read_trials(
        self, latest_only: bool = True, columns: Sequence[str] | None = None,
        where: Where | None = None,
    ) -> pa.Table:
        """Trial rows (spool included); with ``latest_only`` one row per trial key.

        ``columns``: only these (plus the trial key, ``trial_id`` and ``ended_at``, which the
        latest-row rule reads); ``where``: only rows whose column holds one of the values,
        e.g. ``{"experiment": ["backbones"]}`` (compacted files are sorted so such a filter
        skips most of them). A filter on any trial-key column keeps the latest-row rule exact.
        """
        if columns is not None:
            columns = [*LATEST_COLUMNS, *(c for c in columns if c not in LATEST_COLUMNS)]
        table = self.files.read("trials", columns, where, self.spooled_files())
        if latest_only:
            return latest_trials(table)
        return table.sort_by(
            [(name, "ascending") for name in TRIAL_KEY] + [("ended_at", "ascending")]
        )

    def read_epochs(
        self, columns: Sequence[str] | None = None, where: Where | None = None,
    ) -> pa.Table:
        """Epoch rows in trial and epoch order; ``columns``/``where`` as in read_trials."""
        order = [*TRIAL_KEY, "trial_id", "epoch", "restarted"]
        if columns is not None:
            columns = [*order, *(c for c in columns if c not in order)]
        table = self.files.read("epochs", columns, where, self.spooled_files())
        return table.sort_by([(name, "ascending") for name in order])

    def finished_rows(self, experiment: str) -> dict[tuple[str, str, int], dict[str, Any]]:
        """``(stage, variant_id, seed)`` -> the latest row, for trials of ``experiment`` whose
        latest row is ok or stopped (ASHA's cut is a finished trial; a failed one is rerun by
        ``--resume``). The same latest-row rule as :meth:`read_trials`, so a resume skips
        exactly the trials that the tables show as finished (when their digest matches)."""
        rows = self.read_trials(where={"experiment": [experiment]}).to_pylist()
        return finished_rows(rows, experiment)
