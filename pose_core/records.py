"""The one instance record every reader produces, and the error every reader raises.

An instance is one annotated animal in one image: the unit a top-down pose model sees.
Readers (COCO JSON, CzechLynx CSV, the synthetic generator's output) all land here, so
mixing, cropping and evaluation never care where an instance came from.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class DataError(ValueError):
    """A problem with input data, naming the file, the record and the field.

    The message always reads ``FILE: RECORD: field 'FIELD': PROBLEM (expected EXPECTED)`` so
    a user can open the file and go straight to the bad record.
    """

    def __init__(
        self,
        file: str,
        record: str,
        field: str,
        problem: str,
        expected: str | None = None,
    ) -> None:
        self.file = str(file)
        self.record = record
        self.field = field
        self.problem = problem
        self.expected = expected
        message = f"{self.file}: {record}: field '{field}': {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # The default rebuilds from ``args`` (the message alone), which fails with a TypeError
        # when Ray unpickles the error in the driver and loses the line naming the file.
        return type(self), (self.file, self.record, self.field, self.problem, self.expected)


@dataclass(frozen=True, eq=False)
class Instance:
    """One animal in one image.

    ``keypoints`` is ``(K, 3)`` float32: x, y in image pixels and v in {0, 1, 2}
    (0 = not labelled, 1 = labelled but occluded, 2 = visible), COCO's convention.
    ``bbox`` is COCO ``(x, y, w, h)`` in pixels. ``area`` is what OKS normalises by;
    ``area_rule`` records where it came from (``given``, ``bbox`` or ``mask``).
    """

    image_path: str
    image_id: int
    annotation_id: int
    width: int
    height: int
    bbox: tuple[float, float, float, float]
    keypoints: np.ndarray
    area: float
    source: str
    category: str = "animal"
    area_rule: str = "given"
    scene: str | None = None
    identity: str | None = None
    split: dict[str, str] = field(default_factory=dict)

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def visible(self) -> np.ndarray:
        """``(K,)`` bool: the keypoint is labelled (v > 0)."""
        return np.asarray(self.keypoints[:, 2] > 0)

    def key(self) -> str:
        """A stable id for hashing subsets: source plus annotation id."""
        return f"{self.source}:{self.annotation_id}"


@dataclass
class ReadReport:
    """What a reader kept and what it skipped, and why. Nothing is dropped silently."""

    file: str
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] += count

    def note(self, what: str, count: int = 1) -> None:
        """Something done to kept records that the user should know (e.g. area from bbox)."""
        self.notes[what] += count

    def summary(self) -> str:
        text = f"{self.file}: kept {self.kept} instances"
        if self.skipped:
            parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            text += f"; skipped {sum(self.skipped.values())} ({parts})"
        if self.notes:
            text += "; " + ", ".join(f"{n} {what}" for what, n in sorted(self.notes.items()))
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "kept": self.kept, "skipped": dict(self.skipped),
                "notes": dict(self.notes)}
