"""Keypoint layouts (skeletons), OKS sigma sets and the Animal-Pose <-> AP-10K mapping.

Facts come from POSE_REFERENCE.md section 1 (MMPose dataset metas ``animalpose.py`` and
``ap10k.py``). All indices are 0-based.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

UNIFORM_SIGMA = 0.1  # every keypoint of a skeleton no sigma set is known for


class SigmaError(ValueError):
    """A sigma spec that does not fit the skeleton, or cannot be read."""


@dataclass(frozen=True)
class Skeleton:
    """A keypoint layout: names in model-channel order, left/right pairs, links, body halves."""

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    links: tuple[tuple[int, int], ...]
    upper_body: tuple[int, ...]
    lower_body: tuple[int, ...]
    sigmas: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.keypoints)
        if len(self.sigmas) != k:
            raise ValueError(f"skeleton {self.name!r}: {len(self.sigmas)} sigmas for {k} keypoints")
        used: set[int] = set()
        for a, b in self.flip_pairs:
            if a == b or a in used or b in used or not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"skeleton {self.name!r}: bad flip pair ({a}, {b})")
            used.update((a, b))
        for a, b in self.links:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"skeleton {self.name!r}: link ({a}, {b}) out of range 0..{k - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_index(self) -> tuple[int, ...]:
        """Permutation ``i -> mirror(i)``; unpaired keypoints map to themselves."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)

    def index(self, name: str) -> int:
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise KeyError(
                f"skeleton {self.name!r} has no keypoint {name!r}; valid: {', '.join(self.keypoints)}"
            ) from None


def _links_by_name(
    names: tuple[str, ...], pairs: list[tuple[str, str]]
) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


# fmt: off
_AP_NAMES = (
    "L_Eye", "R_Eye", "L_EarBase", "R_EarBase", "Nose", "Throat", "TailBase", "Withers",
    "L_F_Elbow", "R_F_Elbow", "L_B_Elbow", "R_B_Elbow",
    "L_F_Knee", "R_F_Knee", "L_B_Knee", "R_B_Knee",
    "L_F_Paw", "R_F_Paw", "L_B_Paw", "R_B_Paw",
)

ANIMALPOSE = Skeleton(
    name="animalpose",
    keypoints=_AP_NAMES,
    flip_pairs=((0, 1), (2, 3), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19)),
    links=_links_by_name(
        _AP_NAMES,
        [
            ("L_Eye", "R_Eye"), ("L_Eye", "L_EarBase"), ("R_Eye", "R_EarBase"),
            ("L_Eye", "Nose"), ("R_Eye", "Nose"),
            ("Nose", "Throat"), ("Throat", "Withers"), ("TailBase", "Withers"),
            ("Throat", "L_F_Elbow"), ("L_F_Elbow", "L_F_Knee"), ("L_F_Knee", "L_F_Paw"),
            ("Throat", "R_F_Elbow"), ("R_F_Elbow", "R_F_Knee"), ("R_F_Knee", "R_F_Paw"),
            ("TailBase", "L_B_Elbow"), ("L_B_Elbow", "L_B_Knee"), ("L_B_Knee", "L_B_Paw"),
            ("TailBase", "R_B_Elbow"), ("R_B_Elbow", "R_B_Knee"), ("R_B_Knee", "R_B_Paw"),
        ],
    ),
    upper_body=(0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17),
    lower_body=(6, 10, 11, 14, 15, 18, 19),
    # MMPose configs/_base_/datasets/animalpose.py, kept verbatim (misaligned, see below).
    sigmas=(
        0.025, 0.025, 0.026, 0.035, 0.035, 0.10, 0.10, 0.10,
        0.107, 0.107, 0.107, 0.107, 0.087, 0.087, 0.087, 0.087,
        0.089, 0.089, 0.089, 0.089,
    ),
)

_AP10K_NAMES = (
    "L_Eye", "R_Eye", "Nose", "Neck", "Root of tail",
    "L_Shoulder", "L_Elbow", "L_F_Paw", "R_Shoulder", "R_Elbow", "R_F_Paw",
    "L_Hip", "L_Knee", "L_B_Paw", "R_Hip", "R_Knee", "R_B_Paw",
)

