"""Training sets mixed from named sources, with nested deterministic subsets.

The study varies data sizes (10, 50, 100, ... real images; 0 .. 10k synthetic images) and
compares the results, so a smaller set must be a subset of a larger one: otherwise a size
sweep also measures which images happened to be drawn. Every subset here is a prefix of one
seeded ordering, so for one seed the 10 images are inside the 50, which are inside the 100.

Documented choices:
- Counts are IMAGES, as the study counts them: all instances of an image are drawn together.
  An image is identified by ``(source, image_id, image_path)`` of its instances.
- The ordering ranks images by ``sha256(seed, image key)``. It does not depend on the order of
  the input list, and adding or removing other images does not reorder the rest (a pool that
  grows keeps its earlier subsets as far as possible).
- ``balance_by="scene"`` (or ``"source"``) orders each group the same way, then interleaves
  the groups round-robin (groups in a seeded order, so the spare images of an uneven count do
  not always go to the same scene), then takes a prefix: still nested, and ``count=8`` over 4
  scenes is 2 per scene. Instances with no scene form their own group ``"(none)"``.
- ``MixedSet.counts`` are images per source; ``MixedSet.ids`` are the instance keys drawn, in
  draw order; ``digest`` is the first 16 hex digits of sha256 over the sorted instance keys.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pose_core.records import Instance

BalanceBy = Literal["none", "scene", "source"]
BALANCE_CHOICES: tuple[str, ...] = ("none", "scene", "source")
NO_GROUP = "(none)"


@dataclass(frozen=True)
class MixSource:
    """One named source of a mix and how many of its images to draw.

    ``count=None`` and ``ratio=None`` take the whole source. ``ratio`` draws
    ``round(ratio * images of the first source with count=None)`` images instead.
    """

    name: str
    instances: Sequence[Instance]
    count: int | None = None
    ratio: float | None = None
    balance_by: BalanceBy = "none"


@dataclass(frozen=True)
class MixedSet:
    """The drawn training set: instances in draw order, source by source."""

    instances: tuple[Instance, ...]
    counts: dict[str, int]
    digest: str
    ids: dict[str, tuple[str, ...]]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def _image_key(inst: Instance) -> str:
    return f"{inst.source}\x00{inst.image_id}\x00{inst.image_path}"


def _group_images(instances: Sequence[Instance]) -> dict[str, list[Instance]]:
    images: dict[str, list[Instance]] = defaultdict(list)
    for inst in instances:
        images[_image_key(inst)].append(inst)
    for members in images.values():
        members.sort(key=lambda i: (i.key(), i.annotation_id))
    return images


def _group_of(members: list[Instance], balance_by: str) -> str:
    if balance_by == "scene":
        return members[0].scene or NO_GROUP
    if balance_by == "source":
        return members[0].source or NO_GROUP
    return NO_GROUP


def image_order(
    instances: Sequence[Instance], seed: int, balance_by: BalanceBy = "none"
) -> list[list[Instance]]:
    """All images of ``instances`` (each a list of its instances) in the seeded draw order."""
    if balance_by not in BALANCE_CHOICES:
        raise ValueError(f"unknown balance_by {balance_by!r}; valid: {', '.join(BALANCE_CHOICES)}")
    images = _group_images(instances)
    groups: dict[str, list[str]] = defaultdict(list)
    for key, members in images.items():
        groups[_group_of(members, balance_by)].append(key)
    queues = [
        sorted(keys, key=lambda k: _rank(seed, k))
        for _, keys in sorted(groups.items(), key=lambda item: _rank(seed, "group:" + item[0]))
    ]
    order: list[str] = []
    depth = max((len(q) for q in queues), default=0)
    for i in range(depth):
        order.extend(q[i] for q in queues if i < len(q))
    return [images[key] for key in order]


def subset(
    instances: Sequence[Instance],
    count: int | None,
    seed: int,
    balance_by: BalanceBy = "none",
    name: str = "instances",
) -> list[Instance]:
    """The first ``count`` images of the seeded order, as their instances (draw order).

    ``count=None`` takes every image. Raises ``ValueError`` naming ``name`` when more images
    are asked for than exist, or ``count`` is negative.
    """
    ordered = image_order(instances, seed, balance_by)
    if count is None:
        count = len(ordered)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"source {name!r}: count must be a non-negative integer, got {count!r}")
    if count > len(ordered):
        raise ValueError(
            f"source {name!r}: asked for {count} images, only {len(ordered)} available"
        )
    return [inst for members in ordered[:count] for inst in members]


def image_count(instances: Sequence[Instance]) -> int:
    """Number of distinct images among ``instances``."""
    return len({_image_key(inst) for inst in instances})


def _resolve_counts(sources: Sequence[MixSource]) -> list[int | None]:
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate source names in mix: {', '.join(duplicates)}")
    reference = next((s for s in sources if s.count is None and s.ratio is None), None)
    counts: list[int | None] = []
    for source in sources:
        if source.count is not None and source.ratio is not None:
            raise ValueError(f"source {source.name!r}: give count or ratio, not both")
        if source.ratio is None:
            counts.append(source.count)
            continue
        if source.ratio < 0:
            raise ValueError(f"source {source.name!r}: ratio must be >= 0, got {source.ratio}")
        if reference is None:
            raise ValueError(
                f"source {source.name!r}: ratio needs a source with count=None to be relative to"
            )
        counts.append(round(source.ratio * image_count(reference.instances)))
    return counts


def mix(sources: Sequence[MixSource], seed: int = 0) -> MixedSet:
    """Draw each source's subset (nested per seed) and concatenate them in source order."""
    drawn: list[Instance] = []
    counts: dict[str, int] = {}
    ids: dict[str, tuple[str, ...]] = {}
    for source, count in zip(sources, _resolve_counts(sources), strict=True):
        chosen = subset(source.instances, count, seed, source.balance_by, name=source.name)
        drawn.extend(chosen)
        counts[source.name] = image_count(chosen)
        ids[source.name] = tuple(inst.key() for inst in chosen)
    return MixedSet(tuple(drawn), counts, digest_of(drawn), ids)


def digest_of(instances: Sequence[Instance]) -> str:
    """16 hex digits of sha256 over the sorted instance keys: names the exact training set."""
    text = "\n".join(sorted(inst.key() for inst in instances))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
