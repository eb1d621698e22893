"""The ``posetune`` command. Arguments become typed config here, at the edge.

Errors are one clear line on stderr with exit code 2; ``--debug`` shows the traceback.
Heavy modules (torch, Ray) are imported inside the subcommands that need them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, KeyError, PermissionError, OSError,
)


def parse_set(values: Sequence[str]) -> dict[str, Any]:
    """``--set train.lr=1e-4`` -> {"train.lr": 0.0001}; values parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from orchestrator.listing import listing_markdown, listing_text
    from search_spaces import describe_all

    rows = describe_all()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(listing_markdown(rows) if args.markdown else listing_text(rows), end="")
    return 0


def sweep_options(args: argparse.Namespace, results: str) -> Any:
    from orchestrator.planning import SweepOptions

    return SweepOptions(
        results=results, catalog=args.catalog, smoke=args.smoke, seeds=args.seeds,
        overrides=parse_set(args.set or []), resume=args.resume, workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        max_concurrent=args.max_concurrent, optuna_storage=args.optuna_storage,
        max_failures=args.max_failures, stages=tuple(args.stage or ()),
        tune_storage=args.tune_storage, ray_address=args.address, debug=args.debug,
        runner=args.runner,
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator.driver import run_sweep
    from orchestrator.results import format_table
    from search_spaces import load_experiment

    experiment = load_experiment(args.experiment)
    results = args.results or f"runs/{experiment.name}"
    store = run_sweep(experiment, sweep_options(args, results))
    print_results(store, experiment.name, format_table)
    return 0


def print_results(store: Any, experiment: str, format_table: Any) -> None:
    from orchestrator.results import query

    sql = (
        "SELECT stage, variant_id, seed, status, printf('%.3f', AP) AS AP, "
        "printf('%.3f', AP75) AS AP75, printf('%.3f', AP85) AS AP85, "
        "printf('%.3f', PCK05) AS PCK05, epochs_run, CAST(round(wall_s) AS INTEGER) AS wall_s "
        f"FROM trials WHERE experiment = '{experiment}' ORDER BY stage, variant_id, seed"
    )
    print(format_table(query(store.uri, sql), "table"))
    posetune, uri = how_to_rerun(store.uri)
    results = shlex.quote(uri)
    example = f"\"SELECT variant_id, AP FROM trials WHERE experiment = '{experiment}'\""
    print(f"AP, AP75, AP85 and PCK05 are 0 to 1, higher is better; wall_s is seconds.\n"
          f"Next: {posetune} table {experiment} {results}\n"
          f"      {posetune} query {results} --sql {example}   (tables: trials, epochs)")


def how_to_rerun(results_uri: str) -> tuple[str, str]:
    """The posetune command as the user typed it, and the results URI as seen from here."""
    import shutil

    from orchestrator.demo_report import invocation, shown_path

    cwd = Path.cwd()
    posetune = invocation(sys.argv[0], shutil.which("posetune"), cwd, sys.executable)
    results = results_uri if "://" in results_uri else shown_path(Path(results_uri), cwd)
    return posetune, results


def cmd_demo(args: argparse.Namespace) -> int:
    import os

    from orchestrator.demo_report import render_demo_report
    from orchestrator.driver import run_sweep
    from orchestrator.planning import SweepOptions
    from orchestrator.quiet import apply_local_ray_settings
    from orchestrator.results import query
    from search_spaces import load_experiment

    apply_local_ray_settings(os.environ.get("RAY_ADDRESS"))  # no token-auth warning from Ray
    out = Path(args.out).resolve()
    os.environ["POSETUNE_DATA"] = str(out / "data")
    experiment = load_experiment("quickstart")
    print(f"posetune demo: {experiment.description.splitlines()[0]}")
    print(f"data and results go to {out}")
    options = SweepOptions(results=str(out / "results"), resume=args.resume, debug=args.debug)
    store = run_sweep(experiment, options)
    rows = query(store.uri, f"SELECT * FROM trials WHERE experiment = '{experiment.name}'")
    posetune, results = how_to_rerun(store.uri)
    print()
    print(render_demo_report(rows.to_pylist(), posetune, results), end="")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from orchestrator.results import format_table, query

    print(format_table(query(args.results, args.sql), args.format))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pose_core.metrics import evaluate_files

    result = evaluate_files(
        args.gt, args.pred, sigmas=args.sigmas, area_rule=args.area_rule,
        pck_normaliser=args.pck_normaliser, pck_threshold=args.pck_threshold,
    )
    values = result.as_dict()
    if args.json:
        print(json.dumps(values))
        return 0
    for key in ("AP", "AP50", "AP75", "AP85", "AR", "PCK05"):
        print(f"{key:>6}  {values[key]:.4f}")
    print(f"sigmas {values['sigma_set']} ({values['sigma_digest']}), area rule "
          f"{values['area_rule']}, PCK normaliser {values['pck_normaliser']}, "
          f"{values['num_instances']} instances")
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from pose_core.config import ModelConfig
    from pose_core.model_info import model_info

    cfg = ModelConfig(backbone=args.backbone, head=args.head, init="random")
    info = model_info(cfg, num_keypoints=args.keypoints, input_size=args.input)
    values = info.as_dict() if hasattr(info, "as_dict") else dict(vars(info))
    if args.json:
        print(json.dumps(values))
    else:
        for key, value in values.items():
            print(f"{key}: {value}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from pose_core.synth import SynthConfig, generate

    config = SynthConfig(images=args.images, seed=args.seed, scenes=args.scenes, style=args.style)

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"\rgenerating {done}/{total} images", end="", file=sys.stderr, flush=True)

    path = generate(args.out, config, progress)
    print(file=sys.stderr)
    print(path)
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from pose_core.readers import czechlynx_to_coco

    report = czechlynx_to_coco(args.csv, args.out, split=args.split, image_root=args.images)
    print(report.summary(), file=sys.stderr)
    print(args.out)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from orchestrator.predict import run_predict

    run_predict(args)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from orchestrator.tables import render_table

    print(render_table(args.name, args.results, args.format))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from orchestrator.tables import render_plot

    print(render_plot(args.name, args.results, args.out))
    return 0


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", help="results URI: a local dir or s3://bucket/prefix "
                   "(default runs/EXPERIMENT)")
    p.add_argument("--resume", action="store_true", help="skip trials already finished there")
    p.add_argument("--smoke", action="store_true", help="CPU-sized run on generated data")
    p.add_argument("--seeds", type=int, help="repeat every trial with N seeds")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
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
    p.add_argument("--address", help="Ray cluster address, or 'local' for a new local "
                   "cluster (default: RAY_ADDRESS, a running cluster, else a new local one)")


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

    p = add_command(sub, "sweep", "run an experiment from search_spaces on Ray Tune", [
        "posetune sweep two_stage --smoke --results /tmp/two_stage   # CPU-sized",
        "posetune sweep real_amount --seeds 3 --catalog my_catalog.toml --results s3://b/real",
        "posetune sweep hyperparameters --set train.batch_size=32"])
    p.add_argument("experiment", help="experiment name, as listed by 'posetune list'")
    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)

    p = add_command(sub, "list", "the study's experiments: what each reproduces, trials, data", [
                        "posetune list", "posetune list --markdown   # the README's table"])
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="a JSON array, one object per experiment")
    form.add_argument("--markdown", action="store_true", help="a Markdown table (the README's)")
    p.set_defaults(func=cmd_list)


