"""A pretrained start that posetune makes itself: formula-driven supervised pretraining.

Method: FractalDB-style formula-driven supervised learning (Kataoka et al., "Pre-training
without Natural Images", ACCV 2020). Each category is one iterated function system (IFS: 2 to
8 random affine maps of the plane) kept only if its attractor fills enough of the image; an
instance renders the category with one map's parameters scaled by a random weight near 1, a
random colour and flip. The backbone (exactly the one the pose model builds,
:func:`pose_core.models.create_backbone`) learns to tell the categories apart through a small
classification head that is then thrown away; the backbone's state dict is the start.

Why this method: it needs no natural image and no download, so it can stand in for ImageNet on
a machine that has neither; it is supervised classification, which trains in a few thousand
steps on a CPU (the contrastive learning of Baradad et al., NeurIPS 2021, "Learning to See by
Looking at Noise", needs large batches and long schedules); and fractals are neither lynx nor
pose data, so the start cannot leak anything the study tests. Its size (categories, images,
steps) was chosen by ``benchmarks/pretrained_start.py`` alone: how fast the quickstart learns
from it against random weights (BENCHMARKS.md), never by which way a study finding goes.

- :mod:`pose_core.pretrain.recipe`: the recipes (``smoke``, ``mini``) and the digest of what
  makes a start (torch-free, for planning);
- :mod:`pose_core.pretrain.fractals`: the categories and their images (numpy);
- :mod:`pose_core.pretrain.train`: the training loop, returning the backbone's state dict.
"""

from pose_core.pretrain.recipe import (
    RECIPES,
    START_PREFIX,
    Recipe,
    get_recipe,
    recipe_digest,
    start_marker,
)

__all__ = ["RECIPES", "START_PREFIX", "Recipe", "get_recipe", "recipe_digest", "start_marker"]
