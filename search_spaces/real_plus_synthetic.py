"""Table 4: does synthetic data still help when fine-tuning on real lynx images?

Stage ``pretrain``: HRNet-w32 from ImageNet on Animal-Pose (one trial). Stage ``main``
fine-tunes that checkpoint (of the same seed) on real images plus synthetic renders only:
1k synthetic with {0, 10, 100, 1000} real, and {50, 100, 500} real with as many synthetic.

The study: no gain over real only (1000 real: 0.849 AP either way; AP.85 0.810 -> 0.821).
"""

from orchestrator.experiment import Cases, Experiment, Stage

FROM_CHECKPOINT = {
    "data.base": None, "model.init": "checkpoint", "model.weights": "@match:pretrain",
}
MIXES = [(0, 1000), (10, 1000), (100, 1000), (1000, 1000), (50, 50), (100, 100), (500, 500)]

EXPERIMENT = Experiment(
    name="real_plus_synthetic",
    description=__doc__ or "",
    stages=(
        Stage("pretrain"),
        Stage("main", depends_on=("pretrain",), changes=FROM_CHECKPOINT, cases=Cases({
            f"real={real},synthetic={synthetic}": {
                "data.real_count": real, "data.synthetic_count": synthetic,
            }
            for real, synthetic in MIXES
        })),
    ),
    table="real_plus_synthetic",
)
