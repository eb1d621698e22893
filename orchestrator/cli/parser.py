"""The ``posetune`` command. Arguments become typed config here, at the edge.

Errors are one clear line on stderr with exit code 2; ``--debug`` shows the traceback.
Heavy modules (torch, Ray) are imported inside the subcommands that need them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator.cli.commands import (
    cmd_compact,
    cmd_data_convert,
    cmd_data_synth,
    cmd_demo,
    cmd_eval,
    cmd_export,
    cmd_findings,
    cmd_list,
    cmd_model_info,
    cmd_new,
    cmd_plot,
    cmd_predict,
    cmd_pretrain,
    cmd_query,
    cmd_report,
    cmd_sweep,
    cmd_table,
    resume_command,
)
from orchestrator.infer.frames import OUTPUT_FORMATS

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, KeyError, PermissionError, OSError, RuntimeError,
)


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    from orchestrator.run.trackers import add_log_argument

    add_log_argument(p)
    p.add_argument("--results", help="results URI: a local dir or s3://bucket/prefix "
                   "(default runs/EXPERIMENT)")
    p.add_argument("--plan", action="store_true",
                   help="print what the sweep would train (trials, image-epochs, reused and "
                   "forked trials, device-hours) and write it beside the results; trains "
                   "nothing")
    p.add_argument("--calibrate", action="store_true",
                   help="with --plan: first measure the training throughput of each "
                   "backbone and input size on this machine's device (a GPU on a cluster "
                   "node) and cache it for later plans")
    p.add_argument("--throughput", type=float, metavar="IMG_PER_S",
                   help="with --plan: training images per second per device for every "
                   "trial, instead of the measured figures")
    p.add_argument("--no-reuse", action="store_true",
                   help="train every trial, even one the results store already holds a "
                   "finished trial with the same training identity for (from any experiment)")
    p.add_argument("--no-fork", action="store_true",
                   help="train every trial from the start, even trials that differ only in "
                   "train.epochs (by default they share their identical first epochs)")
    p.add_argument("--resume", action="store_true", help="continue a sweep in the same "
                   "--results: skip trials whose finished row has the same training identity, "
                   "rerun changed ones (named on the terminal)")
    p.add_argument("--scale", default="full", help="trial sizes: full (the study's, default), "
                   "mini (a laptop: the whole study in about an hour on 2 cores, rows that "
                   "differ) or smoke (seconds a trial on a CPU; numbers mean nothing)")
    p.add_argument("--smoke", action="store_true", help="same as --scale smoke")
    p.add_argument("--seeds", type=int, help="repeat every trial with N seeds")
    p.add_argument("--redraw-subsets", action="store_true",
                   help="each seed also redraws the data subsets (nested within the seed), so "
                   "intervals cover which images were drawn, not only the initialisation")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="set a config value for every trial, e.g. train.batch_size=32 "
                   "(refused on a path the experiment varies)")
    p.add_argument("--catalog", help="data catalog TOML (default: generated data)")
    p.add_argument("--stage", action="append", help="run only these stages")
    p.add_argument("--workers", type=int, default=1, help="data-parallel workers per trial "
                   "(more than 1 runs each trial as a Ray Train run)")
    p.add_argument("--runner", choices=["auto", "tune", "train"], default="auto",
                   help="how a trial runs: 'tune' trains in the Tune trial's own process "
                   "(fast start, packs on fractional GPUs), 'train' launches a Ray Train run "
                   "(needed for --workers > 1); auto picks by --workers")
    p.add_argument("--cpus-per-worker", type=float, default=4.0, help="CPUs per worker on GPU "
                   "clusters (CPU-only clusters split their CPUs automatically)")
    p.add_argument("--gpus-per-worker", type=float, default=1.0,
                   help="GPUs per worker; fractions pack several small trials on one GPU")
    p.add_argument("--max-concurrent", type=int, help="trials running at once")
    p.add_argument("--optuna-storage", help="Optuna storage URL to persist TPE studies")
    p.add_argument("--max-failures", type=int, default=2,
                   help="restarts of a failed trial (or Ray Train worker group) from its "
                   "last checkpoint")
    p.add_argument("--tune-storage", help="where Ray keeps checkpoints (default RESULTS/tune)")
    p.add_argument("--address", help="join this Ray cluster ('auto': the one running on this "
                   "node); default: RAY_ADDRESS if set (ray job submit sets it), else a new "
                   "local cluster of this sweep's own")


DESCRIPTION = """\
posetune runs the ablation study of 2D animal pose estimation as one command per experiment:
each experiment (search_spaces/NAME.py) is swept on Ray Tune, one trial per variant, and every
trial lands as a row in Parquet (local folder or s3://) for SQL, tables and plots."""

FIRST_STEPS = """\
first commands to try:
  posetune demo                     the 4-trial quickstart on generated data (about 4 min on 2 CPUs)
  posetune list                     the study's experiments: trials, table reproduced, datasets
  posetune sweep two_stage --smoke  one experiment of the study, CPU-sized

'posetune COMMAND --help' describes a command, with examples."""


def add_command(
    sub: Any, name: str, text: str, examples: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """A subcommand whose one-line ``text`` is both its help entry and its description."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=text, description=text, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posetune", description=DESCRIPTION, epilog=FIRST_STEPS,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and Ray logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    add_run_commands(sub)
    add_result_commands(sub)
    add_tool_commands(sub)
    return parser


def add_run_commands(sub: Any) -> None:
    p = add_command(sub, "demo", "the quickstart sweep on generated data, on a local Ray cluster", [
        "posetune demo                       # data and results under ./posetune-demo",
        "posetune demo --out /tmp/d --resume # continue an interrupted demo"])
    p.add_argument("--out", default="posetune-demo",
                   help="folder for the generated data and the results (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="skip trials already finished there")
    p.set_defaults(func=cmd_demo)

    p = add_command(sub, "sweep", "run an experiment (shipped, or your own file) on Ray Tune", [
        "posetune sweep two_stage --smoke --results /tmp/two_stage   # CPU-sized",
        "posetune sweep real_amount --seeds 3 --catalog my_catalog.toml --results s3://b/real",
        "posetune sweep my_study.py --smoke          # your own experiment file",
        "posetune sweep hyperparameters --plan       # what it would train; trains nothing"])
    p.add_argument("experiment", help="a shipped name (posetune list), a file my_study.py "
                   "(relative to the current directory), or MODULE_OR_FILE:ATTRIBUTE")
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)

    p = add_command(sub, "list", "the study's experiments: what each reproduces, trials, data", [
                        "posetune list", "posetune list --markdown   # the README's table",
                        "posetune list --path studies/             # your own files"])
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="a JSON array, one object per experiment")
    form.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    p.add_argument("--path", help="list the experiment files (*.py) in this folder instead")
    p.set_defaults(func=cmd_list)

    p = add_command(sub, "new", "write a commented starter experiment file", [
        "posetune new my_study.py && posetune sweep my_study.py --smoke",
        "posetune new mouse_study.py --data openfield   # train on a catalog dataset"])
    p.add_argument("file", help="the file to write, e.g. my_study.py")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--data", help="train on this catalog dataset and test on DATA-test "
                   "(default: posetune's generated data)")
    p.set_defaults(func=cmd_new)


def add_bad_files_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-bad-files", action="store_true",
                   help="read the store without files that are not readable results files "
                   "(truncated, another schema) and say how many, instead of stopping at the "
                   "first")


def add_result_commands(sub: Any) -> None:
    p = add_command(sub, "compact", "rewrite a results store's many small files into a few "
                    "large sorted ones, so queries and tables read it in seconds; every row "
                    "stays, and a kill at any moment loses none and duplicates none", [
                        "posetune compact runs/study",
                        "posetune compact s3://bucket/study"])
    p.add_argument("results", help="results folder or s3://bucket/prefix")
    add_bad_files_argument(p)
    p.set_defaults(func=cmd_compact)

    p = add_command(sub, "query", "SQL over the results (tables trials, epochs, all_trials)", [
                        "posetune query runs/two_stage --sql "
                        "\"SELECT variant_id, AP FROM trials ORDER BY AP DESC\"",
                        "posetune query s3://bucket/study --format csv > trials.csv"])
    p.add_argument("results", help="results folder or s3://bucket/prefix")
    p.add_argument("--sql", help="a DuckDB SELECT (default: every trial's latest row)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="output format (default %(default)s)")
    add_bad_files_argument(p)
    p.set_defaults(func=cmd_query)

    p = add_command(sub, "table", "render a table from results: a study table (NAME RESULTS) "
                    "or any experiment's (RESULTS --experiment NAME)", [
        "posetune table real_amount runs/real_amount   # Table 3, mean and 95% interval",
        "posetune table quickstart posetune-demo/results --format csv",
        "posetune table runs/my_study --experiment my_study   # one row per variant"])
    p.add_argument("target", nargs="+", metavar="[NAME] RESULTS",
                   help="a study table's name and the results, or only the results")
    p.add_argument("--experiment", help="the experiment whose generic table to render "
                   "(default: the only one in RESULTS)")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown",
                   help="output format (default %(default)s)")
    add_bad_files_argument(p)
    p.set_defaults(func=cmd_table)

    p = add_command(sub, "findings", "check the study's seven findings against a store that "
                    "holds the study's experiments: agrees, differs or within noise", [
        "posetune findings runs/study-mini   # after make study-mini"])
    p.add_argument("results", help="results folder or s3:// URI holding the seven experiments")
    p.add_argument("--metric", default="AP", help="the metric compared (default AP)")
    add_bad_files_argument(p)
    p.set_defaults(func=cmd_findings)

    p = add_command(sub, "plot", "draw a figure from results: a study figure (NAME RESULTS) "
                    "or a metric against an axis (RESULTS --x AXIS)", [
        "posetune plot synthetic_amount runs/synthetic_amount --out fig7.png   # Figure 7",
        "posetune plot runs/my_study --x train.lr --metric AP --out lr.png"])
    p.add_argument("target", nargs="+", metavar="[NAME] RESULTS",
                   help="a study figure's name and the results, or only the results")
    p.add_argument("--experiment", help="the experiment to plot (default: the only one)")
    p.add_argument("--x", help="numeric axis: a config path (train.lr) or a results column")
    p.add_argument("--metric", default="AP", help="the metric on the y axis (default AP)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_plot)

    p = add_command(sub, "report", "a static HTML report of the results: tables, curves, "
                    "per-keypoint errors, poses, configs, provenance", [
        "posetune report runs/study --out report/   # open report/index.html"])
    p.add_argument("results", help="results URI: a local dir or s3://bucket/prefix")
    p.add_argument("--experiment", help="only this experiment (default: every one in RESULTS)")
    p.add_argument("--out", required=True, help="folder for index.html and its figures/")
    p.add_argument("--catalog", help="the sweep's data catalog TOML, for the best trial's test "
                   "images (default: generated data)")
    p.add_argument("--pose-images", type=int, default=3, help="hardest and easiest test "
                   "instances of the best trial to draw, N of each (0: none)")
    p.set_defaults(func=cmd_report)

    p = add_command(sub, "eval", "score COCO-format predictions against ground truth", [
        "posetune eval --gt lynx_test.json --pred predictions.json --sigmas animalpose",
        "posetune eval --gt gt.json --pred pred.json --per-keypoint"])
    p.add_argument("--gt", required=True, help="ground truth: COCO keypoint JSON, checked as "
                   "the sweep checks it")
    p.add_argument("--pred", required=True, help="predictions: COCO keypoint results JSON")
    p.add_argument("--sigmas", default="animalpose", help="OKS sigma set: NAME (animalpose, "
                   "ap10k, animalpose-corrected, uniform:V) or a JSON file")
    p.add_argument("--area-rule", choices=["given", "bbox"], default="given",
                   help="OKS object area: the annotation's own, or bbox w*h (default %(default)s)")
    p.add_argument("--pck-normaliser", choices=["bbox", "diagonal", "sqrt_area"], default="bbox",
                   help="PCK distance unit: bbox = longer box side (default %(default)s)")
    p.add_argument("--pck-threshold", type=float, default=0.05,
                   help="PCK threshold as a fraction of the normaliser (default %(default)s)")
    p.add_argument("--json", action="store_true", help="one strict JSON object (null for NaN)")
    p.add_argument("--per-keypoint", action="store_true", help="also print AP, PCK, normalised "
                   "error and left/right swap rate per keypoint")
    p.set_defaults(func=cmd_eval)


def add_tool_commands(sub: Any) -> None:
    from orchestrator.data.labels import LABEL_FORMATS  # light: sleap-io loads on first read

    p = add_command(sub, "model-info", "parameters, GFLOPs and heatmap shape of a model", [
        "posetune model-info --backbone hrnet_w32 --input 256"])
    p.add_argument("--backbone", required=True, help="timm backbone name, e.g. hrnet_w32")
    p.add_argument("--head", choices=["heatmap", "kitpose"], default="heatmap",
                   help="pose head (default %(default)s)")
    p.add_argument("--input", type=int, default=256, help="input size in pixels, square "
                   "(default %(default)s)")
    p.add_argument("--keypoints", type=int, default=20, help="number of keypoints "
                   "(default %(default)s)")
    p.add_argument("--json", action="store_true", help="print as one JSON object")
    p.set_defaults(func=cmd_model_info)

    p = add_command(sub, "pretrain", "build the generated-pretrained start that stands in for "
                    "ImageNet at --scale mini/smoke (once per machine, cached)", [
        "posetune pretrain --scale mini          # every mini backbone (about 30 min, 2 CPUs)",
        "posetune pretrain --scale mini --backbone hrnet_w18_small"])
    p.add_argument("--scale", choices=["smoke", "mini"], default="mini",
                   help="the scale whose start to build (default %(default)s)")
    p.add_argument("--backbone", action="append", help="only this backbone (repeatable; "
                   "default: the scale's backbones)")
    p.set_defaults(func=cmd_pretrain)

    data = add_command(sub, "data", "generate or convert data sets").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND", title="commands")
    p = add_command(data, "synth", "render the synthetic quadruped data set", [
        "posetune data synth --out data/synthetic --images 1000",
        "posetune data synth --out data/camera --images 200 --style camera-trap"])
    p.add_argument("--out", required=True, help="folder to write images and annotations.json")
    p.add_argument("--images", type=int, default=1000, help="images to render "
                   "(default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--scenes", type=int, default=4, help="scenes the images are drawn evenly "
                   "from (default %(default)s)")
    p.add_argument("--style", choices=["synthetic", "camera-trap"], default="synthetic",
                   help="clean renders, or camera-trap-like (night, blur, clutter)")
    p.set_defaults(func=cmd_data_synth)
    p = add_command(data, "convert", "convert labels (DeepLabCut, SLEAP, CzechLynx, ...) to "
                    "COCO keypoint JSON", [
        "posetune data convert dlc my-dlc-project/ --out labels.json",
        "posetune data convert slp labels.v001.slp --out labels.json",
        "posetune data convert czechlynx CzechLynx.csv --split pose:train --out lynx_train.json"])
    p.add_argument("format", choices=["czechlynx", *LABEL_FORMATS],
                   help="the source's format (dlc: a DeepLabCut project folder, config.yaml "
                   "or CollectedData csv/h5; slp, nwb, ...: read by sleap-io; jabs and "
                   "analysis_h5 hold predictions only and are refused with their counts)")
    p.add_argument("csv", metavar="SRC", help="the label source: a file or project folder")
    p.add_argument("--out", required=True, help="the COCO keypoint JSON to write")
    p.add_argument("--split", help="czechlynx: e.g. pose:train or geo_aware:test; "
                   "ultralytics: the dataset's own split (train, val, test); other formats: "
                   "train or test (a contiguous 80/20 split)")
    p.add_argument("--category", help="coco only: the one category to read from a file with "
                   "several (by name)")
    p.add_argument("--images", help="czechlynx only: image root (default: the CSV's folder)")
    p.add_argument("--frames", help="where frames of video-backed sources are written as "
                   "PNG (default: OUT's folder/frames)")
    p.set_defaults(func=cmd_data_convert)

    p = add_command(sub, "predict", "poses for an image folder or a video with a checkpoint "
                    "or an exported ONNX model", [
        "posetune predict --checkpoint runs/x/best.pt --images photos/ --out poses.json "
        "--overlay drawn/",
        "posetune predict --model model/model.onnx --video clip.mp4 --out poses.json "
        "--overlay clip.poses.mp4",
        "posetune predict --model model/model.onnx --video clip.mp4 --stride 5 --start 10 "
        "--end 70 --detections clip.md.json --out poses.json",
        "posetune predict --checkpoint runs/x/best.pt --video clip.mp4 --boxes clip.boxes.csv "
        "--device cuda --out poses.json",
        "posetune predict --checkpoint runs/x/best.pt --images photos/ --format slp "
        "--out poses.slp   # open in SLEAP",
        "posetune predict --checkpoint runs/x/best.pt --images photos/ --format dlc "
        "--out poses.csv   # DeepLabCut's machine-labelled layout (.csv or .h5)",
        "posetune predict --checkpoint runs/x/best.pt --video clip.mp4 --format slp "
        "--out poses.slp --suggest 20 --package to_label/   # the 20 least certain frames"])
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a trial's checkpoint (PyTorch): file, Ray "
                       "checkpoint folder or s3:// URI")
    model.add_argument("--model", help="a model.onnx that posetune export wrote (run with "
                       "onnxruntime; its metadata gives the input size, keypoints and "
                       "decoding)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="where the model runs (default: "
                   "a CUDA GPU when PyTorch, or onnxruntime's CUDA provider, has one)")
    frames = p.add_mutually_exclusive_group(required=True)
    frames.add_argument("--images", help="folder of images")
    frames.add_argument("--video", help="a video file (mp4, avi: what OpenCV reads)")
    p.add_argument("--stride", type=int, default=1, help="--video: every N-th frame "
                   "(default %(default)s: every frame)")
    p.add_argument("--start", type=float, metavar="SEC", help="--video: first second (default 0)")
    p.add_argument("--end", type=float, metavar="SEC", help="--video: stop before this second "
                   "(default: the end)")
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument("--detections", help="MegaDetector batch-output JSON (boxes; for a "
                       "video its frame results '<video>/frame000123.jpg' or its video "
                       "results); default: each whole frame is one animal")
    boxes.add_argument("--boxes", help="--video: a box file, CSV '# video: NAME' then "
                       "frame,x,y,w,h[,score] in pixels")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="minimum detection confidence (default %(default)s)")
    p.add_argument("--out", required=True, help="file to write the predictions to (.json for "
                   "coco, .slp for slp, .csv or .h5 for dlc)")
    p.add_argument("--format", default="coco", choices=OUTPUT_FORMATS,
                   help="coco: COCO keypoint results JSON (default %(default)s); slp: SLEAP "
                   "predicted instances with scores; dlc: DeepLabCut's machine-labelled table; "
                   "also the labelling package's format")
    p.add_argument("--overlay", help="images: a folder for images with the skeleton drawn; "
                   "video: an .mp4 file for the video with the skeleton drawn")
    p.add_argument("--suggest", type=int, metavar="N", help="also write the N frames whose "
                   "predictions are least certain (low score, left/right flip disagreement, "
                   "jumps between video frames) to --package, predictions as starting labels")
    p.add_argument("--package", metavar="DIR", help="with --suggest: new folder for the "
                   "labelling package (images, labels in --format, README.txt saying why)")
    p.set_defaults(func=cmd_predict)

    p = add_command(sub, "export", "a trial's model as ONNX and torch.export files, checked "
                    "against PyTorch on the trial's test images", [
        "posetune export runs/study --experiment quickstart --out model/   # the best trial",
        "posetune export runs/study --experiment quickstart --trial bd706_00002 --out model/"])
    p.add_argument("results", help="results URI: a local dir or s3://bucket/prefix")
    p.add_argument("--experiment", help="the experiment (default: the store's only one)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", help="this trial id (see posetune query) instead of the best")
    which.add_argument("--best", action="store_true", help="the best trial of the final stage "
                       "by the experiment's metric averaged over seeds (the default)")
    p.add_argument("--out", required=True, help="new folder for model.onnx, model.pt2, "
                   "model.json and parity.json")
    p.add_argument("--catalog", help="the sweep's data catalog TOML, for the trial's test "
                   "images (default: generated data)")
    p.set_defaults(func=cmd_export)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"posetune: interrupted; continue with: {resume_command()}", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        if args.debug:
            raise
        print(f"posetune: error: {one_line(error)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__