AP10K = Skeleton(
    name="ap10k",
    keypoints=_AP10K_NAMES,
    flip_pairs=((0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16)),
    links=_links_by_name(
        _AP10K_NAMES,
        [
            ("L_Eye", "R_Eye"), ("L_Eye", "Nose"), ("R_Eye", "Nose"),
            ("Nose", "Neck"), ("Neck", "Root of tail"),
            ("Neck", "L_Shoulder"), ("L_Shoulder", "L_Elbow"), ("L_Elbow", "L_F_Paw"),
            ("Neck", "R_Shoulder"), ("R_Shoulder", "R_Elbow"), ("R_Elbow", "R_F_Paw"),
            ("Root of tail", "L_Hip"), ("L_Hip", "L_Knee"), ("L_Knee", "L_B_Paw"),
            ("Root of tail", "R_Hip"), ("R_Hip", "R_Knee"), ("R_Knee", "R_B_Paw"),
        ],
    ),
    # MMPose ap10k.py marks Root of tail, hips, knees and back paws "lower".
    upper_body=(0, 1, 2, 3, 5, 6, 7, 8, 9, 10),
    lower_body=(4, 11, 12, 13, 14, 15, 16),
    sigmas=(
        0.025, 0.025, 0.026, 0.035, 0.035, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062,
        0.107, 0.087, 0.089, 0.107, 0.087, 0.089,
    ),
)

# fmt: on

SKELETONS: dict[str, Skeleton] = {"animalpose": ANIMALPOSE, "ap10k": AP10K}


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; valid: {', '.join(SKELETONS)}") from None


# POSE_REFERENCE 1.3: the anatomically shared points, (animalpose_idx, ap10k_idx). The reference
# text says "15 points" but its own table has 16 rows (20 - 4 unmatched = 17 - 1 unmatched = 16).
# Animal-Pose calls the shoulder joint "F_Elbow" and the wrist "F_Knee"; the hind legs are
# hip/knee/paw in both. Ears, Throat, Withers (Animal-Pose) and Neck (AP-10K) have no partner.
# fmt: off
ANIMALPOSE_AP10K_SHARED: tuple[tuple[int, int], ...] = (
    (0, 0), (1, 1), (4, 2), (6, 4),
    (8, 5), (9, 8), (10, 11), (11, 14),
    (12, 6), (13, 9), (14, 12), (15, 15),
    (16, 7), (17, 10), (18, 13), (19, 16),
)
# fmt: on

# ------------------------------------------------------------------ sigma sets

# "animalpose-corrected" (POSE_REFERENCE section 2 proposal; the real Hitchhiker vector is unknown).
# Why: MMPose's Animal-Pose head sigmas read (eyes .025 .025, ears .026 .035, nose .035). COCO has
# nose .026, eyes .025, ears .035: MMPose wrote the values in COCO-like "eyes, nose, ears" order
# onto Animal-Pose's "eyes, ears, nose" order, a shift by one. That leaves the ears asymmetric
# (breaking flip-invariance of OKS) and gives the nose an ear value. Fixes:
# - both ear bases 0.035: COCO's ear value, what the right ear already has. An ear *base* is a
#   fuzzier landmark than a tip, so the looser of the two values is the safer choice.
# - Nose 0.026: COCO's nose.
# - front legs take AP-10K's values for the same joints (1.3 mapping): F_Elbow is AP-10K's
#   Shoulder 0.079, F_Knee is AP-10K's Elbow 0.072, F_Paw is AP-10K's F_Paw 0.062. MMPose had
#   given them COCO hip/knee/ankle values (.107/.087/.089), which are meant for hind legs.
# - Throat/TailBase/Withers 0.10 and the hind legs (.107/.087/.089) are kept.
# fmt: off
ANIMALPOSE_CORRECTED_SIGMAS: tuple[float, ...] = (
    0.025, 0.025, 0.035, 0.035, 0.026, 0.10, 0.10, 0.10,
    0.079, 0.079, 0.107, 0.107, 0.072, 0.072, 0.087, 0.087,
    0.062, 0.062, 0.089, 0.089,
)
# fmt: on

