"""Painting the posed animal: a spotted coat texture, parts back to front with rounded
shading, the face, and a soft contact shadow. Far-side parts are shaded darker."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pose_core.synth.body import PART_IDS, Body, Prim, Shape
from pose_core.synth.camera import Camera, bounds, order_parts

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel drawing keeps thin legs on their keypoints
_ONE = 1 << _SHIFT


MATERIALS = ("coat", "light", "cream", "dark", "black", "inner")
_CONSTANT = {"cream": (188.0, 208.0, 222.0), "dark": (38.0, 42.0, 50.0),
             "black": (22.0, 22.0, 25.0), "inner": (170.0, 180.0, 195.0)}  # fmt: skip


@dataclass(frozen=True)
class Coat:
    """Fur over the animal's box only (cheap): ``(h, w, 3)`` float32 images at ``origin``."""

    origin: tuple[int, int]
    coat: np.ndarray  # tawny base, dark spots, fur grain
    light: np.ndarray  # the paler face tone with fainter spots


def coat_textures(
    shape: Shape, rng: np.random.Generator, box: tuple[int, int, int, int], px_per_unit: float
) -> Coat:
    """The coat over ``box`` ``(x0, y0, x1, y1)`` in frame pixels; spots scale with the animal."""
    x0, y0, x1, y1 = box
    width, height = max(x1 - x0, 1), max(y1 - y0, 1)
    base = np.array(shape.coat, np.float32)
    low = cv2.resize(
        rng.standard_normal((4, 5)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    grain = rng.standard_normal((height, width)).astype(np.float32)
    coat = base * (1.0 + 0.1 * low[..., None]) + 7.0 * grain[..., None]
    spots = np.zeros((height, width), np.float32)
    r = max(0.8, shape.spot_r * px_per_unit)
    n = int(shape.spot_density * width * height / (3.2 * r) ** 2)
    xs, ys = rng.uniform(0, width, n), rng.uniform(0, height, n)
    sizes, turns = rng.uniform(0.6, 1.3, n) * r, rng.uniform(0, 180, n)
    for x, y, size, turn in zip(xs, ys, sizes, turns, strict=True):
        axes = (int(size * _ONE), int(size * 0.7 * _ONE))
        centre = (int(x * _ONE), int(y * _ONE))
        cv2.ellipse(spots, centre, axes, float(turn), 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)
    spots = 0.8 * spots[..., None]
    coat = coat * (1 - spots) + np.array((30.0, 38.0, 52.0), np.float32) * spots
    light = 0.65 * coat + 0.35 * np.array(_CONSTANT["cream"], np.float32) + 0.2 * (base - coat)
    return Coat((x0, y0), coat, light)


def _fixed(xy: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(xy) * _ONE).astype(np.int32)


def _draw_prim(img: np.ndarray, xy: np.ndarray, radii: np.ndarray, value: int) -> None:
    """Fill one projected primitive; ``xy`` ``(N, 2)`` and ``radii`` ``(N,)`` in pixels."""
    if len(xy) >= 3:
        cv2.fillPoly(img, [_fixed(xy)], value, cv2.LINE_8, _SHIFT)
        return
    for p, r in zip(_fixed(xy), radii, strict=True):
        cv2.circle(
            img,
            (int(p[0]), int(p[1])),
            max(int(r * _ONE), _ONE // 2),
            value,
            -1,
            cv2.LINE_8,
            _SHIFT,
        )
    d = xy[-1] - xy[0]
    norm = float(np.hypot(d[0], d[1]))
    if len(xy) == 2 and norm > 1e-6:
        n = np.array([-d[1], d[0]]) / norm
        quad = np.stack(
            [xy[0] + n * radii[0], xy[1] + n * radii[1], xy[1] - n * radii[1], xy[0] - n * radii[0]]
        )
        cv2.fillConvexPoly(img, _fixed(quad), value, cv2.LINE_8, _SHIFT)


def paint(canvas: np.ndarray, label: np.ndarray, body: Body, camera: Camera, coat: Coat) -> None:
    """Paint the animal back to front: colour into ``canvas`` ``(H, W, 3)`` float32, part ids
    into ``label`` ``(H, W)`` uint8. Far-side parts are shaded darker."""
    t = camera.toward
    ears_front = float((body.points["Nose"] - body.points["L_EarBase"]) @ t) > 0
    for key, part in order_parts(body, camera):
        prims = part.prims
        if part.order_prims:
            prims = tuple(
                sorted(prims, key=lambda p: float(np.mean(p.points, axis=0) @ t) + p.bias)
            )
        if part.name.startswith("ear_") and ears_front:
            tri = prims[0].points
            middle = (tri[0] + tri[1] + tri[2]) / 3
            inner = Prim(tuple(0.6 * p + 0.4 * middle for p in tri), (0.0, 0.0, 0.0), "inner")
            prims = (prims[0], inner, *prims[1:])
        _paint_part(
            canvas, label, PART_IDS[part.name], prims, camera, coat, 0.8 if key < -0.05 else 1.0
        )
        if part.name == "head":
            _paint_face(canvas, body, camera)


def _paint_part(
    canvas: np.ndarray,
    label: np.ndarray,
    part_id: int,
    prims: tuple[Prim, ...],
    camera: Camera,
    coat: Coat,
    light: float,
) -> None:
    """One part: a mask, shading from its distance transform (rounded look), texture, alpha."""
    cx, cy = coat.origin
    lo, hi = bounds(prims, camera)
    x0, y0 = max(int(lo[0]) - 2, cx), max(int(lo[1]) - 2, cy)
    x1, y1 = (
        min(int(hi[0]) + 3, cx + coat.coat.shape[1]),
        min(int(hi[1]) + 3, cy + coat.coat.shape[0]),
    )
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    material = np.zeros_like(mask)
    thick = 1.0
    for prim in prims:
        xy, k = camera.project(np.stack(prim.points))
        radii = np.asarray(prim.radii) * k
        thick = max(thick, float(radii.max()))
        for img, value in ((mask, 255), (material, MATERIALS.index(prim.material))):
            _draw_prim(img, xy - np.array([x0, y0]), radii, value)
    inside = mask > 0
    if not inside.any():
        return
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    shade = light * (0.6 + 0.4 * np.sqrt(np.minimum(dist / (0.75 * thick), 1.0)))
    color = np.empty((*mask.shape, 3), np.float32)
    textures = {"coat": coat.coat, "light": coat.light}
    for index, name in enumerate(MATERIALS):
        where = material == index
        if not where.any():
            continue
        if name in textures:
            color[where] = textures[name][y0 - cy : y1 - cy, x0 - cx : x1 - cx][where]
        else:
            color[where] = _CONSTANT[name]
    alpha = cv2.GaussianBlur(inside.astype(np.float32), (3, 3), 0.6)[..., None]
    roi = canvas[y0:y1, x0:x1]
    roi *= 1.0 - alpha
    roi += alpha * color * shade[..., None]
    label[y0:y1, x0:x1][inside] = part_id


def _paint_face(canvas: np.ndarray, body: Body, camera: Camera) -> None:
    """Amber eyes with dark pupils and the nose, where their surface faces the camera."""
    t = camera.toward
    for name in ("L_Eye", "R_Eye", "Nose"):
        normal, threshold = body.normals[name]
        if float(normal @ t) <= threshold:
            continue
        xy, k = camera.project(body.points[name][None])
        centre = (int(xy[0, 0] * _ONE), int(xy[0, 1] * _ONE))
        r = max(int(0.021 * k[0] * _ONE), _ONE)
        cv2.circle(canvas, centre, r, (25.0, 25.0, 25.0), -1, cv2.LINE_AA, _SHIFT)
        inner = (40.0, 150.0, 190.0) if name != "Nose" else (70.0, 75.0, 115.0)
        cv2.circle(canvas, centre, max(int(r * 0.65), _ONE // 2), inner, -1, cv2.LINE_AA, _SHIFT)
        if name != "Nose":
            cv2.circle(
                canvas,
                centre,
                max(int(r * 0.3), _ONE // 4),
                (15.0, 15.0, 15.0),
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )


def shadow(canvas: np.ndarray, body: Body, camera: Camera, strength: float) -> None:
    """A soft contact shadow: an ellipse on the ground plane under the body."""
    theta = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ground = np.stack([body.center[0] + 0.7 * np.cos(theta), 0 * theta, 0.25 * np.sin(theta)], 1)
    xy, _ = camera.project(ground)
    mask = np.zeros(canvas.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(xy * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    soft = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.04 * camera.scale))
    canvas *= 1.0 - strength * soft[..., None]
