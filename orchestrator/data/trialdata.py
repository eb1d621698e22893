"""Build one trial's training and test instances from its config and the catalog (Ray-free).

Training data = the ``base`` set whole + ``real_count`` images of ``real`` + ``synthetic_count``
images of ``synthetic`` (drawn evenly across scenes). Subsets are nested for one
``subset_seed`` (pose_core.mixing), and the digest of the exact instance ids goes in the
result row. Sources on another skeleton are mapped onto the test set's skeleton through the
shared keypoints (AP-10K 17 -> Animal-Pose 20: 15 shared, the rest unlabelled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from orchestrator.data.catalog import Catalog
from pose_core.config import TrialConfig
from pose_core.mixing import MixedSet, MixSource, mix, subset
from pose_core.records import Instance
from pose_core.skeletons import Skeleton, keypoint_mapping


@dataclass(frozen=True)
class TrialData:
    train: tuple[Instance, ...]
    test: tuple[Instance, ...]
    skeleton: Skeleton
    mixed: MixedSet

    @property
    def datasets(self) -> str:
        return ",".join(f"{name}={count}" for name, count in self.mixed.counts.items())


def remap(instances: list[Instance], source: Skeleton, target: Skeleton) -> list[Instance]:
    """Express ``instances`` on ``target``'s keypoints; points with no counterpart get v=0."""
    if source.keypoints == target.keypoints:
        return instances
    pairs = keypoint_mapping(source, target)
    if not pairs:
        raise ValueError(
            f"skeleton {source.name!r} shares no keypoints with {target.name!r}; "
            "datasets in one trial must share keypoints"
        )
    src_idx = np.array([s for s, _ in pairs])
    dst_idx = np.array([d for _, d in pairs])
    out = []
    for inst in instances:
        keypoints = np.zeros((target.num_keypoints, 3), dtype=np.float32)
        keypoints[dst_idx] = inst.keypoints[src_idx]
        out.append(dataclasses.replace(inst, keypoints=keypoints))
    return out


def test_set(
    cfg: TrialConfig, catalog: Catalog, progress: Callable[[str], None] | None = None
) -> tuple[list[Instance], Skeleton]:
    """The trial's test instances (``max_test`` images of ``data.test``) and their skeleton."""
    data = cfg.data
    test, skeleton, _ = catalog.load(data.test, progress)
    if data.max_test is not None:
        test = subset(test, min(data.max_test, len({i.image_id for i in test})), data.subset_seed)
    return test, skeleton


def assemble(
    cfg: TrialConfig, catalog: Catalog, progress: Callable[[str], None] | None = None
) -> TrialData:
    data = cfg.data
    test, skeleton = test_set(cfg, catalog, progress)
    sources = []
    if data.base:
        base, base_skeleton, _ = catalog.load(data.base, progress)
        sources.append(MixSource(data.base, remap(base, base_skeleton, skeleton),
                                 count=data.base_count))
    for name, count, balance in (
        (data.real, data.real_count, "none"),
        (data.synthetic, data.synthetic_count, "scene"),
    ):
        if name and count > 0:
            instances, source_skeleton, _ = catalog.load(name, progress)
            sources.append(
                MixSource(name, remap(instances, source_skeleton, skeleton), count=count,
                          balance_by=balance)  # type: ignore[arg-type]
            )
    if not sources:
        raise ValueError(
            "the trial has no training data: set data.base, or data.real_count / "
            "data.synthetic_count above 0"
        )
    mixed = mix(sources, seed=data.subset_seed)
    return TrialData(tuple(mixed.instances), tuple(test), skeleton, mixed)
