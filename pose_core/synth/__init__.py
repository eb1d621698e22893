"""The embedded default data: procedural lynx-like quadruped images with Animal-Pose keypoints.

The reference study trained on Unity renders of a lynx (4 scenes, walking and sitting) next to
real camera-trap photos. This generator stands in for both with numpy and OpenCV only: an
articulated quadruped (:mod:`pose_core.synth.body`) walking or sitting at any heading, with a
spotted tawny coat, ear tufts and a short black-tipped tail, on per-scene backgrounds, under
varied light, behind occluders, sometimes cut by the frame edge. ``style="synthetic"`` is the
clean render; ``style="camera-trap"`` adds what real traps add (night infrared frames with
flash falloff and eyeshine, motion blur, sensor noise, an info strip, heavy JPEG), so the two
styles differ the way real and synthetic data do.

Documented choices:
- One animal per image. ``bbox`` is the tight box of the rendered silhouette clipped to the
  frame; ``area`` is the silhouette's pixel count inside the frame (``area_rule="mask"``),
  amodal: occluders and the info strip do not shrink it, so OKS does not change with grass.
- Keypoints: v=2 visible; v=1 inside the frame but hidden (behind the body, on a surface that
  faces away, under an occluder or the info strip); v=0 outside the frame, stored as (0, 0).
  Pixel centres are integer coordinates (OpenCV's convention).
- Image ``i`` uses ``numpy.random.default_rng(seed + i)`` and scene ``i % scenes``, so the
  output does not depend on ``workers``. Geometry is drawn first and the style's own draws come
  from a child generator: both styles of one seed show the same animals in the same poses.
- A scene's background depends only on its id (and the image size), not on the seed
  (:mod:`pose_core.synth.scene`).

Modules: ``body`` (shape, pose, the posed body), ``camera`` (placement, projection,
visibility), ``paint`` (coat, parts, shadow), ``scene`` (backgrounds, light), ``occluders``,
``camera_trap`` (the trap look) and ``generator`` (:func:`render`, :func:`generate`).
"""

from pose_core.synth.generator import STYLES, Rendered, Style, SynthConfig, generate, render
from pose_core.synth.scene import SCENE_KINDS, scene_canvas

__all__ = [
    "SCENE_KINDS",
    "STYLES",
    "Rendered",
    "Style",
    "SynthConfig",
    "generate",
    "render",
    "scene_canvas",
]