# Named sets, each tied to the skeleton whose keypoint order it is written in.
_NAMED_SIGMAS: dict[str, tuple[Skeleton, tuple[float, ...]]] = {
    "animalpose": (ANIMALPOSE, ANIMALPOSE.sigmas),
    "animalpose-corrected": (ANIMALPOSE, ANIMALPOSE_CORRECTED_SIGMAS),
    "ap10k": (AP10K, AP10K.sigmas),
}


def resolve_sigmas(spec: str, skeleton: Skeleton) -> np.ndarray:
    """Turn a sigma spec into a ``(K,)`` float64 vector for ``skeleton``.

    Specs: ``animalpose``, ``animalpose-corrected``, ``ap10k`` (named sets; the skeleton's
    keypoint names must match the set's, case-insensitively), ``default`` (the skeleton's own
    ``sigmas``), ``uniform:<v>``, or a path to a JSON file holding a list of K numbers or an
    object ``{keypoint_name: number}`` with every keypoint named. Any mismatch raises
    :class:`SigmaError`; there is no fallback.
    """
    k = skeleton.num_keypoints
    if spec in _NAMED_SIGMAS:
        owner, values = _NAMED_SIGMAS[spec]
        if len(values) != k:
            raise SigmaError(
                f"sigma spec {spec!r}: has {len(values)} values, skeleton {skeleton.name!r} "
                f"has K={k} keypoints (expected {k}, got {len(values)})"
            )
        if _fold(owner.keypoints) != _fold(skeleton.keypoints):
            raise SigmaError(
                f"sigma spec {spec!r} is written for skeleton {owner.name!r} keypoints "
                f"{list(owner.keypoints)}; skeleton {skeleton.name!r} has {list(skeleton.keypoints)}"
            )
        return _checked(spec, np.asarray(values, dtype=np.float64), k)
    if spec == "default":
        return _checked(spec, np.asarray(skeleton.sigmas, dtype=np.float64), k)
    if spec.startswith("uniform:"):
        try:
            value = float(spec.split(":", 1)[1])
        except ValueError:
            raise SigmaError(f"sigma spec {spec!r}: 'uniform:<v>' needs a number") from None
        return _checked(spec, np.full(k, value, dtype=np.float64), k)
    path = Path(spec)
    if path.suffix.lower() == ".json" or path.exists():
        return _checked(spec, _sigmas_from_json(spec, path, skeleton), k)
    raise SigmaError(
        f"sigma spec {spec!r}: not a named set ({', '.join([*_NAMED_SIGMAS, 'default'])}), "
        "not 'uniform:<v>' and not an existing JSON file"
    )


def with_named_sigmas(skeleton: Skeleton, sigmas: dict[str, float], where: str) -> Skeleton:
    """``skeleton`` with its own sigmas (the ``default`` spec) set by keypoint name, e.g. from
    a catalog's ``sigmas = {nose = 0.026, ...}``; every keypoint must be named, once."""
    unknown = sorted(set(sigmas) - set(skeleton.keypoints))
    missing = [n for n in skeleton.keypoints if n not in sigmas]
    if unknown or missing:
        raise SigmaError(f"{where}: keypoint names do not match skeleton {skeleton.name!r} "
                         f"(unknown {unknown}, missing {missing}; valid: {list(skeleton.keypoints)})")
    values = [sigmas[n] for n in skeleton.keypoints]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise SigmaError(f"{where}: every sigma must be a number, got {values}")
    checked = _checked(where, np.asarray(values, dtype=np.float64), skeleton.num_keypoints)
    return dataclasses.replace(skeleton, sigmas=tuple(float(v) for v in checked))


def is_uniform_default(sigmas: np.ndarray) -> bool:
    """The sigmas a skeleton gets when nothing better is known (uniform 0.1)."""
    return bool(np.allclose(np.asarray(sigmas, dtype=np.float64), UNIFORM_SIGMA))


