"""``posetune predict --video`` on a short generated mp4, as a user runs it: the frames that
--stride, --start and --end choose, boxes from the whole frame, a box file and MegaDetector's
frame and video results, the exported ONNX model against the checkpoint it came from, and each
bad input refused in one line, exit 2, with nothing written. A tiny untrained checkpoint
stands in for a trained one (no Ray); its ONNX file is written by export's own functions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from orchestrator.cli import main
from pose_core.config import TrialConfig, with_values
from pose_core.engine import save_checkpoint
from pose_core.models import build_model
from pose_core.synth import SynthConfig, render

FPS, FRAMES, WIDTH, HEIGHT = 8.0, 24, 320, 240
NAMES = ["nose", "left_eye", "right_eye", "tail"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, ...]]]:
    """A 3 s, 8 fps mp4 of generated animals (one per frame) and each frame's animal box."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return path, write_clip(path, FRAMES)


def write_clip(path: Path, frames: int, fps: float = FPS, seed: int = 3
               ) -> list[tuple[float, ...]]:
    """An mp4 (mp4v) of ``frames`` generated animals, one per frame; each frame's box."""
    config = SynthConfig(images=frames, seed=seed, width=WIDTH, height=HEIGHT)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    boxes = []
    for n in range(frames):
        rendered = render(n, config)
        writer.write(rendered.image)
        boxes.append(rendered.bbox)
    writer.release()
    return boxes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    cfg = with_values(TrialConfig(), {
        "model.backbone": "test_resnet", "model.init": "random", "data.input_size": 64,
    })
    model = build_model(cfg.model, len(NAMES), cfg.data.input_size)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, model, None, None, 1, cfg.to_dict(), NAMES)
    return path


