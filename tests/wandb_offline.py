"""Read an offline W&B run file (``run-*.wandb``) back, for the tracker tests.

wandb 0.31 ships no Python reader (its core is in Go). The file is LevelDB's log format
(32 KiB blocks of records with a 7-byte header: CRC32, length, type FULL/FIRST/MIDDLE/LAST)
after W&B's own 7-byte file header; each record is a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        left = BLOCK - offset % BLOCK
        if left < HEADER:  # block trailer: padding
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        if length == 0 and kind == 0:
            break
        chunk = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def config_and_history(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's final config and its logged rows (``wandb.log`` calls) as plain values."""
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind in ("config", "run"):  # wandb.init(config=...) arrives in the run record
            items = record.config.update if kind == "config" else record.run.config.update
            config.update({i.key: json.loads(i.value_json) for i in items})
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                            for i in record.history.item})
    return config, history
