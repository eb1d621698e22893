"""Table 5: two stages, the study's best recipe.

Stage ``stage1``: HRNet-w32 from ImageNet on Animal-Pose + 1k synthetic renders (one
trial). Stage ``stage2`` fine-tunes that checkpoint (of the same seed) on real lynx images
only, {10, 50, 100, 500, 1000} of them (nested subsets).

The study's AP: 10 -> 0.619, 50 -> 0.758, 100 -> 0.783, 500 -> 0.838, 1000 -> 0.855
(PCK 0.936), the best of all its recipes.
"""

from orchestrator import Experiment, Grid, Stage

EXPERIMENT = Experiment(
    name="two_stage",
    description=__doc__ or "",
    stages=(
        Stage("stage1", changes={"data.synthetic_count": 1000}),
        Stage(
            "stage2",
            depends_on=("stage1",),
            changes={"data.base": None, "model.init": "checkpoint",
                     "model.weights": "@match:stage1"},
            axes={"data.real_count": Grid(10, 50, 100, 500, 1000)},
        ),
    ),
    table="two_stage",
)
