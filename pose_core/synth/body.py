"""The articulated lynx of the synthetic generator: shape, pose and the posed body.

Body frame: x forward, y up, z towards the animal's RIGHT (right-handed, ``forward x up =
right``); one unit is the withers-to-tail-base length (about 0.75 m on a real lynx). The body
is tapered capsules, spheres and flat polygons (ears) grouped into parts (torso, neck, head,
ears, tail, four legs). :mod:`pose_core.synth.camera` turns it by a yaw (heading) and an
elevation and projects it with a weak perspective; :mod:`pose_core.synth.paint` paints the
parts back to front.

Keypoints follow Animal-Pose as annotators use it (see the real annotations): F_Elbow is the
true elbow at the bottom of the chest, F_Knee the carpus, B_Elbow the stifle (true knee),
B_Knee the hock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

PoseKind = Literal["walk", "sit"]
PART_IDS: dict[str, int] = {
    "torso": 1, "neck": 2, "head": 3, "ear_L": 4, "ear_R": 5, "tail": 6,
    "leg_LF": 7, "leg_RF": 8, "leg_LB": 9, "leg_RB": 10,
}  # fmt: skip
OCCLUDER_ID = 255
_LEG_JOINTS = ("Elbow", "Knee", "Paw")
# Keypoint -> parts whose paint may lie on it while it is still visible.
OWNERS: dict[str, tuple[str, ...]] = {
    "L_Eye": ("head",), "R_Eye": ("head",), "Nose": ("head",),
    "L_EarBase": ("head", "ear_L"), "R_EarBase": ("head", "ear_R"),
    "Throat": ("head", "neck"), "TailBase": ("torso", "tail"), "Withers": ("torso", "neck"),
    **{f"{s}_{e}_{j}": (f"leg_{s}{e}",) for s in "LR" for e in "FB" for j in _LEG_JOINTS},
}  # fmt: skip
_SIDES = (("L", -1.0), ("R", 1.0))


@dataclass(frozen=True)
class Shape:
    """Body proportions (body units) and coat colour (BGR) of one animal."""

    chest_r: float
    belly_r: float
    hip_r: float
    half_width: float
    front: tuple[float, float, float]  # humerus, forearm, metacarpus
    hind: tuple[float, float, float]  # femur, tibia, metatarsus
    leg_r: float
    paw_r: float
    neck_len: float
    neck_r: float
    head_r: float
    tail_len: float
    coat: tuple[float, float, float]
    spot_r: float
    spot_density: float


@dataclass(frozen=True)
class Pose:
    kind: PoseKind
    phase: float  # gait cycle position in [0, 1)
    yaw: float  # heading in radians: 0 faces image right, pi/2 walks away from the camera
    elevation: float  # camera above the animal, radians
    distance: float  # camera distance in body units (perspective strength)
    head_yaw: float
    head_pitch: float
    neck_angle: float
    tail_angle: float
    jitter: tuple[float, ...]  # 12 small joint-angle offsets, degrees


def sample_shape(rng: np.random.Generator) -> Shape:
    u = rng.uniform
    legs = u(0.9, 1.1)
    palette = np.array([[78.0, 128.0, 172.0], [118.0, 132.0, 148.0], [58.0, 104.0, 162.0]])
    coat = rng.dirichlet([3.0, 1.2, 1.0]) @ palette * u(0.8, 1.15)  # tawny, grey, reddish
    return Shape(
        chest_r=0.19 * u(0.9, 1.12), belly_r=0.16 * u(0.85, 1.12), hip_r=0.17 * u(0.9, 1.1),
        half_width=0.085 * u(0.9, 1.1),
        front=(0.22 * legs, 0.30 * legs * u(0.95, 1.05), 0.12 * legs),
        hind=(0.30 * legs, 0.33 * legs * u(0.95, 1.05), 0.21 * legs),
        leg_r=0.062 * u(0.9, 1.15), paw_r=0.05 * u(0.9, 1.15),
        neck_len=0.26 * u(0.9, 1.1), neck_r=0.105 * u(0.9, 1.1), head_r=0.13 * u(0.92, 1.1),
        tail_len=0.22 * u(0.8, 1.2), coat=(float(coat[0]), float(coat[1]), float(coat[2])),
        spot_r=0.021 * u(0.75, 1.3), spot_density=u(0.55, 1.0),
    )  # fmt: skip


def sample_pose(rng: np.random.Generator, sit_fraction: float = 0.35) -> Pose:
    u = rng.uniform
    kind: PoseKind = "sit" if u() < sit_fraction else "walk"
    if u() < 0.7:  # mostly near-profile views, as camera traps by a trail see animals
        yaw = math.pi * int(rng.integers(2)) + math.radians(rng.normal(0.0, 28.0))
    else:
        yaw = u(0.0, 2 * math.pi)
    sit = kind == "sit"
    return Pose(
        kind=kind, phase=u(), yaw=yaw % (2 * math.pi), elevation=math.radians(u(0.0, 25.0)),
        distance=u(3.5, 8.0),
        head_yaw=math.radians(float(np.clip(rng.normal(0.0, 18.0), -40.0, 40.0))),
        head_pitch=math.radians(u(-20.0, 10.0) if sit else u(-30.0, 5.0)),
        neck_angle=math.radians(u(45.0, 75.0) if sit else u(5.0, 40.0)),
        tail_angle=math.radians(u(55.0, 85.0) if sit else u(15.0, 55.0)),
        jitter=tuple(float(x) for x in rng.normal(0.0, 4.0, size=12)),
    )  # fmt: skip


@dataclass(frozen=True)
class Frame:
    """An origin and three axes; ``at(a, b, c)`` is ``origin + a x + b y + c z``."""

    origin: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    def at(self, a: float, b: float, c: float = 0.0) -> np.ndarray:
        return np.asarray(self.origin + a * self.x + b * self.y + c * self.z)

    def direction(self, a: float, b: float, c: float = 0.0) -> np.ndarray:
        v = a * self.x + b * self.y + c * self.z
        return np.asarray(v / np.linalg.norm(v))


@dataclass(frozen=True)
class Prim:
    """1 point: sphere; 2 points: tapered capsule; 3+: flat polygon. Body coordinates."""

    points: tuple[np.ndarray, ...]
    radii: tuple[float, ...]
    material: str
    bias: float = 0.0  # nudges the back-to-front order of prims inside one part


@dataclass(frozen=True)
class Part:
    name: str
    prims: tuple[Prim, ...]
    anchor: np.ndarray  # where the part meets the body: its closeness orders the parts
    bias: float = 0.0
    order_prims: bool = False


@dataclass(frozen=True)
class Body:
    points: dict[str, np.ndarray]  # keypoint name -> (3,)
    normals: dict[str, tuple[np.ndarray, float]]  # surface normal, min cosine to the camera
    parts: tuple[Part, ...]
    center: np.ndarray


def _chain(start: np.ndarray, lengths: tuple[float, ...], angles: list[float]) -> list[np.ndarray]:
    """Joint positions of a leg; angle 0 points straight down, positive swings forward."""
    points = [start]
    for length, angle in zip(lengths, angles, strict=True):
        t = math.radians(angle)
        points.append(points[-1] + length * np.array([math.sin(t), -math.cos(t), 0.0]))
    return points


def _height(lengths: tuple[float, ...], angles: list[float]) -> float:
    return sum(n * math.cos(math.radians(a)) for n, a in zip(lengths, angles, strict=True))


def _walk_angles(phase: float, front: bool, j: tuple[float, ...]) -> list[float]:
    """Segment angles (degrees) of a walking leg at its own gait phase."""
    psi = 2 * math.pi * phase
    s, lift = math.sin(psi), max(0.0, math.cos(psi)) ** 1.5  # lift > 0 while swinging forward
    if front:  # the carpus folds back as the paw lifts
        return [-28 + 14 * s + j[0], 4 + 22 * s + 25 * lift + j[1], 14 + 22 * s - 85 * lift + j[2]]
    return [
        32 + 16 * s + 18 * lift + j[0],
        -38 + 14 * s - 30 * lift + j[1],
        6 + 20 * s - 40 * lift + j[2],
    ]


def _leg_angles(shape: Shape, pose: Pose) -> tuple[dict[str, list[float]], float, float]:
    """Per-leg segment angles, torso pitch and hip-joint height."""
    j = pose.jitter
    if pose.kind == "walk":
        offsets = {"LB": 0.0, "LF": 0.25, "RB": 0.5, "RF": 0.75}  # lateral-sequence walk
        angles = {
            leg: _walk_angles(pose.phase + off, leg[1] == "F", j[3 * i : 3 * i + 3])
            for i, (leg, off) in enumerate(offsets.items())
        }
        front = max(_height(shape.front, angles[k]) for k in ("LF", "RF")) + shape.paw_r
        hind = max(_height(shape.hind, angles[k]) for k in ("LB", "RB")) + shape.paw_r
        return angles, math.atan2(front - hind, 0.78), hind  # stance legs reach the ground
    # sitting: rump on the ground, front legs straight, hind legs folded flat under the body
    hip_y = shape.hip_r * 0.95
    angles = {
        leg: [-8 + j[i] * 0.5, 2 + j[i + 2] * 0.5, 8 + j[i + 4]]
        for i, leg in enumerate(("LF", "RF"))
    }
    front = max(_height(shape.front, angles[k]) for k in ("LF", "RF")) + shape.paw_r
    femur = 72.0 + j[6]
    stifle_y = hip_y - shape.hind[0] * math.cos(math.radians(femur))
    tibia = -math.degrees(
        math.acos(float(np.clip((stifle_y - shape.paw_r) / shape.hind[1], -0.5, 0.6)))
    )
    for i, leg in enumerate(("LB", "RB")):
        angles[leg] = [femur + j[7 + i], tibia, 86.0 + j[9 + i]]
    pitch = math.asin(float(np.clip((front - hip_y + 0.02) / 0.78, 0.3, 0.95)))
    return angles, pitch, hip_y


def build_body(shape: Shape, pose: Pose) -> Body:
    """Pose the animal in body coordinates with its paws (or rump) on the ground y=0."""
    angles, pitch, hip_y = _leg_angles(shape, pose)
    c, s = math.cos(pitch), math.sin(pitch)
    torso = Frame(
        np.array([0.0, hip_y, 0.0]),
        np.array([c, s, 0.0]),
        np.array([-s, c, 0.0]),
        np.array([0.0, 0.0, 1.0]),
    )
    points = {"Withers": torso.at(0.84, 0.13), "TailBase": torso.at(-0.13, 0.10)}
    parts = [*_legs(shape, angles, torso, points), _torso(shape, torso)]
    head = _head_frame(shape, pose, torso)
    parts += _head(shape, head, torso, points)
    parts.append(_tail(shape, pose, points))
    normals = {
        "Nose": (head.x, -0.3),
        "Throat": (head.direction(0.4, -1.0), -0.4),
        "TailBase": (torso.direction(-0.8, 0.6), -0.25),
        **{f"{side}_Eye": (head.direction(0.6, 0.15, 0.78 * sign), 0.1) for side, sign in _SIDES},
        **{
            f"{side}_EarBase": (head.direction(0.0, 0.7, 0.7 * sign), -0.1) for side, sign in _SIDES
        },
    }
    paws = [points[f"{s}_{e}_Paw"][1] - shape.paw_r for s in "LR" for e in "FB"]
    rump = torso.at(-0.06, 0.02)[1] - shape.hip_r if pose.kind == "sit" else math.inf
    drop = np.array([0.0, min(*paws, rump), 0.0])
    parts = [
        replace(
            p,
            anchor=p.anchor - drop,
            prims=tuple(replace(q, points=tuple(v - drop for v in q.points)) for q in p.prims),
        )
        for p in parts
    ]
    points = {name: p - drop for name, p in points.items()}
    return Body(points, normals, tuple(parts), torso.at(0.4, 0.0) - drop)


def _legs(
    shape: Shape, angles: dict[str, list[float]], torso: Frame, points: dict[str, np.ndarray]
) -> list[Part]:
    parts, r, paw = [], shape.leg_r, shape.paw_r
    for leg, theta in angles.items():
        side, end = leg[0], leg[1]
        z = shape.half_width * (1.0 if side == "R" else -1.0)
        attach = torso.at(0.78, -0.02, z) if end == "F" else torso.at(0.0, 0.0, z)
        chain = _chain(attach, shape.front if end == "F" else shape.hind, theta)
        for name, p in zip(_LEG_JOINTS, chain[1:], strict=True):
            points[f"{side}_{end}_{name}"] = p
        prims = (
            Prim((chain[0], chain[1]), ((1.25 if end == "F" else 1.5) * r, 0.85 * r), "coat"),
            Prim((chain[1], chain[2]), (0.8 * r, 0.6 * r), "coat"),
            Prim((chain[2], chain[3]), (0.6 * r, 0.55 * r), "coat"),
            Prim(
                (chain[3] - [0.3 * paw, 0, 0], chain[3] + [0.6 * paw, -0.2 * paw, 0]),
                (0.85 * paw, paw),
                "coat",
            ),
        )
        # anchored on the flank surface: the near-side legs paint over the torso
        anchor = attach + np.sign(z) * (shape.chest_r + shape.half_width) * torso.z
        parts.append(Part(f"leg_{leg}", prims, anchor, bias=0.15 if end == "F" else -0.15))
    return parts


def _torso(shape: Shape, torso: Frame) -> Part:
    spine = [(-0.06, 0.02, shape.hip_r), (0.14, 0.0, 0.94 * shape.hip_r),
             (0.34, -0.01, shape.belly_r), (0.54, -0.02, 0.95 * shape.chest_r),
             (0.74, -0.03, shape.chest_r), (0.88, 0.0, 0.9 * shape.chest_r)]  # fmt: skip
    prims = tuple(
        Prim((torso.at(a0, b0), torso.at(a1, b1)), (r0, r1), "coat")
        for (a0, b0, r0), (a1, b1, r1) in zip(spine, spine[1:], strict=False)
    )
    return Part("torso", prims, torso.at(0.4, 0.0))


def _head_frame(shape: Shape, pose: Pose, torso: Frame) -> Frame:
    a, b, g = pose.neck_angle, pose.head_yaw, pose.head_pitch
    neck = np.array([math.cos(a) * math.cos(b), math.sin(a), math.cos(a) * math.sin(b)])
    f = np.array([math.cos(g) * math.cos(b), math.sin(g), math.cos(g) * math.sin(b)])
    up = np.array([0.0, 1.0, 0.0]) - f[1] * f
    up /= np.linalg.norm(up)
    centre = torso.at(0.88, 0.06) + shape.neck_len * neck + 0.02 * f
    return Frame(centre, f, up, np.cross(f, up))  # z = the head's right


def _head(shape: Shape, head: Frame, torso: Frame, points: dict[str, np.ndarray]) -> list[Part]:
    """Neck, skull with cheek ruff and muzzle, and two tufted ears; sets the head keypoints."""
    h = shape.head_r

    def at(a: float, b: float, c: float = 0.0) -> np.ndarray:
        return head.at(a * h, b * h, c * h)

    points["Nose"] = at(1.27, -0.23)
    points["Throat"] = at(-0.45, -0.85)
    for side, sign in _SIDES:
        points[f"{side}_Eye"] = at(0.68, 0.3, 0.42 * sign)
        points[f"{side}_EarBase"] = at(-0.08, 0.72, 0.48 * sign)
    base = torso.at(0.88, 0.06)
    neck = (Prim((base, head.origin - 0.02 * head.x), (shape.neck_r * 1.2, shape.neck_r), "coat"),)
    skull = (
        Prim((head.origin,), (h,), "light"),
        Prim((at(-0.1, -0.35, 0.45),), (0.72 * h,), "light", bias=0.02),
        Prim((at(-0.1, -0.35, -0.45),), (0.72 * h,), "light", bias=0.02),
        Prim((at(0.85, -0.25),), (0.5 * h,), "cream", bias=0.05),
        Prim((at(0.55, -0.6),), (0.38 * h,), "cream", bias=0.03),
    )
    parts = [
        Part("neck", neck, (base + head.origin) / 2, bias=0.04),
        Part("head", skull, head.origin, bias=0.06, order_prims=True),
    ]
    for side, sign in _SIDES:
        e = points[f"{side}_EarBase"]
        tip = e + h * (-0.15 * head.x + 1.1 * head.y + 0.25 * sign * head.z)
        ear = (
            Prim(
                (
                    e + h * (0.38 * head.x - 0.1 * head.y),
                    tip,
                    e - h * (0.38 * head.x + 0.1 * head.y),
                ),
                (0.0, 0.0, 0.0),
                "dark",
            ),
            Prim(
                (tip, tip + h * (0.5 * head.y + 0.05 * sign * head.z)),
                (0.06 * h, 0.03 * h),
                "black",
            ),
        )
        parts.append(
            Part(f"ear_{side}", ear, e + h * (0.5 * head.y + 0.3 * sign * head.z), bias=0.06)
        )
    return parts


def _tail(shape: Shape, pose: Pose, points: dict[str, np.ndarray]) -> Part:
    """A short lynx tail with a black tip, hanging back and down from the tail base."""
    root = points["TailBase"] + np.array([-0.02, -0.02, 0.0])
    t = pose.tail_angle
    direction = np.array([-math.cos(t), -math.sin(t), 0.0])
    mid, tip = root + 0.7 * shape.tail_len * direction, root + shape.tail_len * direction
    prims = (Prim((root, mid), (0.055, 0.05), "coat"), Prim((mid, tip), (0.05, 0.042), "black"))
    return Part("tail", prims, mid, bias=0.02)
