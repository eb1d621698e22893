"""What makes a generated-pretrained start: a named recipe and its digest (torch-free).

The digest identifies the weights a recipe gives for a backbone: the recipe's values, the
backbone, the source of the code that generates and trains (this package and
``pose_core/models.py``, which builds the backbone) and the torch and timm versions (their
initialisation and kernels decide the weights too). A cached start is reused while its digest
matches and rebuilt when any of these change.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pose_core.config import ConfigError

PACKAGE = Path(__file__).resolve().parent
SOURCES = (*sorted(PACKAGE.glob("*.py")), PACKAGE.parent / "models.py")


@dataclass(frozen=True)
class Recipe:
    """One pretraining: ``categories`` IFS classes x ``instances`` rendered images each, at
    ``image_size`` px, trained for ``steps`` AdamW steps of ``batch`` images (cosine lr)."""

    name: str
    categories: int
    instances: int
    image_size: int
    points: int  # chaos-game points per image
    steps: int
    batch: int
    lr: float
    fill: float = 0.12  # smallest share of pixels a category's attractor must cover
    seed: int = 0

    @property
    def images(self) -> int:
        return self.categories * self.instances


RECIPES: dict[str, Recipe] = {
    # Seconds: proves the plumbing (tests, CI); the weights mean nothing.
    "smoke": Recipe("smoke", categories=4, instances=2, image_size=32, points=1000, steps=2,
                    batch=4, lr=2e-3),
    # The mini scale's stand-in for ImageNet. Steps sized to the 30-minute budget for all five
    # mini backbones on 2 CPU cores (BENCHMARKS.md: 17 min 26 s wall, 32 CPU-minutes); its
    # worth is checked by benchmarks/pretrained_start.py (level with random weights), never
    # by a study finding.
    "mini": Recipe("mini", categories=64, instances=24, image_size=64, points=6000, steps=400,
                   batch=32, lr=2e-3),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown pretraining recipe {name!r}; valid: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_digest(recipe: Recipe, backbone: str) -> str:
    """16 hex digits naming the weights ``recipe`` gives ``backbone`` on this software."""
    blob = json.dumps({"recipe": dataclasses.asdict(recipe), "backbone": backbone,
                       "code": code_digest(), "versions": versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.cache
def code_digest() -> str:
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "timm", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "none"
    return out


# model.weights naming a generated start: "generated:RECIPE/BACKBONE/DIGEST" (planning writes
# it for model.init = "imagenet" at a scale without ImageNet files; orchestrator.data.pretrained
# finds its file).
START_PREFIX = "generated:"


def start_marker(recipe_name: str, backbone: str) -> str:
    return f"{START_PREFIX}{recipe_name}/{backbone}/{recipe_digest(get_recipe(recipe_name), backbone)}"
