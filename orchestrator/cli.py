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
    ValueError, FileNotFoundError, KeyError, PermissionError, OSError, RuntimeError,
)
EXIT_FAILED = 3  # some trial failed, or a stage could not start (orchestrator.driver)


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

    rows = describe_all(args.path)
    if not rows:
        raise ValueError(f"no experiment files (*.py) in {args.path}")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(listing_markdown(rows) if args.markdown else listing_text(rows), end="")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from orchestrator.starter import write_starter

    print(write_starter(args.file, force=args.force, data=args.data))
    return 0


def sweep_options(args: argparse.Namespace, results: str) -> Any:
    from orchestrator.planning import SweepOptions

    return SweepOptions(
        results=results, catalog=args.catalog, scale=args.scale, smoke=args.smoke,
        seeds=args.seeds,
        overrides=parse_set(args.set or []), resume=args.resume, workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        max_concurrent=args.max_concurrent, optuna_storage=args.optuna_storage,
        max_failures=args.max_failures, stages=tuple(args.stage or ()),
        tune_storage=args.tune_storage, ray_address=args.address, debug=args.debug,
        runner=args.runner, loggers=tuple(getattr(args, "log", None) or ()),
        reuse=not args.no_reuse, redraw_subsets=getattr(args, "redraw_subsets", False),
        fork=not getattr(args, "no_fork", False),
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    from orchestrator.driver import run_sweep
    from orchestrator.query import format_table
    from search_spaces import load_experiment

    experiment = load_experiment(args.experiment)
    results = args.results or f"runs/{experiment.name}"
    if args.plan:
        from orchestrator.driver import plan_sweep

        plan_sweep(experiment, sweep_options(args, results), args.throughput)
        return 0
    outcome = run_sweep(experiment, sweep_options(args, results))
    print_results(outcome.store, experiment.name, format_table)
    return report_outcome(outcome)


def report_outcome(outcome: Any) -> int:
    """The sweep's exit code, with the lines that explain a non-zero one on stderr."""
    code = int(outcome.exit_code)
    if outcome.interrupted:
        print(f"posetune: interrupted; finished trials are saved in {outcome.store.uri}. "
              f"Continue with: {resume_command()}", file=sys.stderr)
    for failure in outcome.failures[:10]:
        print(f"posetune: trial failed: {failure}", file=sys.stderr)
    if len(outcome.failures) > 10:
        print(f"posetune: ... and {len(outcome.failures) - 10} more failed trial(s)",
              file=sys.stderr)
    for line in outcome.not_started:
        print(f"posetune: stage not started: {line}", file=sys.stderr)
    if code == EXIT_FAILED:
        print(f"posetune: {outcome.counts.get('failed', 0)} trial(s) failed (exit {code}); "
              "rerun with --resume to retry only those", file=sys.stderr)
    return code


def resume_command() -> str:
    """The command line this process was started with, plus --resume."""
    import shlex

    argv = ["posetune", *sys.argv[1:]] if sys.argv else ["posetune"]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(argv)


def print_results(store: Any, experiment: str, format_table: Any) -> None:
    from orchestrator.query import query

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
    from orchestrator.query import query
    from search_spaces import load_experiment

    out = Path(args.out).resolve()
    os.environ["POSETUNE_DATA"] = str(out / "data")
    experiment = load_experiment("quickstart")
    print(f"posetune demo: {experiment.description.splitlines()[0]}")
    print(f"data and results go to {out}")
    options = SweepOptions(results=str(out / "results"), resume=args.resume, debug=args.debug)
    outcome = run_sweep(experiment, options)
    store = outcome.store
    rows = query(store.uri, f"SELECT * FROM trials WHERE experiment = '{experiment.name}'")
    posetune, results = how_to_rerun(store.uri)
    print()
    print(render_demo_report(rows.to_pylist(), posetune, results), end="")
    return report_outcome(outcome)


def cmd_query(args: argparse.Namespace) -> int:
    from orchestrator.query import format_table, query

    print(format_table(query(args.results, args.sql), args.format))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pose_core.metrics import evaluate_files

    result = evaluate_files(
        args.gt, args.pred, sigmas=args.sigmas, area_rule=args.area_rule,
        pck_normaliser=args.pck_normaliser, pck_threshold=args.pck_threshold,
    )
    if args.json:
        print(result.to_json())
        return 0
    values = result.as_dict()
    for key in ("AP", "AP50", "AP75", "AP85", "AR", "PCK05"):
        print(f"{key:>6}  {values[key]:.4f}")
    print(f"sigmas {values['sigma_set']} ({values['sigma_digest']}), area rule "
          f"{values['area_rule']}, PCK normaliser {values['pck_normaliser']}, "
          f"{values['num_instances']} instances")
    if args.per_keypoint:
        from pose_core.metrics import keypoint_names, keypoint_table

        print(keypoint_table(result, keypoint_names(args.gt)))
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
    if args.format == "czechlynx":
        from pose_core.readers import czechlynx_to_coco

        report = czechlynx_to_coco(args.csv, args.out, split=args.split, image_root=args.images)
    else:
        from orchestrator.labels import to_coco

        report = to_coco(args.format, args.csv, args.out, frames_dir=args.frames)
    print(report.summary(), file=sys.stderr)
    print(args.out)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from orchestrator.predict import run_predict

    outcome = run_predict(args)
    # The predictions of every good image are written; skipped ones make the exit non-zero.
    return EXIT_FAILED if outcome.skipped else 0


def named_or_generic(args: argparse.Namespace) -> tuple[str | None, str]:
    """``NAME RESULTS`` (a study table or figure) or ``RESULTS`` (the generic form)."""
    if len(args.target) == 2 and args.experiment is None:
        return args.target[0], args.target[1]
    if len(args.target) == 1:
        return None, args.target[0]
    raise ValueError(f"posetune {args.command}: give NAME RESULTS, or RESULTS [--experiment NAME]")


def cmd_table(args: argparse.Namespace) -> int:
    name, results = named_or_generic(args)
    if name is not None:
        from orchestrator.tables import render_table

        print(render_table(name, results, args.format))
        return 0
    from orchestrator.experiment_table import render_experiment_table

    print(render_experiment_table(results, args.experiment, args.format))
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    from orchestrator.findings import evaluate, render

    print(render(evaluate(args.results, args.metric), args.metric))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report import build_report

    print(build_report(args.results, args.out, args.experiment, args.catalog, args.pose_images))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    name, results = named_or_generic(args)
    if name is not None:
        from orchestrator.tables import render_plot

        print(render_plot(name, results, args.out))
        return 0
    from orchestrator.experiment_table import render_axis_plot

    if not args.x:
        raise ValueError("posetune plot RESULTS needs --x AXIS (e.g. --x train.lr)")
    print(render_axis_plot(results, args.x, args.out, args.metric, args.experiment))
    return 0


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    from orchestrator.trackers import add_log_argument

    add_log_argument(p)
    p.add_argument("--results", help="results URI: a local dir or s3://bucket/prefix "
                   "(default runs/EXPERIMENT)")
    p.add_argument("--plan", action="store_true",
                   help="print what the sweep would train (trials, image-epochs, reused "
                   "trials, GPU-hours) and write it beside the results; trains nothing")
    p.add_argument("--throughput", type=float, metavar="IMG_PER_S",
                   help="training images per second per GPU, for --plan's GPU-hours")
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
    p.set_defaults(func=cmd_table)

    p = add_command(sub, "findings", "check the study's seven findings against a store that "
                    "holds the study's experiments: agrees, differs or within noise", [
        "posetune findings runs/study-mini   # after make study-mini"])
    p.add_argument("results", help="results folder or s3:// URI holding the seven experiments")
    p.add_argument("--metric", default="AP", help="the metric compared (default AP)")
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
    from orchestrator.labels import LABEL_FORMATS  # light: sleap-io loads on first read

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
    p = add_command(data, "convert", "convert labels (DeepLabCut, SLEAP, CzechLynx, ...) to "
                    "COCO keypoint JSON", [
        "posetune data convert dlc my-dlc-project/ --out labels.json",
        "posetune data convert slp labels.v001.slp --out labels.json",
        "posetune data convert czechlynx CzechLynx.csv --split pose:train --out lynx_train.json"])
    p.add_argument("format", choices=["czechlynx", *LABEL_FORMATS],
                   help="the source's format (dlc: a DeepLabCut project folder, config.yaml "
                   "or CollectedData csv/h5; slp, nwb, ...: read by sleap-io)")
    p.add_argument("csv", metavar="SRC", help="the label source: a file or project folder")
    p.add_argument("--out", required=True, help="the COCO keypoint JSON to write")
    p.add_argument("--split", help="czechlynx: e.g. pose:train or geo_aware:test; other "
                   "formats: train or test (a contiguous 80/20 split)")
    p.add_argument("--images", help="czechlynx only: image root (default: the CSV's folder)")
    p.add_argument("--frames", help="where frames of video-backed sources are written as "
                   "PNG (default: OUT's folder/frames)")
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


if __name__ == "__main__":
    sys.exit(main())
