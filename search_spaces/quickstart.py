"""Quickstart: do a few real and synthetic images help a generic pose model? (posetune demo)

A 2 x 2 study on generated data that runs on a laptop CPU in minutes: a tiny HRNet
(hrnet_w18_small, random init, 128x128 input) trained on a generic base set plus
{0, 40} real camera-trap-style images x {0, 100} synthetic renders, scored on a held-out
camera-trap-style test set, 20 epochs each. It mirrors the study's Tables 3 and 4 at toy scale; the
numbers only show the pipeline works, not what the study found.
"""

from orchestrator import Experiment, Grid, Stage
from pose_core.config import TrialConfig, with_values

BASELINE = with_values(TrialConfig(), {
    "model.backbone": "hrnet_w18_small",
    "model.init": "random",
    "data.input_size": 128,
    "data.base_count": 120,
    "data.max_test": 60,
    "data.loader_workers": 0,
    "train.epochs": 20,
    "train.batch_size": 16,
    "train.lr": 2e-3,
    "train.warmup_iters": 20,
    "train.bf16": False,
    "eval.interval": 1,
})

EXPERIMENT = Experiment(
    name="quickstart",
    description=__doc__ or "",
    baseline=BASELINE,
    stages=(Stage(axes={"data.real_count": Grid(0, 40), "data.synthetic_count": Grid(0, 100)}),),
    table="quickstart",
)
