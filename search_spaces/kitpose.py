"""KITPose head vs the plain heatmap head on the study's data.

HRNet-w32 from ImageNet on Animal-Pose + 100 real lynx images, with the plain heatmap
head (MSE) or KITPose's Keypoint Interactive Transformer head (its kpt + part loss), scored
on the lynx test set. KITPose (Rao et al.) reports AP-10K val AP 76.6 against 73.8 for
plain HRNet-w32 at 256x256; the study itself did not run it.
"""

from orchestrator import Cases, Experiment, Stage

EXPERIMENT = Experiment(
    name="kitpose",
    description=__doc__ or "",
    stages=(
        Stage(changes={"data.real_count": 100}, cases=Cases({
            "heatmap": {"model.head": "heatmap", "train.loss": "mse"},
            "kitpose": {"model.head": "kitpose", "train.loss": "kitpose"},
        })),
    ),
    scales={"smoke": {"model.kit_dim": 64}},
    table="kitpose",
)
