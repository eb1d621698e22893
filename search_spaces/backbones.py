"""Table 1: backbone selection, zero-shot on lynx after Animal-Pose training.

Five timm backbones, each trained on Animal-Pose alone from ImageNet weights (no lynx
images, no synthetic ones) and scored on the lynx test set. The study's AP / AP.75 /
AP.85 / PCK.05 (params):

    ResNet-50   0.251 / 0.087 / 0.010 / 0.613  (25.6 M)
    ResNet-101  0.309 / 0.113 / 0.005 / 0.641  (44.6 M)
    ResNet-152  0.333 / 0.157 / 0.010 / 0.655  (60.2 M)
    HRNet-w32   0.403 / 0.277 / 0.013 / 0.697  (41.2 M)   <- chosen for every later table
    HRNet-w48   0.379 / 0.199 / 0.010 / 0.678  (77.5 M)

The baseline is the study's: 210 epochs, Adam 5e-4, 256x256, base animalpose, test lynx-test.
"""

from orchestrator import Experiment, Grid, Stage

EXPERIMENT = Experiment(
    name="backbones",
    description=__doc__ or "",
    stages=(
        Stage(axes={
            "model.backbone": Grid("resnet50", "resnet101", "resnet152", "hrnet_w32", "hrnet_w48"),
        }),
    ),
    table="backbones",
)
