"""DeepLabCut labels: a project folder, its ``config.yaml``, or one ``CollectedData_*`` file.

The table layout is DeepLabCut's: header rows ``scorer``, ``individuals`` (multi-animal
projects only), ``bodyparts`` and ``coords``, then one row per labelled frame whose first
cell(s) give the image path relative to the project (``labeled-data/VIDEO/img001.png``, or
split over three cells by DeepLabCut 2.3+). The ``.h5`` twin holds the same table as a pandas
DataFrame. Rules shared with the other formats are in :mod:`orchestrator.data.labels`.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.data.label_frames import (
    Animal,
    Frame,
    Layout,
    check_pairs,
    number,
    short,
    yaml_problem,
)
from pose_core.records import DataError, ReadReport

UNIQUE = "single"  # DeepLabCut's individual name for unique (non-animal) body parts
Column = tuple[str, str, str]  # (individual, body part, coordinate)
Table = tuple[list[Column], list[tuple[str, str, list[float]]]]  # columns, (record, image, values)


def read_dlc(path: Path, report: ReadReport) -> tuple[Layout, list[Frame]]:
    """Frames of a DeepLabCut project folder, ``config.yaml`` or ``CollectedData`` file."""
    if not path.exists():
        raise DataError(str(path), "whole file", "path", "not found",
                        "a DeepLabCut project folder, config.yaml or CollectedData file")
    config_path = _config_path(path)
    config = _read_config(config_path) if config_path else {}
    files = [path] if path.is_file() and path.name != "config.yaml" else _project_files(
        config_path.parent if config_path else path, config, report)
    root = config_path.parent if config_path else None
    tables = [(f, _read_table(f)) for f in files]
    names = _keypoints(config, config_path, tables)
    frames = [frame for f, table in tables for frame in _frames(f, table, names, root)]
    layout = Layout(
        name=str(config.get("Task") or (root or path.parent).name), keypoints=names,
        links=_links(config, config_path, names),
    )
    unique = sum(1 for _, (columns, _) in tables for c in columns if c[0] == UNIQUE)
    if unique:
        report.note("unique body part columns left out (no animal)", unique // 2)
    return layout, frames


def _config_path(path: Path) -> Path | None:
    """``config.yaml`` of the project: given, inside the folder, or up to 3 levels above."""
    if path.name == "config.yaml":
        return path
    start = path if path.is_dir() else path.parent
    for folder in [start, *start.parents][:4]:
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DataError(str(path), "whole file", "(yaml)",
                        f"cannot read: {yaml_problem(error)}") from None
    if not isinstance(data, dict):
        raise DataError(str(path), "whole file", "(yaml)", "not a mapping", "DeepLabCut config")
    return data


def _project_files(project: Path, config: dict[str, Any], report: ReadReport) -> list[Path]:
    """One CollectedData file per ``labeled-data`` folder; CSV first, as DeepLabCut reads it."""
    folders = sorted(p for p in (project / "labeled-data").glob("*") if p.is_dir())
    scorer = config.get("scorer")
    files = []
    for folder in folders:
        named = [folder / f"CollectedData_{scorer}{s}" for s in (".csv", ".h5")] if scorer else []
        found = [p for p in named if p.is_file()] or sorted(folder.glob("CollectedData_*.csv")) \
            or sorted(folder.glob("CollectedData_*.h5"))
        if found:
            files.append(found[0])
        else:
            report.skip("labeled-data folders without CollectedData")
    if not files:
        raise DataError(str(project), "labeled-data", "CollectedData", "no labelled frames",
                        "labeled-data/VIDEO/CollectedData_SCORER.csv")
    return files


def _read_table(file: Path) -> Table:
    return _read_h5(file) if file.suffix.lower() == ".h5" else _read_csv(file)


def _read_csv(file: Path) -> Table:
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(str(file), "whole file", "(csv)", f"cannot read: {short(error)}",
                        "a DeepLabCut CollectedData CSV") from None
    if len(rows) < 3 or not rows[0] or rows[0][0] != "scorer":
        raise DataError(str(file), "line 1", "scorer", "not a DeepLabCut header",
                        "rows scorer, [individuals,] bodyparts, coords")
    multi = rows[1][:1] == ["individuals"]
    coords = rows[3 if multi else 2]
    if coords[:1] != ["coords"]:
        raise DataError(str(file), f"line {4 if multi else 3}", "coords", f"got {coords[:1]}",
                        "a 'coords' header row")
    first = next((i for i, c in enumerate(coords) if i > 0 and c), len(coords))
    columns = [(rows[1][i] if multi else "", rows[2 if multi else 1][i], coords[i])
               for i in range(first, len(coords))]
    body = []
    for n, row in enumerate(rows[4 if multi else 3:], start=5 if multi else 4):
        if not any(row):
            continue
        image = "/".join(c for c in row[:first] if c)
        record = f"line {n} ({image})"
        cells = row[first:] + [""] * (len(columns) - len(row[first:]))
        body.append((record, image, [number(str(file), record, f"{c[1]} {c[2]}", text)
                                     for c, text in zip(columns, cells, strict=False)]))
    return columns, body


def _read_h5(file: Path) -> Table:
    import pandas as pd

    try:
        frame = pd.read_hdf(file)
    except (OSError, ValueError, KeyError, ImportError) as error:
        raise DataError(str(file), "whole file", "(hdf5)", f"cannot read: {short(error)}",
                        "a DeepLabCut CollectedData .h5") from None
    levels = frame.columns.nlevels
    if levels not in (3, 4):
        raise DataError(str(file), "columns", "levels", f"{levels} header levels",
                        "scorer, [individuals,] bodyparts, coords")
    columns = [(str(c[1]) if levels == 4 else "", str(c[-2]), str(c[-1])) for c in frame.columns]
    body = []
    for index, values in zip(frame.index, frame.to_numpy(dtype=np.float64), strict=True):
        image = "/".join(index) if isinstance(index, tuple) else str(index)
        body.append((f"row {image}", image, [float(v) for v in values]))
    return columns, body


def _keypoints(
    config: dict[str, Any], config_path: Path | None, tables: list[tuple[Path, Table]]
) -> tuple[str, ...]:
    """The config's body parts in its order, else the first file's columns' order."""
    listed = config.get("multianimalbodyparts") or config.get("bodyparts")
    header = list(dict.fromkeys(c[1] for _, (cols, _) in tables for c in cols if c[0] != UNIQUE))
    if not isinstance(listed, list) or not listed or listed == ["MULTI!"]:
        return tuple(header)
    names = tuple(str(n) for n in listed)
    for file, (columns, _) in tables:
        unknown = next((c[1] for c in columns if c[0] != UNIQUE and c[1] not in names), None)
        if unknown is not None:
            raise DataError(str(file), "header", "bodyparts", f"unknown body part {unknown!r}",
                            f"one of {config_path} bodyparts {list(names)}")
    absent = [n for n in names if n not in header]
    if absent:
        files = ", ".join(f.name for f, _ in tables)
        raise DataError(str(config_path), "bodyparts", "bodyparts",
                        f"{short(absent, 60)} listed but in no column of {short(files, 60)}",
                        "every body part labelled: label it, or remove it from bodyparts")
    return names


