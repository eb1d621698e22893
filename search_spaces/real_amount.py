"""Table 3: how many real lynx images, fine-tuned from ImageNet or from an Animal-Pose checkpoint.

Stage ``pretrain``: HRNet-w32 from ImageNet on Animal-Pose (one trial). Stage ``main``, two
arms: "imagenet" trains from ImageNet on Animal-Pose mixed with {0, 10, 100, 1000} real lynx
images; "checkpoint" fine-tunes the pretrain checkpoint (of the same seed) on
{10, 50, 100, 500, 1000} real images only. Real subsets are nested.

The study's AP: from Animal-Pose 10 -> 0.626, 50 -> 0.739, 100 -> 0.769, 500 -> 0.829,
1000 -> 0.849 (PCK 0.933); from ImageNet with Animal-Pose 0 -> 0.431, 10 -> 0.481,
100 -> 0.710, 1000 -> 0.837.
"""

from orchestrator import Cases, Experiment, Stage

FROM_CHECKPOINT = {
    "data.base": None, "model.init": "checkpoint", "model.weights": "@match:pretrain",
}

EXPERIMENT = Experiment(
    name="real_amount",
    description=__doc__ or "",
    stages=(
        Stage("pretrain"),
        Stage("main", depends_on=("pretrain",), cases=Cases({
            **{f"imagenet,real={n}": {"data.real_count": n} for n in (0, 10, 100, 1000)},
            **{f"checkpoint,real={n}": {**FROM_CHECKPOINT, "data.real_count": n}
               for n in (10, 50, 100, 500, 1000)},
        })),
    ),
    table="real_amount",
)
