"""A pretrained start that posetune makes itself: formula-driven supervised pretraining.

Method: formula-driven supervised learning with FractalDB's categories (Kataoka et al.,
"Pre-training without Natural Images", ACCV 2020) and a dense task in the manner of SegRCDB
(Shinoda et al., ICCV 2023). Each category is one iterated function system (IFS: 2 to 8 random
affine maps of the plane) kept only if its attractor fills enough of the image; an instance
renders it with one map's parameters scaled by a random weight near 1 and a random flip. A
training image is a mosaic of 1-3 instances in random colours, sizes and places over a smooth
random colour field; the backbone (exactly the one the pose model builds,
:func:`pose_core.models.create_backbone`) learns to label every 4 x 4 cell with its fractal's
category or background through a small dense head that is then thrown away; the backbone's
state dict is the start. FractalDB's own whole-image classification was tried first and was
worse than random weights on the quickstart (BENCHMARKS.md).

Why this method: it needs no natural image and no download, so it can stand in for ImageNet on
a machine that has neither; it is supervised, which trains in a few hundred steps on a CPU
(the contrastive learning of Baradad et al., NeurIPS 2021, "Learning to See by Looking at
Noise", needs large batches and long schedules); and fractals are neither lynx nor
pose data, so the start cannot leak anything the study tests. Its task and size were chosen
by ``benchmarks/pretrained_start.py`` alone: how fast the quickstart learns from it against
random weights (BENCHMARKS.md), never by which way a study finding goes. At the 30-minute
budget it is level with random weights (BENCHMARKS.md, issue 25).

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