def _sigmas_from_json(spec: str, path: Path, skeleton: Skeleton) -> np.ndarray:
    k = skeleton.num_keypoints
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SigmaError(f"sigma spec {spec!r}: cannot read JSON: {exc}") from None
    if isinstance(data, list):
        if len(data) != k:
            raise SigmaError(
                f"sigma spec {spec!r}: list of {len(data)} values for skeleton "
                f"{skeleton.name!r} (expected {k}, got {len(data)})"
            )
        values = data
    elif isinstance(data, dict):
        unknown = sorted(set(data) - set(skeleton.keypoints))
        missing = [n for n in skeleton.keypoints if n not in data]
        if unknown or missing:
            raise SigmaError(
                f"sigma spec {spec!r}: keypoint names do not match skeleton {skeleton.name!r} "
                f"(expected {k} names; unknown {unknown}, missing {missing}; "
                f"valid: {list(skeleton.keypoints)})"
            )
        values = [data[n] for n in skeleton.keypoints]
    else:
        raise SigmaError(
            f"sigma spec {spec!r}: JSON must be a list of {k} numbers or an object "
            f"{{keypoint_name: number}}, got {type(data).__name__}"
        )
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise SigmaError(f"sigma spec {spec!r}: every sigma must be a number, got {values}")
    return np.asarray(values, dtype=np.float64)