def add_result_commands(sub: Any) -> None:
    p = add_command(sub, "query", "SQL over the results (tables trials, epochs, all_trials)", [
                        "posetune query runs/two_stage --sql "
                        "\"SELECT variant_id, AP FROM trials ORDER BY AP DESC\"",
                        "posetune query s3://bucket/study --format csv > trials.csv"])
    p.add_argument("results", help="results folder or s3://bucket/prefix")
    p.add_argument("--sql", help="a DuckDB SELECT (default: every trial's latest row)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="output format (default %(default)s)")
    p.set_defaults(func=cmd_query)

    p = add_command(sub, "table", "render a table of the study from results", [
        "posetune table real_amount runs/real_amount   # Table 3, mean and 95% interval",
        "posetune table quickstart posetune-demo/results --format csv"])
    p.add_argument("name", help="an experiment or table name, e.g. real_amount, two_stage")
    p.add_argument("results", help="results folder or s3://bucket/prefix")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown",
                   help="output format (default %(default)s)")
    p.set_defaults(func=cmd_table)

    p = add_command(sub, "plot", "draw a figure of the study from results", [
        "posetune plot synthetic_amount runs/synthetic_amount --out fig7.png   # Figure 7"])
    p.add_argument("name", help="synthetic_amount (Figure 7) or pck_per_keypoint")
    p.add_argument("results", help="results folder or s3://bucket/prefix")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=cmd_plot)

    p = add_command(sub, "eval", "score COCO-format predictions against ground truth", [
        "posetune eval --gt lynx_test.json --pred predictions.json --sigmas animalpose"])
    p.add_argument("--gt", required=True, help="ground truth: COCO keypoint annotations JSON")
    p.add_argument("--pred", required=True, help="predictions: COCO keypoint results JSON")
    p.add_argument("--sigmas", default="animalpose", help="OKS sigma set: NAME (animalpose, "
                   "ap10k, animalpose-corrected, uniform:V) or a JSON file")
    p.add_argument("--area-rule", choices=["given", "bbox"], default="given",
                   help="OKS object area: the annotation's own, or bbox w*h (default %(default)s)")
    p.add_argument("--pck-normaliser", choices=["bbox", "diagonal", "sqrt_area"], default="bbox",
                   help="PCK distance unit: bbox = longer box side (default %(default)s)")
    p.add_argument("--pck-threshold", type=float, default=0.05,
                   help="PCK threshold as a fraction of the normaliser (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=cmd_eval)


def add_tool_commands(sub: Any) -> None:
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
    p = add_command(data, "convert", "convert a data set to COCO keypoint JSON", [
        "posetune data convert czechlynx CzechLynx.csv --split pose:train --out lynx_train.json"])
    p.add_argument("format", choices=["czechlynx"], help="source format")
    p.add_argument("csv", help="the data set's annotation CSV")
    p.add_argument("--out", required=True, help="COCO JSON file to write")
    p.add_argument("--split", help="which split to keep, e.g. pose:train or geo_aware:test")
    p.add_argument("--images", help="image root (default: the CSV's folder)")
    p.set_defaults(func=cmd_data_convert)

    p = add_command(sub, "predict", "poses for a folder of images with a checkpoint", [
        "posetune predict --checkpoint runs/x/best.pt --images photos/ --out poses.json "
        "--overlay drawn/"])
    p.add_argument("--checkpoint", required=True, help="a trial's checkpoint: file, Ray "
                   "checkpoint folder or s3:// URI")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--detections", help="MegaDetector batch-output JSON (boxes); default: "
                   "each whole image is one animal")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="minimum detection confidence (default %(default)s)")
    p.add_argument("--out", required=True, help="COCO keypoint results JSON to write")
    p.add_argument("--overlay", help="folder for images with the skeleton drawn")
    p.set_defaults(func=cmd_predict)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("posetune: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        if args.debug:
            raise
        print(f"posetune: error: {one_line(error)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
