"""Video files for ``posetune predict --video``: the frames to predict, a frame again by its
number, and the overlay video.

OpenCV (FFmpeg) reads mp4, avi and what else its FFmpeg build decodes. The frames chosen are
those with a time ``start <= n / fps < end`` (seconds; default the whole video), every
``stride``-th from the first of them; a frame is :class:`~orchestrator.infer.frames.Frame`
``index=n``, ``name="<video file name>#n"``, ``time_s=n / fps``. A file OpenCV cannot open, with
no frame, or that stops decoding before a chosen frame the container announces (truncated or
damaged) is refused (``DataError``: exit 2) before anything is written.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from orchestrator.infer.frames import Frame, Predictions
from orchestrator.infer.outputs import draw_frame
from pose_core.records import DataError

# FFmpeg's own log lines ("moov atom not found", "overread 8") would follow our one-line
# error on stderr; OpenCV reads this when it opens a file. A user's own setting stands.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass(frozen=True)
class Video:
    """A video file that opens and decodes its first frame."""

    path: str
    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps

    def frame(self, number: int) -> Frame:
        return Frame(index=number, name=f"{self.name}#{number}", width=self.width,
                     height=self.height, path=None, time_s=number / self.fps)


def open_video(path: str) -> Video:
    """The video at ``path``, refused when missing, unreadable or without a frame."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--video {path} not found")
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise DataError(path, "file", "video", "OpenCV cannot open it (not a video, or a "
                            "truncated or damaged file)", "an mp4 or avi file")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        ok, image = capture.read()
        if not ok or image is None or count <= 0 or not fps > 0:
            raise DataError(path, "file", "video", f"no decodable frame ({count} frame(s) "
                            f"at {fps:g} fps announced)", "a video with frames")
        height, width = image.shape[:2]
    finally:
        capture.release()
    return Video(path, fps, count, width, height)


def frame_numbers(video: Video, stride: int = 1, start: float | None = None,
                  end: float | None = None) -> range:
    """The frame numbers ``--stride``, ``--start`` and ``--end`` choose."""
    if stride < 1:
        raise ValueError(f"--stride {stride}: expected 1 or more (every n-th frame)")
    if (start is not None and start < 0) or (end is not None and end <= (start or 0.0)):
        raise ValueError(f"--start {start} / --end {end}: expected 0 <= start < end (seconds)")
    # Frame n shows time n / fps; the first at or after ``start``, the last before ``end``.
    first = math.ceil(start * video.fps - 1e-6) if start else 0
    stop = video.frame_count if end is None else min(video.frame_count,
                                                     math.ceil(end * video.fps - 1e-6))
    if first >= video.frame_count:
        raise ValueError(f"--start {start} s is past the end of {video.path} "
                         f"({video.duration_s:.2f} s, {video.frame_count} frames)")
    if first >= stop:
        raise ValueError(f"--start {start} s to --end {end} s holds no frame of {video.path} "
                         f"({video.fps:g} fps)")
    return range(first, stop, stride)


def truncated(video: Video, number: int) -> DataError:
    return DataError(video.path, f"frame {number}", "video", f"does not decode: the file "
                     f"is truncated or damaged (it announces {video.frame_count} frames)",
                     "an intact video")


def read_frames(video: Video, numbers: range) -> Iterator[tuple[Frame, np.ndarray]]:
    """Each chosen frame and its pixels (BGR), decoding straight through from the first."""
    capture = cv2.VideoCapture(video.path)
    try:
        position = seek(capture, video, numbers.start) if numbers.start else 0
        for number in numbers:
            while position < number:  # grab: decode without converting the skipped frames
                if not capture.grab():
                    raise truncated(video, position)
                position += 1
            ok, image = capture.read()
            if not ok or image is None:
                raise truncated(video, number)
            position += 1
            yield video.frame(number), image
    finally:
        capture.release()


def seek(capture: Any, video: Video, number: int) -> int:
    """Place ``capture`` before frame ``number`` (OpenCV's FFmpeg seek decodes forward from
    the keyframe before it, so the frame is exact); returns the position reached."""
    if not capture.set(cv2.CAP_PROP_POS_FRAMES, number):
        raise truncated(video, number)
    return int(capture.get(cv2.CAP_PROP_POS_FRAMES))


class VideoFrameReader:
    """A frame of ``video`` again by its number (a :data:`~orchestrator.infer.frames.FrameReader`):
    the next frame is read straight on, any other after a seek."""

    def __init__(self, video: Video) -> None:
        self.video = video
        self.capture: Any = None
        self.position = -1

    def __call__(self, frame: Frame) -> np.ndarray:
        if self.capture is None:
            self.capture = cv2.VideoCapture(self.video.path)
            self.position = 0
        if frame.index != self.position:
            self.position = seek(self.capture, self.video, frame.index)
            if self.position != frame.index:
                raise truncated(self.video, frame.index)
        ok, image = self.capture.read()
        if not ok or image is None:
            raise truncated(self.video, frame.index)
        self.position += 1
        return np.asarray(image)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


def write_overlay_video(preds: Predictions, video: Video, numbers: range, out: str) -> None:
    """``out`` (.mp4): every predicted frame with its boxes and poses drawn, at the video's
    frame rate divided by the stride (real time); written beside ``out`` and renamed."""
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.stem}.tmp-", suffix=".mp4",
                                         dir=target.parent)
    os.close(handle)
    fps = video.fps / max(numbers.step, 1)
    writer = cv2.VideoWriter(temporary, cv2.VideoWriter.fourcc(*"mp4v"), fps,
                             (video.width, video.height))
    try:
        if not writer.isOpened():
            raise OSError(f"--overlay {out}: OpenCV cannot write an mp4 video here")
        for position, (frame, image) in enumerate(read_frames(video, numbers)):
            assert preds.frames[position].index == frame.index, "frames in reading order"
            writer.write(draw_frame(image, preds, position))
        writer.release()
        os.replace(temporary, target)
    except BaseException:
        writer.release()
        Path(temporary).unlink(missing_ok=True)
        raise


class VideoFrames:
    """The chosen frames of a video as a frame source (what ``posetune predict`` reads)."""

    def __init__(self, path: str, stride: int = 1, start: float | None = None,
                 end: float | None = None) -> None:
        self.video = open_video(path)
        self.numbers = frame_numbers(self.video, stride, start, end)
        self.read_frame = VideoFrameReader(self.video)
        self.skipped: list[Any] = []  # a video frame that does not decode stops the run

    @property
    def count(self) -> int:
        return len(self.numbers)

    def frames(self) -> Iterator[tuple[Frame, np.ndarray]]:
        return read_frames(self.video, self.numbers)
