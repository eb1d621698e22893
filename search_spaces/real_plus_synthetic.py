"""Table 4: does synthetic data still help when fine-tuning on real lynx images?

Stage ``pretrain``: HRNet-w32 from ImageNet on Animal-Pose (one trial). Stage ``main``
fine-tunes that checkpoint (of the same seed) on {10, 50, 100, 500, 1000} real lynx images,
with 1k synthetic renders added or without them (nested subsets).

The study: no gain over real only (1000 real: 0.849 AP either way; AP.85 0.810 -> 0.821).
Its real-only rows are Table 3's checkpoint arm; here they are part of the experiment so
that the table compares within itself (in one results store they are reused from
``real_amount``, not trained again).
"""

from orchestrator import Experiment, Grid, Stage

FROM_CHECKPOINT = {
    "data.base": None, "model.init": "checkpoint", "model.weights": "@match:pretrain",
}

EXPERIMENT = Experiment(
    name="real_plus_synthetic",
    description=__doc__ or "",
    stages=(
        Stage("pretrain"),
        Stage("main", depends_on=("pretrain",), changes=FROM_CHECKPOINT, axes={
            "data.real_count": Grid(10, 50, 100, 500, 1000),
            "data.synthetic_count": Grid(0, 1000),
        }),
    ),
    table="real_plus_synthetic",
)
