"""Fractal categories and their images (FractalDB, Kataoka et al., ACCV 2020), in numpy.

A category is an iterated function system: ``n`` affine maps ``x -> A x + b`` with entries
drawn uniformly from [-1, 1], map ``i`` chosen with probability proportional to ``|det A_i|``.
The chaos game (start anywhere, apply a randomly chosen map, repeat) walks the system's
attractor; many walks run side by side here, one numpy step for all of them. A system whose
attractor covers less than ``fill`` of the image is degenerate (a line or a point) and redrawn.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pose_core.pretrain.recipe import Recipe

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


def instance(system: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """One image of a category: one map's parameters times a weight in [0.8, 1.2] (the
    paper's intra-category variation), a random bright colour, a random flip."""
    varied = system.copy()
    varied[int(rng.integers(len(system)))] *= rng.uniform(0.8, 1.2)
    colour = rng.integers(64, 256, size=3).astype(np.uint8)
    points = attractor(varied, recipe.points, rng)
    return render(points, recipe.image_size, colour, bool(rng.integers(2)))


def dataset(recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the recipe, ``(N, S, S, 3)`` uint8, and its category ``(N,)``."""
    rng = np.random.default_rng(recipe.seed)
    images, labels = [], []
    for label, system in enumerate(categories(recipe, rng)):
        for _ in range(recipe.instances):
            images.append(instance(system, recipe, rng))
            labels.append(label)
    return np.stack(images), np.array(labels, np.int64)


def batches(count: int, batch: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless shuffled index batches over ``count`` items."""
    while True:
        order = rng.permutation(count)
        for start in range(0, count - batch + 1, batch):
            yield order[start:start + batch]
