"""``posetune new``: a commented starter experiment file that runs as written.

The starter trains on the data posetune generates itself (no catalog needed), so a first
``posetune sweep my_study.py --smoke`` works before any labels are converted; its comments
show the two edits that point it at a user's own species.
"""

from __future__ import annotations

import re
from pathlib import Path

STARTER = '''"""{name}: does a smaller learning rate help? (posetune starter experiment)

Written by `posetune new`. It runs as written on data posetune generates itself:
    posetune sweep {file} --smoke        # minutes on a laptop CPU
    posetune table runs/{name} --experiment {name}

Your own species: describe your labels in a catalog file (TOML), for example

    # my_catalog.toml
    [datasets.my-species]
    labels = "/data/openfield-Pranav-2018-10-30"   # DeepLabCut project, .slp, COCO JSON, ...
    split = "train"                                # the first 80% of labelled frames
    sigmas = {{ snout = 0.026, leftear = 0.035, rightear = 0.035, tailbase = 0.079 }}

    [datasets.my-species-test]
    labels = "/data/openfield-Pranav-2018-10-30"
    split = "test"                                 # the last 20%

then uncomment the "Your own species" lines below and run
    posetune sweep {file} --catalog my_catalog.toml
"""

from orchestrator.experiment import Experiment, Grid, Stage
from pose_core.config import TrialConfig, with_values

BASELINE = with_values(TrialConfig(), {{
    # Your own species (the names are catalog entries):
    # "data.base": "my-species",
    # "data.test": "my-species-test",
    # "eval.sigmas": "default",      # the catalog's sigmas; uniform 0.1 when it names none
    "data.base_count": 120,
    "data.max_test": 60,
    "data.input_size": 128,
    "data.loader_workers": 0,
    "model.backbone": "hrnet_w18_small",   # any timm backbone name
    "model.init": "random",                # "imagenet": timm's pretrained weights
    "train.epochs": 20,
    "train.batch_size": 16,
    "train.warmup_iters": 20,
    "train.bf16": False,                   # True on a GPU
    "eval.interval": 1,
}})

EXPERIMENT = Experiment(
    name="{name}",
    description=__doc__ or "",
    baseline=BASELINE,
    # One axis: every value is one trial (add axes for a grid; --seeds N repeats each).
    stages=(Stage(axes={{"train.lr": Grid(2e-3, 5e-4)}}),),
)
'''


def starter_text(path: str | Path) -> str:
    """The starter file's text; the experiment is named after the file's stem."""
    stem = Path(path).stem
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", stem) or "my_study"
    return STARTER.format(name=name, file=Path(path).name)


def write_starter(path: str | Path, force: bool = False) -> str:
    """Write the starter to ``path`` (refusing to overwrite unless ``force``); returns the path."""
    target = Path(path)
    if target.suffix != ".py":
        raise ValueError(f"{path}: an experiment file must end in .py")
    if target.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(starter_text(target))
    return str(target)