def _checked(spec: str, sigmas: np.ndarray, k: int) -> np.ndarray:
    if sigmas.shape != (k,):
        raise SigmaError(f"sigma spec {spec!r}: expected {k} values, got {sigmas.shape[0]}")
    bad = [i for i, v in enumerate(sigmas) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise SigmaError(
            f"sigma spec {spec!r}: sigmas must be finite and > 0 (expected {k} positive values, "
            f"got {[float(sigmas[i]) for i in bad]} at indices {bad})"
        )
    return sigmas


def sigma_digest(sigmas: np.ndarray) -> str:
    """12 hex chars identifying a sigma vector; rounding to 6 decimals hides float noise."""
    text = ",".join(f"{float(v):.6f}" for v in np.asarray(sigmas, dtype=np.float64).ravel())
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------ name matching


def _fold(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n.strip().casefold() for n in names)


# fmt: off
_TOKEN_ALIASES = {
    "l": "left", "r": "right", "f": "front", "fore": "front", "b": "back", "hind": "back",
    "rear": "back", "of": "",
}
# fmt: on
_SIDE = ("left", "right")
_LIMB = ("front", "back")


def canonical_name(name: str) -> str:
    """A separator/case/abbreviation-free key: ``L_F_Paw``, ``left_front_paw``,
    ``front-left paw`` all give ``leftfrontpaw``; ``Root of tail`` gives ``roottail``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.strip())
    tokens = [t for t in re.split(r"[\s_\-./]+", spaced.casefold()) if t]
    tokens = [t for t in (_TOKEN_ALIASES.get(t, t) for t in tokens) if t]
    # Side first, then limb, then the rest, so word order does not matter.
    side = [t for t in tokens if t in _SIDE]
    limb = [t for t in tokens if t in _LIMB]
    rest = [t for t in tokens if t not in _SIDE and t not in _LIMB]
    return "".join(side + limb + rest)


def keypoint_mapping(src: Skeleton, dst: Skeleton) -> list[tuple[int, int]]:
    """Shared keypoints as ``(src_idx, dst_idx)``, sorted by ``src_idx``.

    Equal keypoint lists map by identity; Animal-Pose <-> AP-10K (either way) uses the
    15-point anatomical table; anything else matches names exactly, ignoring case.
    """
    if _fold(src.keypoints) == _fold(dst.keypoints):
        return [(i, i) for i in range(src.num_keypoints)]
    ap, ak = _fold(ANIMALPOSE.keypoints), _fold(AP10K.keypoints)
    if _fold(src.keypoints) == ap and _fold(dst.keypoints) == ak:
        return sorted(ANIMALPOSE_AP10K_SHARED)
    if _fold(src.keypoints) == ak and _fold(dst.keypoints) == ap:
        return sorted((b, a) for a, b in ANIMALPOSE_AP10K_SHARED)
    dst_index = {n: j for j, n in enumerate(_fold(dst.keypoints))}
    return [(i, dst_index[n]) for i, n in enumerate(_fold(src.keypoints)) if n in dst_index]


# Mirror rules for inferring flip pairs from names; each maps a name to a candidate mirror.
# Horse-10 uses the equestrian "near" (left) / "off" (right) sides.
# fmt: off
_SWAP = {
    "l": "r", "r": "l", "L": "R", "R": "L", "left": "right", "right": "left",
    "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT",
    "near": "off", "off": "near", "Near": "Off", "Off": "Near",
}
# fmt: on
_MIRROR_PATTERNS = (
    # whole separator-delimited token: L_Eye, eye_left, left ear, L_F_Paw
    re.compile(r"(?:(?<=^)|(?<=[_\-\s.]))(l|r|L|R|left|right|Left|Right|LEFT|RIGHT)(?=[_\-\s.]|$)"),
    # camelCase or glued words: LeftEye, eyeLeft, leftear, Nearknee, Offhindhock
    re.compile(r"(left|right|Left|Right|LEFT|RIGHT|^near|^off|^Near|^Off)"),
    # single capital letter at a word boundary: eyeL, forelegR1, LEye
    re.compile(r"(?:(?<=[a-z0-9])|(?<=^))(L|R)(?=[A-Z0-9_]|$)"),
)


def infer_flip_pairs(names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Left/right pairs found by swapping a side marker in the name and looking the result up."""
    index = {n: i for i, n in enumerate(names)}
    partner: dict[int, int] = {}
    for i, name in enumerate(names):
        if i in partner:
            continue
        for pattern in _MIRROR_PATTERNS:
            match = next(
                (
                    j
                    for m in pattern.finditer(name)
                    if (j := index.get(name[: m.start()] + _SWAP[m.group(1)] + name[m.end() :]))
                    is not None
                    and j != i
                    and j not in partner
                ),
                None,
            )
            if match is not None:
                partner[i], partner[match] = match, i
                break
    return tuple(sorted((i, j) for i, j in partner.items() if i < j))


def skeleton_from_coco_category(category: dict[str, Any], file: str = "<memory>") -> Skeleton:
    """Build a skeleton from a COCO keypoint category.

    Returns ANIMALPOSE or AP10K when the names match theirs (after :func:`canonical_name`, so
    AP-10K's ``left_front_paw`` JSON names match MMPose's ``L_F_Paw``). Otherwise: links from
    the 1-based ``skeleton`` field, flip pairs inferred from left/right naming, no upper/lower
    split (half-body augmentation then has nothing to pick), and uniform sigmas 0.1 because
    nothing better is known; pass a sigma spec to override.
    """
    from pose_core.records import DataError

    label = f"category id {category.get('id', '?')}"
    raw = category.get("keypoints")
    if not isinstance(raw, list | tuple) or not raw or not all(isinstance(n, str) for n in raw):
        raise DataError(file, label, "keypoints", f"got {raw!r}", "a non-empty list of names")
    names = tuple(n.strip() for n in raw)
    if len(set(names)) != len(names):
        raise DataError(file, label, "keypoints", "duplicate keypoint names", "unique names")
    canon = tuple(canonical_name(n) for n in names)
    for known in (ANIMALPOSE, AP10K):
        if canon == tuple(canonical_name(n) for n in known.keypoints):
            return known
    links = []
    for link in category.get("skeleton") or []:
        if (
            not isinstance(link, list | tuple)
            or len(link) != 2
            or not all(isinstance(v, int) and 1 <= v <= len(names) for v in link)
        ):
            raise DataError(
                file, label, "skeleton", f"bad link {link!r}", f"1-based pairs in 1..{len(names)}"
            )
        links.append((link[0] - 1, link[1] - 1))
    return Skeleton(
        name=str(category.get("name") or "custom"),
        keypoints=names,
        flip_pairs=infer_flip_pairs(names),
        links=tuple(links),
        upper_body=(),
        lower_body=(),
        sigmas=(UNIFORM_SIGMA,) * len(names),
    )
