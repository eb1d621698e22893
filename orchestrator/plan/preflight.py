"""Everything that can fail before GPU time is spent, checked once, in the driver (Ray-free).

Configs (built by :func:`orchestrator.study.trials.plan`), the catalog, every dataset a trial
reads (annotations through the readers' checks), sigma sets against the test skeleton,
subset sizes against what each set holds, every initial-weights reference, and that the
results store is writable. Each failure is one line naming what to fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

from orchestrator.data.catalog import Catalog
from orchestrator.store.results import ResultsStore
from orchestrator.study.experiment import Experiment
from orchestrator.study.handover import is_reference
from orchestrator.study.trials import SweepOptions, TrialJob, plan
from pose_core.config import TrialConfig
from pose_core.skeletons import resolve_sigmas

Planned = dict[str, list[TrialJob]]


def needed_sizes(planned: Planned, test_cap: bool = True) -> dict[str, int]:
    """Images each dataset must provide: the largest count any trial draws from it.

    ``data.max_test`` is a cap on the test set, not a need: it sizes generated test sets
    (``test_cap``) but a smaller real test set is simply used whole."""
    needs: dict[str, int] = {}

    def need(name: str | None, count: int | None) -> None:
        if name and count:
            needs[name] = max(needs.get(name, 0), count)

    for jobs in planned.values():
        for job in jobs:
            data = job.config.data
            need(data.base, data.base_count)
            need(data.real, data.real_count)
            need(data.synthetic, data.synthetic_count)
            if test_cap:
                need(data.test, data.max_test)
    return needs


def make_catalog(options: SweepOptions, planned: Planned) -> Catalog:
    needs = needed_sizes(planned)
    sizes = options.scale_of.dataset_sizes
    if options.catalog:
        return Catalog.from_file(options.catalog, sizes, needs)
    return Catalog.default(sizes, needs=needs)


def datasets_read(config: TrialConfig) -> set[str]:
    data = config.data
    names = {n for n in (data.base, data.test) if n}
    if data.real and data.real_count:
        names.add(data.real)
    if data.synthetic and data.synthetic_count:
        names.add(data.synthetic)
    return names


# What a failed check raises (the CLI turns these into one line, exit 2).
CHECK_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, KeyError, RuntimeError)


class Problems:
    """Where a failed check goes: raised at once (a sweep), or noted as one line (``--plan``,
    which prints the plan and under it each problem the sweep would stop on)."""

    def __init__(self, collected: list[str] | None) -> None:
        self.collected = collected

    def add(self, error: Exception) -> None:
        """Raises ``error`` for a sweep; notes its first line for a plan."""
        if self.collected is None:
            raise error
        lines = str(error).strip().splitlines()
        line = lines[0] if lines else type(error).__name__
        if line not in self.collected:
            self.collected.append(line)


def preflight(
    experiment: Experiment, options: SweepOptions, say: Callable[[str], None] = print,
    sizes: dict[str, int] | None = None, problems: list[str] | None = None,
) -> tuple[Planned, Catalog]:
    """Plan every trial and check everything it will read. Returns the jobs and the checked
    catalog; ``sizes`` (when given) receives each dataset's number of instances.

    With ``problems`` (a list: ``--plan``), what only training needs (initial weights, each
    dataset, its images and sizes, the sigma sets that depend on it) is checked the same way
    but each failure is appended as one line instead of raised; the plan then leaves out what
    could not be read. The experiment, the catalog file and the results store still raise.
    """
    notes = Problems(problems)
    planned = plan(experiment, options)
    catalog = make_catalog(options, planned)
    names: set[str] = set()
    weights: dict[tuple[str, str | None, str], str | Exception] = {}
    for jobs in planned.values():
        for job in jobs:
            names |= datasets_read(job.config)
            try:
                check_weights(job.config, catalog, weights)
            except CHECK_ERRORS as error:
                notes.add(error)
    for line in sorted({v for v in weights.values() if isinstance(v, str)}):
        say(f"initial weights: {line}")
    catalog.check_read(names)
    say(f"checking {len(names)} dataset(s): {', '.join(sorted(names))}")
    available, skeletons, unread = {}, {}, set()
    for name in sorted(names):
        try:
            ((report, images, skeleton),) = catalog.validate([name], say).values()
        except CHECK_ERRORS as error:
            notes.add(error)
            unread.add(name)
            continue
        say("  " + report.summary())
        available[name], skeletons[name] = images, skeleton
        if sizes is not None:
            sizes[name] = report.kept
    for name in sorted(names - unread):
        try:
            catalog = check_images(catalog, {name}, say)
        except CHECK_ERRORS as error:
            notes.add(error)
            unread.add(name)
    for jobs in planned.values():
        for job in jobs:
            test = job.config.data.test
            if test not in skeletons:
                continue
            try:
                # A sigma set that does not fit the test skeleton fails here, not in a worker.
                resolve_sigmas(job.config.eval.sigmas, skeletons[test])
            except CHECK_ERRORS as error:
                notes.add(error)
    for name, count in needed_sizes(planned, test_cap=False).items():
        if name in available and count > available[name]:
            notes.add(ValueError(
                f"a trial draws {count} images from dataset {name!r} but it has only "
                f"{available[name]} ({catalog.entry(name).kind} entry in {catalog.source})"))
    ResultsStore(options.results).check_writable()
    return with_data_digests(planned, catalog, unread), catalog


def problem_lines(problems: list[str]) -> str:
    """What ``--plan`` prints under the plan: each problem the sweep would stop on."""
    head = (f"the sweep would stop before training on {len(problems)} problem(s); the plan "
            "above leaves out what could not be read:")
    return "\n".join([head, *(f"  - {line}" for line in problems)])


def with_data_digests(planned: Planned, catalog: Catalog, unread: set[str] | None = None) -> Planned:
    """Each grid job with the digest of the exact instances it trains and tests on (the
    mixing is cheap; each dataset's annotations are read once here). Jobs that read a
    dataset in ``unread`` (``--plan`` found it unreadable) keep no digest."""
    import hashlib

    from orchestrator.data.trialdata import assemble

    loaded: dict[str, Any] = {}

    class Once:
        def load(self, name: str, progress: Any = None) -> Any:
            if name not in loaded:
                loaded[name] = catalog.load(name)
            return loaded[name]

    out: Planned = {}
    for stage, jobs in planned.items():
        out[stage] = []
        for job in jobs:
            if not job.sampled and not datasets_read(job.config) & (unread or set()):
                data = assemble(job.config, cast(Catalog, Once()))
                tests = ",".join(sorted(inst.key() for inst in data.test))
                digest = hashlib.sha256(f"{data.mixed.digest}|{tests}".encode()).hexdigest()
                job = dataclasses.replace(job, data_digest=digest[:16])
            out[stage].append(job)
    return out


def check_images(catalog: Catalog, names: set[str], say: Callable[[str], None]) -> Catalog:
    """Decode every image of every dataset once (in parallel, into the node's decoded-image
    store, so trials here start warm); each entry's ``bad_images`` says stop (the default: one
    line naming the first bad file) or skip (the catalog returned leaves them out everywhere)."""
    from pose_core.image_store import ImageStore

    shown: dict[str, int] = {}

    def progress(name: str, done: int, total: int) -> None:
        step = max(1, total // 4) if total >= 1000 else total  # quarters for large sets only
        if done == total or done // step > shown.get(name, 0):
            shown[name] = done // step
            say(f"  decoding {name}: {done}/{total} images")

    checked, reports = catalog.check_images(names, store=ImageStore(), progress=progress)
    for name, report in sorted(reports.items()):
        if not report.ok:
            say(f"  {name}: {report.summary()} (bad_images = skip: left out)")
    return checked


def check_weights(config: TrialConfig, catalog: Catalog,
                  seen: dict[tuple[str, str | None, str], str | Exception] | None = None) -> None:
    """Every initial-weights reference a trial will load resolves now: the catalog's or an
    explicit file (a state dict that fits the backbone), an ``s3://`` object, or timm's hub
    weights (cached, or online). Each distinct source is checked once (``seen`` keeps its
    line, or the error it raised, raised again for every trial that names it)."""
    from orchestrator.data.pretrained import is_generated
    from orchestrator.data.weights import check_named_weights, check_weights_source

    model = config.model
    if model.init == "random" or is_reference(model.weights) or is_generated(model.weights):
        return  # a generated start: check_starts
    key = (model.backbone, model.weights, model.init)
    cached = seen.get(key) if seen is not None else None
    if isinstance(cached, Exception):
        raise cached
    if cached is not None:
        return
    try:
        if model.weights is None:
            line = check_weights_source(model.backbone, catalog)
        else:
            line = check_named_weights(model.weights, model.backbone, model.init)
    except CHECK_ERRORS as error:
        if seen is not None:
            seen[key] = error
        raise
    if seen is not None:
        seen[key] = line
