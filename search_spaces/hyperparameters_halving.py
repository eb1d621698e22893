"""The hyperparameter grid with successive halving over its lengths: the grid's answer for less.

The same grid as ``hyperparameters`` (lr {5e-4, 1e-4, 1e-5} x epochs {50, 100, 210}, without
and with all augmentations, on Animal-Pose + 1k synthetic), run length by length: all six
lr x augmentation arms train 50 epochs, the best half (by mean AP over the seeds) train 100,
the best of those 210 (``orchestrator.plan.halving``). With exact schedule forking each longer
length starts from the shorter one's checkpoint at its first learning-rate drop, so an arm that
reaches 210 epochs costs 50 + 61 + 131 epochs. Every row is a grid trial (the same training as
in ``hyperparameters``: in one results store the two reuse each other's trials); the dropped
arms' longer trials are not run, so its table has holes where the grid has numbers.
"""

import dataclasses

from search_spaces.hyperparameters import EXPERIMENT as GRID

# The grid's own stage, so the two cannot drift apart; only how it is run differs.
EXPERIMENT = dataclasses.replace(
    GRID,
    name="hyperparameters_halving",
    description=__doc__ or "",
    stages=tuple(dataclasses.replace(stage, scheduler="halving", keep=0.5)
                 for stage in GRID.stages),
    table="hyperparameters_halving",
)