def _links(
    config: dict[str, Any], config_path: Path | None, names: tuple[str, ...]
) -> tuple[tuple[int, int], ...]:
    links = []
    for n, link in enumerate(config.get("skeleton") or []):
        if not (isinstance(link, list) and len(link) == 2 and all(p in names for p in link)):
            raise DataError(str(config_path), f"skeleton[{n}]", "skeleton", f"got {link!r}",
                            f"a pair of body parts from {list(names)}")
        links.append((names.index(link[0]), names.index(link[1])))
    return tuple(links)


def _frames(
    file: Path, table: Table, names: tuple[str, ...], root: Path | None
) -> list[Frame]:
    columns, body = table
    animals = list(dict.fromkeys(c[0] for c in columns if c[0] != UNIQUE))
    slots = {(c[0], c[1], c[2]): i for i, c in enumerate(columns)}
    frames = []
    for record, image, values in body:
        frame = Frame(_image_path(file, image, root), str(file), record)
        for animal in animals:
            points = np.full((len(names), 2), math.nan)
            for k, name in enumerate(names):
                for axis, coord in enumerate("xy"):
                    slot = slots.get((animal, name, coord))
                    if slot is not None and slot < len(values):
                        points[k, axis] = values[slot]
            check_pairs(str(file), record, names, points)
            frame.animals.append(Animal(points, identity=animal or None))
        frames.append(frame)
    return frames


def _image_path(file: Path, image: str, root: Path | None) -> str:
    """Images are relative to the project root; a lone CSV's own folder also works."""
    relative = Path(image)
    candidates = [*([root / relative] if root else []), file.parent / relative.name,
                  file.parents[2] / relative if len(file.parents) > 2 else file.parent / relative]
    found = next((c for c in candidates if c.is_file()), candidates[0])
    return os.path.abspath(found)  # not resolve(): a linked image keeps the project's path
