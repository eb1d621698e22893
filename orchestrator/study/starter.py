"""``posetune new``: a commented starter experiment file that runs as written.

The starter trains on the data posetune generates itself (no catalog needed), so a first
``posetune sweep my_study.py --smoke`` works before any labels are converted; its comments
show the two edits that point it at a user's own species.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.study.files import names

STARTER = '''"""{name}: does a smaller learning rate help? (posetune starter experiment)

Written by `posetune new`. {how}
    posetune sweep {file} {sweep_args}     # --smoke: minutes on a laptop CPU
    posetune table runs/{name} --experiment {name}
    posetune plot runs/{name} --x train.lr --out runs/{name}/lr.png

{catalog_intro}

    # my_catalog.toml (relative paths are relative to this file)
    [datasets.{data}]
    labels = "openfield-Pranav-2018-10-30"    # DeepLabCut project, .slp, COCO JSON, ...
    split = "train"                            # the first 80% of labelled frames
    sigmas = {{ snout = 0.026, leftear = 0.035, rightear = 0.035, tailbase = 0.079 }}

    [datasets.{data}-test]
    labels = "openfield-Pranav-2018-10-30"
    split = "test"                             # the last 20%
{catalog_outro}"""

from orchestrator import Experiment, Grid, Stage
from pose_core.config import TrialConfig, with_values

BASELINE = with_values(TrialConfig(), {{
{data_lines}
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
    stages=(Stage(axes={{"train.lr": Grid(2e-3, 5e-4)}}),),{smoke}
)
'''


OWN_DATA = (
    '"data.base": "{data}",',
    '"data.test": "{data}-test",',
    '"eval.sigmas": "default",      # the catalog\'s sigmas; uniform 0.1 when it names none',
)
GENERATED_DATA = ('"data.base_count": 120,', '"data.max_test": 60,')
# --smoke caps the test set at 24 images; a labelled test set is often smaller: score it whole.
OWN_SMOKE = '\n    scales={"smoke": {"data.max_test": None}},  # --smoke: still the whole (small) test set'


def experiment_name(path: str | Path) -> str:
    """The starter's experiment name: the file's stem, other characters as ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem) or "my_study"


def starter_text(path: str | Path, data: str | None = None) -> str:
    """The starter file's text; the experiment is named after the file's stem. With ``data``,
    it trains on catalog entry ``data`` and tests on ``data-test``; without, on generated
    data, the own-species lines commented out."""
    name = experiment_name(path)
    own = [line.format(data=data or "my-species") for line in OWN_DATA]
    if data:
        lines = [f"    # Your own species: catalog entries {data} and {data}-test",
                 *(f"    {line}" for line in own)]
        texts = {
            "how": f"It trains on catalog entry {data} and tests on {data}-test:",
            "sweep_args": "--catalog my_catalog.toml --smoke",
            "catalog_intro": "The catalog names your labels, for example:",
            "catalog_outro": "",
        }
    else:
        lines = ["    # Your own species (the names are catalog entries):",
                 *(f"    # {line}" for line in own), *(f"    {g}" for g in GENERATED_DATA)]
        texts = {
            "how": "It runs as written on data posetune generates itself:",
            "sweep_args": "--smoke",
            "catalog_intro": "Your own species: describe your labels in a catalog file, e.g.",
            "catalog_outro": '\nthen uncomment the "Your own species" lines below (or write '
                             "this file with\n`posetune new FILE --data NAME`) and add "
                             "--catalog my_catalog.toml to the sweep.\n",
        }
    return STARTER.format(name=name, file=Path(path).name, data=data or "my-species",
                          data_lines="\n".join(lines), smoke=OWN_SMOKE if data else "", **texts)


def write_starter(path: str | Path, force: bool = False, data: str | None = None) -> str:
    """Write the starter to ``path`` (refusing to overwrite unless ``force``); returns the path.

    A file named like a shipped experiment is refused: its rows would carry the shipped
    experiment's name, mix with that experiment's in a results store, and be rendered with
    its study table."""
    target = Path(path)
    if target.suffix != ".py":
        raise ValueError(f"{path}: an experiment file must end in .py")
    name = experiment_name(target)
    if name in names():
        raise ValueError(f"{path}: {name!r} is the name of a shipped experiment (posetune "
                         f"list), and the file's experiment is named after it; choose another "
                         f"name, e.g. my_{name}.py")
    if target.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(starter_text(target, data))
    return str(target)
