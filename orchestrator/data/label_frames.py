"""What every label reader hands on: frames of animals' points, the source's keypoint layout,
and the two cell rules (a coordinate is a float or empty; x and y come together)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pose_core.records import DataError


@dataclass(frozen=True)
class Animal:
    """One animal's points in a frame: ``(K, 2)`` float, NaN where not labelled."""

    points: np.ndarray
    box: tuple[float, float, float, float] | None = None
    identity: str | None = None


@dataclass
class Frame:
    """One labelled image: where it is, which file and record it came from, and its animals."""

    image_path: str
    file: str
    record: str
    animals: list[Animal] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    """What a source says about its keypoints."""

    name: str
    keypoints: tuple[str, ...]
    links: tuple[tuple[int, int], ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] | None = None  # None: infer from the names


def number(file: str, record: str, field_name: str, text: str) -> float:
    """A coordinate cell: a float or empty/NaN (not labelled); anything else is a DataError."""
    if text.strip() == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(file, record, field_name, f"not a number: {text!r}", "a float") from None
    if math.isinf(value):
        raise DataError(file, record, field_name, f"got {text!r}", "a finite number or empty")
    return value


def check_pairs(file: str, record: str, names: tuple[str, ...], points: np.ndarray) -> None:
    """A point with x but no y (or y but no x) is a broken label, not a missing one."""
    half = np.isnan(points).any(axis=1) & ~np.isnan(points).all(axis=1)
    if half.any():
        k = int(np.flatnonzero(half)[0])
        raise DataError(file, record, f"{names[k]} x/y", f"one coordinate is NaN: "
                        f"{points[k].tolist()}", "both or neither")


def short(value: Any, limit: int = 80) -> str:
    """``value`` in at most ``limit`` characters on one line: an exception's first line (its
    type when empty), a string as is, anything else as its repr. Messages stay one line even
    when a foreign reader puts a whole record in its exception."""
    if isinstance(value, BaseException):
        lines = str(value).strip().splitlines()
        text = lines[0] if lines else type(value).__name__
    else:
        text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def yaml_problem(error: BaseException) -> str:
    """A YAML (or file) error in one line: PyYAML's problem and line, not its five-line report."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is not None and problem:
        return short(f"line {mark.line + 1}, column {mark.column + 1}: {problem}")
    return short(error)