@pytest.fixture(scope="module")
def onnx_model(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint as ``posetune export`` writes model.onnx (its metadata included)."""
    from orchestrator.infer.export import Heatmaps, describe, export_onnx
    from orchestrator.infer.runtime import load_trained

    model, cfg, skeleton = load_trained(str(checkpoint))
    info = describe({"trial_id": "t0"}, cfg, skeleton, np.full(len(NAMES), 0.1))
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(Heatmaps(model).eval(), cfg.data.input_size, path, info)
    return path


def predict(*args: str) -> int:
    return main(["predict", *args])


def read(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def test_stride_start_and_end_choose_the_frames(
    clip: tuple[Path, list], checkpoint: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    video, _ = clip
    out, overlay = tmp_path / "poses.json", tmp_path / "drawn.mp4"
    # 0.5 s .. 2.0 s at 8 fps: frames 4..15, every 3rd
    assert predict("--checkpoint", str(checkpoint), "--video", str(video), "--stride", "3",
                   "--start", "0.5", "--end", "2", "--out", str(out), "--overlay",
                   str(overlay)) == 0
    printed = capsys.readouterr()
    assert "4 animal(s) in 4 frame(s) of clip.mp4" in printed.out and "frames/s" in printed.out
    assert printed.err == ""  # no progress bar when stderr is not a terminal
    poses = read(out)
    assert [p["file_name"] for p in poses] == [f"clip.mp4#{n}" for n in (4, 7, 10, 13)]
    assert [p["image_id"] for p in poses] == [5, 8, 11, 14]
    assert all(p["bbox"] == [0, 0, WIDTH, HEIGHT] for p in poses)  # the whole frame
    assert all(len(p["keypoints"]) == 3 * len(NAMES) for p in poses)

    drawn = cv2.VideoCapture(str(overlay))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert drawn.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / 3, rel=0.01)
    assert not list(tmp_path.glob(".drawn.tmp-*"))

    # the whole video by default, and --end past the end stops at the last frame
    assert predict("--checkpoint", str(checkpoint), "--video", str(video), "--start", "2.5",
                   "--end", "100", "--out", str(out)) == 0
    assert [p["file_name"] for p in read(out)] == [f"clip.mp4#{n}" for n in range(20, 24)]


def test_a_frame_read_again_by_number_is_the_frame_read_in_order(
        clip: tuple[Path, list]) -> None:
    from orchestrator.infer.video import VideoFrames

    source = VideoFrames(str(clip[0]), stride=2)
    frames = list(source.frames())
    assert [f.index for f, _ in frames] == list(range(0, FRAMES, 2))
    assert frames[3][0].time_s == pytest.approx(6 / FPS)
    for position in (5, 0, 11, 1, 2):  # seeks back and forth, and reads straight on
        frame, image = frames[position]
        assert np.array_equal(source.read_frame(frame), image)


def test_boxes_from_a_box_file_and_megadetector(
    clip: tuple[Path, list], checkpoint: Path, tmp_path: Path
) -> None:
    video, truth = clip
    out = tmp_path / "poses.json"
    boxes = tmp_path / "clip.boxes.csv"
    x, y, w, h = truth[2]
    boxes.write_text("# video: clip.mp4\nframe,x,y,w,h,score\n"
                     f"2,{x},{y},{w},{h},0.9\n2,0,0,50,40,0.1\n2,10,10,60,50,0.5\n"
                     f"5,{','.join(str(v) for v in truth[5])},0.8\n")
    assert predict("--checkpoint", str(checkpoint), "--video", str(video), "--boxes",
                   str(boxes), "--out", str(out)) == 0
    poses = read(out)
    assert [(p["file_name"], p["bbox"]) for p in poses] == [
        ("clip.mp4#2", [x, y, w, h]), ("clip.mp4#2", [10, 10, 60, 50]),  # 0.1 < --threshold
        ("clip.mp4#5", list(truth[5]))]

    def normalised(box: tuple[float, ...]) -> list[float]:
        return [box[0] / WIDTH, box[1] / HEIGHT, box[2] / WIDTH, box[3] / HEIGHT]

    # MegaDetector's frame results: one entry per frame, named <video>/frame000123.jpg
    frames = tmp_path / "md_frames.json"
    frames.write_text(json.dumps({"images": [
        {"file": "cams/clip.mp4/frame000001.jpg", "detections": [
            {"category": "1", "conf": 0.9, "bbox": normalised(truth[1])},
            {"category": "2", "conf": 0.9, "bbox": [0, 0, 0.5, 0.5]}]},  # a person
        {"file": "cams/clip.mp4/frame000003.jpg", "detections": []},
        {"file": "cams/other.mp4/frame000003.jpg", "detections": [
            {"category": "1", "conf": 0.9, "bbox": [0, 0, 0.5, 0.5]}]},
    ]}))
    assert predict("--checkpoint", str(checkpoint), "--video", str(video), "--detections",
                   str(frames), "--out", str(out)) == 0
    poses = read(out)
    assert [p["file_name"] for p in poses] == ["clip.mp4#1"]
    assert poses[0]["bbox"] == pytest.approx(list(truth[1]), abs=0.01)

    # MegaDetector's video results: the video's entry, a frame_number on each detection
    results = tmp_path / "md_video.json"
    results.write_text(json.dumps({"images": [
        {"file": "cams/clip.mp4", "frame_rate": FPS, "frames_processed": [0, 8, 16],
         "detections": [
             {"category": "1", "conf": 0.7, "bbox": normalised(truth[8]), "frame_number": 8},
             {"category": "1", "conf": 0.6, "bbox": normalised(truth[16]), "frame_number": 16}]},
    ]}))
    assert predict("--checkpoint", str(checkpoint), "--video", str(video), "--stride", "4",
                   "--detections", str(results), "--out", str(out)) == 0
    assert [p["file_name"] for p in read(out)] == ["clip.mp4#8", "clip.mp4#16"]


def test_the_onnx_model_predicts_what_the_checkpoint_predicts(
    clip: tuple[Path, list], checkpoint: Path, onnx_model: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    video = str(clip[0])
    outputs = {}
    for flag, model in (("--checkpoint", checkpoint), ("--model", onnx_model)):
        out = tmp_path / f"{flag[2:]}.json"
        assert predict(flag, str(model), "--video", video, "--stride", "2", "--device", "cpu",
                       "--out", str(out)) == 0
        outputs[flag] = read(out)
    assert "ONNX Runtime (CPUExecutionProvider)" in capsys.readouterr().out
    torch_poses, onnx_poses = outputs["--checkpoint"], outputs["--model"]
    assert [p["file_name"] for p in onnx_poses] == [p["file_name"] for p in torch_poses]
    assert len(onnx_poses) == FRAMES // 2
    for a, b in zip(torch_poses, onnx_poses, strict=True):
        points_a = np.array(a["keypoints"]).reshape(-1, 3)
        points_b = np.array(b["keypoints"]).reshape(-1, 3)
        assert np.abs(points_a[:, :2] - points_b[:, :2]).max() < 0.05  # pixels
        assert np.abs(points_a[:, 2] - points_b[:, 2]).max() < 1e-3


def onnx_with_metadata(source: Path, target: Path, **changes: str | None) -> Path:
    import onnx

    proto = onnx.load(str(source))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in changes]
    del proto.metadata_props[:]
    for key, value in kept + [(k, v) for k, v in changes.items() if v is not None]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(target))
    return target


def test_bad_inputs_are_refused_in_one_line_and_leave_nothing(
    clip: tuple[Path, list], checkpoint: Path, onnx_model: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime

    video = clip[0]
    bad = tmp_path / "bad"
    bad.mkdir()
    whole = video.read_bytes()
    (bad / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # mp4v: the index is at the end
    (bad / "notes.mp4").write_text("not a video")
    avi = bad / "damaged.avi"  # MJPG: the frame count comes first; the frames stop halfway
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    source = cv2.VideoCapture(str(video))
    while (frame := source.read())[0]:
        writer.write(frame[1])
    writer.release()
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])
    (bad / "other.csv").write_text("# video: other.mp4\nframe,x,y,w,h\n0,1,1,20,20\n")
    (bad / "past.csv").write_text("# video: clip.mp4\nframe,x,y,w,h\n3,1,1,20,20\n"
                                  f"{FRAMES},1,1,20,20\n")
    (bad / "unnamed.csv").write_text("frame,x,y,w,h\n0,1,1,20,20\n")
    (bad / "md_other.json").write_text(json.dumps({"images": [
        {"file": "other.mp4/frame000000.jpg", "detections": []}]}))
    (bad / "md_past.json").write_text(json.dumps({"images": [
        {"file": "clip.mp4/frame000099.jpg", "detections": []}]}))
    old = onnx_with_metadata(onnx_model, bad / "old.onnx", posetune_version='"0.0.1"')
    bare = onnx_with_metadata(onnx_model, bad / "bare.onnx", posetune_version=None)
    ck, v = ["--checkpoint", str(checkpoint)], ["--video", str(video)]
    cases: list[tuple[list[str], str]] = [
        ([*ck, "--video", str(bad / "gone.mp4")], "--video " + str(bad / "gone.mp4")),
        ([*ck, "--video", str(bad / "cut.mp4")], "cut.mp4: file: field 'video': OpenCV cannot"),
        ([*ck, "--video", str(bad / "notes.mp4")], "notes.mp4: file: field 'video'"),
        ([*ck, "--video", str(avi)], "damaged.avi: frame "),
        ([*ck, *v, "--boxes", str(bad / "other.csv")], "boxes for other.mp4, not clip.mp4"),
        ([*ck, *v, "--boxes", str(bad / "past.csv")], f"past.csv: frame {FRAMES}"),
        ([*ck, *v, "--boxes", str(bad / "unnamed.csv")], "unnamed.csv: line 1"),
        ([*ck, *v, "--boxes", str(bad / "gone.csv")], "--boxes " + str(bad / "gone.csv")),
        ([*ck, *v, "--detections", str(bad / "md_other.json")], "no frame of clip.mp4"),
        ([*ck, *v, "--detections", str(bad / "md_past.json")], "md_past.json: frame 99"),
        (["--model", str(old), *v], "old.onnx was exported by posetune 0.0.1"),
        (["--model", str(bare), *v], "bare.onnx: no posetune metadata"),
        (["--model", str(bad / "gone.onnx"), *v], "--model " + str(bad / "gone.onnx")),
        (["--model", str(bad / "other.csv"), *v], "other.csv: not an ONNX model"),
        ([*ck, *v, "--start", "9"], "--start 9.0 s is past the end of"),
        ([*ck, *v, "--stride", "0"], "--stride 0"),
        ([*ck, *v, "--overlay", str(tmp_path / "drawn")], "ending in .mp4"),
        ([*ck, "--images", str(bad), "--stride", "2"], "--stride: only with --video"),
    ]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        cases.append((["--model", str(onnx_model), *v, "--device", "cuda"],
                      "no CUDAExecutionProvider"))
    out, overlay = tmp_path / "poses.json", tmp_path / "drawn.mp4"
    for args, message in cases:
        extra = [] if "--overlay" in args else ["--overlay", str(overlay)]
        code = predict(*args, "--out", str(out), *extra)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and message in err, (args, err)
        assert not out.exists() and not overlay.exists(), args
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"], args


def test_the_progress_bar_shows_frames_per_second_on_a_terminal() -> None:
    from orchestrator.infer.predict import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(64, stream)
    progress.advance(32)
    progress.advance(32)
    assert progress.close() > 0
    shown = stream.getvalue()
    assert shown.startswith("\rpredict [") and shown.endswith(" frames/s\n")
    assert "] 64/64 frames, " in shown


def test_the_mirrored_crop_alone_is_the_plain_prediction_of_the_mirrored_image(
        predict_checkpoint: Path) -> None:
    """What --suggest's flip term compares: the network on the mirrored crop, mapped back,
    equals the network (no flip test) on the mirrored image, mirrored back with left/right
    swapped, for a whole-frame box (whose crop is symmetric)."""
    from dataclasses import replace

    from orchestrator.infer.runtime import checkpoint_runner
    from pose_core.records import Instance

    runner = checkpoint_runner(str(predict_checkpoint), "cpu")
    plain = replace(runner, decoding=replace(runner.decoding, flip_test=False))
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    k = runner.skeleton.num_keypoints

    def instance(name: str) -> Instance:
        return Instance(image_path=name, image_id=1, annotation_id=1, width=64, height=64,
                        bbox=(0.0, 0.0, 64.0, 64.0), keypoints=np.zeros((k, 3), np.float32),
                        area=64.0 * 64.0, source="predict")

    class Images:
        def get(self, path: str) -> np.ndarray:
            return image if path == "a" else image[:, ::-1].copy()

        def preload(self, paths: object) -> None:
            pass

    mirrored = runner.predict_mirrored([instance("a")], Images())[0]
    on_flipped, _ = plain.predict([instance("b")], Images())
    back = on_flipped[0][list(runner.skeleton.flip_index)]
    back[:, 0] = 64 - 1 - back[:, 0]
    assert np.abs(mirrored - back).max() < 2.0, (mirrored, back)


def test_a_video_s_predictions_open_in_sleap_and_read_back_as_deeplabcut(
        clip: tuple[Path, list], checkpoint: Path, tmp_path: Path) -> None:
    """--video to --format slp: one labelled frame per predicted video frame (its frame number),
    one predicted instance with scores each, on the video itself; --format dlc: the same
    points read back through posetune's own DeepLabCut reader."""
    import sleap_io

    from orchestrator.data.labels_dlc import _read_table

    video, _ = clip
    coco, slp, dlc = tmp_path / "poses.json", tmp_path / "poses.slp", tmp_path / "poses.csv"
    for fmt, out in (("coco", coco), ("slp", slp), ("dlc", dlc)):
        assert predict("--checkpoint", str(checkpoint), "--video", str(video), "--stride", "2",
                       "--format", fmt, "--out", str(out)) == 0
    expected = {int(p["file_name"].split("#")[1]): np.asarray(p["keypoints"]).reshape(-1, 3)
                for p in read(coco)}
    assert sorted(expected) == list(range(0, FRAMES, 2))

    labels = sleap_io.load_slp(str(slp))
    assert len(labels.videos) == 1 and Path(labels.videos[0].filename).name == "clip.mp4"
    assert sorted(lf.frame_idx for lf in labels) == sorted(expected)
    for lf in labels:
        assert len(lf.predicted_instances) == 1 and not lf.user_instances
        points = lf.predicted_instances[0].numpy(scores=True)
        np.testing.assert_allclose(points[:, :2], expected[lf.frame_idx][:, :2], atol=2e-3)
        np.testing.assert_allclose(points[:, 2], expected[lf.frame_idx][:, 2], atol=2e-3)

    # DeepLabCut's video layout: rows by frame number, (body part, x|y|likelihood) columns,
    # read by posetune's own DeepLabCut table reader (a video's rows name no image, so they
    # are not training labels until extracted as frames, which --suggest packages do).
    columns, rows = _read_table(dlc)
    assert [c[1] for c in columns[::3]] == NAMES
    assert [c[2] for c in columns[:3]] == ["x", "y", "likelihood"]
    assert sorted(int(image) for _, image, _ in rows) == sorted(expected)
    for _, image, values in rows:
        np.testing.assert_allclose(np.reshape(values, (-1, 3)), expected[int(image)], atol=2e-3)
