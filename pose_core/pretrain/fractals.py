"""Fractal categories and their images (FractalDB, Kataoka et al., ACCV 2020), in numpy.

A category is an iterated function system: ``n`` affine maps ``x -> A x + b`` with entries
drawn uniformly from [-1, 1], map ``i`` chosen with probability proportional to ``|det A_i|``.
The chaos game (start anywhere, apply a randomly chosen map, repeat) walks the system's
attractor; many walks run side by side here, one numpy step for all of them. A system whose
attractor covers less than ``fill`` of the image is degenerate (a line or a point) and redrawn.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import numpy as np

from pose_core.pretrain.recipe import Recipe

STRIDE = 4  # label cells are STRIDE x STRIDE pixels: the pose heatmaps' stride
WALKS = 128  # chaos-game walks run side by side
BURN_IN = 12  # steps before a walk is on the attractor (the maps contract on average)


def affine_system(rng: np.random.Generator) -> np.ndarray:
    """(n, 6) rows ``a b c d e f`` of maps ``(x, y) -> (a x + b y + e, c x + d y + f)``, every
    map a contraction (largest singular value below 1), so the attractor exists and is bounded."""
    while True:
        system = rng.uniform(-1.0, 1.0, size=(int(rng.integers(2, 9)), 6))
        linear = system[:, :4].reshape(-1, 2, 2)
        if np.linalg.svd(linear, compute_uv=False)[:, 0].max() < 1.0:
            return system


def attractor(system: np.ndarray, points: int, rng: np.random.Generator) -> np.ndarray:
    """(points, 2) points of the system's attractor by the chaos game."""
    det = np.abs(system[:, 0] * system[:, 3] - system[:, 1] * system[:, 2])
    prob = det / det.sum() if det.sum() > 0 else np.full(len(system), 1 / len(system))
    steps = BURN_IN + -(-points // WALKS)
    choice = rng.choice(len(system), size=(steps, WALKS), p=prob)
    xy = rng.uniform(-1.0, 1.0, size=(WALKS, 2))
    out = np.empty((steps - BURN_IN, WALKS, 2))
    for step in range(steps):
        m = system[choice[step]]
        xy = np.stack([m[:, 0] * xy[:, 0] + m[:, 1] * xy[:, 1] + m[:, 4],
                       m[:, 2] * xy[:, 0] + m[:, 3] * xy[:, 1] + m[:, 5]], axis=1)
        if step >= BURN_IN:
            out[step - BURN_IN] = xy
    flat = out.reshape(-1, 2)[:points]
    return flat[np.isfinite(flat).all(axis=1)]


def render(points: np.ndarray, size: int, colour: np.ndarray, flip: bool) -> np.ndarray:
    """(size, size, 3) uint8: the points scaled to fit the image (a 2-pixel margin; the
    outermost 0.5% on each side may fall off it), in ``colour`` on black."""
    image = np.zeros((size, size, 3), np.uint8)
    if len(points) == 0:
        return image
    low, high = np.percentile(points, 0.5, axis=0), np.percentile(points, 99.5, axis=0)
    scale = (size - 4) / max(float((high - low).max()), 1e-9)
    pixels = ((points - low) * scale + 2 + (size - 4 - (high - low) * scale) / 2).astype(int)
    pixels = np.clip(pixels, 0, size - 1)
    image[pixels[:, 1], pixels[:, 0]] = colour
    return image[:, ::-1] if flip else image


def fill_rate(points: np.ndarray, size: int) -> float:
    image = render(points, size, np.array([255, 255, 255], np.uint8), False)
    return float((image[..., 0] > 0).mean())


def categories(recipe: Recipe, rng: np.random.Generator) -> list[np.ndarray]:
    """``recipe.categories`` systems whose attractors fill at least ``recipe.fill``."""
    found: list[np.ndarray] = []
    while len(found) < recipe.categories:
        system = affine_system(rng)
        if fill_rate(attractor(system, recipe.points, rng), recipe.image_size) >= recipe.fill:
            found.append(system)
    return found


def fractal(system: np.ndarray, recipe: Recipe, rng: np.random.Generator, side: int
            ) -> np.ndarray:
    """One instance of a category as a (side, side) bool mask of its points: one map's
    parameters times a weight in [0.8, 1.2] (the paper's intra-category variation), a random
    flip."""
    varied = system.copy()
    varied[int(rng.integers(len(system)))] *= rng.uniform(0.8, 1.2)
    points = attractor(varied, recipe.points, rng)
    return render(points, side, np.array([1, 1, 1], np.uint8), bool(rng.integers(2)))[..., 0] > 0


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float: a smooth random colour field (a 4 x 4 grid of dark colours,
    bilinearly upsampled) plus pixel noise, so that "no fractal" is not simply black."""
    grid = rng.uniform(0, 110, size=(4, 4, 3))
    axis = np.linspace(0, 3, size)
    low = np.floor(axis).astype(int).clip(0, 2)
    frac = axis - low
    rows = grid[low] * (1 - frac)[:, None, None] + grid[low + 1] * frac[:, None, None]
    field = rows[:, low] * (1 - frac)[None, :, None] + rows[:, low + 1] * frac[None, :, None]
    return field + rng.normal(0, 8, size=(size, size, 3))


def mosaic(systems: list[np.ndarray], recipe: Recipe, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """One training image and its label map: 1-3 fractals of random categories, each at a
    random size (a third to the whole of the side) and place, in a random bright colour, over
    a :func:`background`; later fractals are painted over earlier ones. The label map has one
    cell per 4 x 4 pixels (the pose heatmaps' stride): ``1 + category`` of the last fractal
    with a point in the cell, 0 (background) where none has one."""
    size, cell = recipe.image_size, STRIDE
    image = background(size, rng)
    labels = np.zeros((size // cell, size // cell), np.int64)
    for _ in range(int(rng.integers(1, 4))):
        category = int(rng.integers(len(systems)))
        side = int(rng.integers(size // 3, size + 1))
        mask = fractal(systems[category], recipe, rng, side)
        y0, x0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        full = np.zeros((size, size), bool)
        full[y0:y0 + side, x0:x0 + side] = mask
        image[full] = rng.integers(120, 256, size=3)
        cells = full.reshape(size // cell, cell, size // cell, cell).any(axis=(1, 3))
        labels[cells] = 1 + category
    return np.clip(image, 0, 255).astype(np.uint8), labels


def dataset(recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the recipe, ``(N, S, S, 3)`` uint8 with ``N = categories x
    instances``, and its label map ``(N, S/4, S/4)`` (:func:`mosaic`). Rendered once per
    process for all backbones that train on it (the images do not depend on the training
    fields); the arrays are shared, not to be written."""
    return _dataset(dataclasses.replace(recipe, name="", steps=0, batch=0, lr=0.0))


@functools.lru_cache(maxsize=1)
def _dataset(recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(recipe.seed)
    systems = categories(recipe, rng)
    pairs = [mosaic(systems, recipe, rng) for _ in range(recipe.images)]
    images, labels = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def batches(count: int, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled index batches over ``count`` items."""
    while True:
        order = rng.permutation(count)
        for start in range(0, count - batch + 1, batch):
            yield order[start:start + batch]
