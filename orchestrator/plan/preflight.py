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


def preflight(
    experiment: Experiment, options: SweepOptions, say: Callable[[str], None] = print,
    sizes: dict[str, int] | None = None,
) -> tuple[Planned, Catalog]:
    """Plan every trial and check everything it will read. Returns the jobs and the checked
    catalog; ``sizes`` (when given) receives each dataset's number of instances."""
    planned = plan(experiment, options)
    catalog = make_catalog(options, planned)
    names: set[str] = set()
    weights: dict[tuple[str, str | None, str], str] = {}
    for jobs in planned.values():
        for job in jobs:
            names |= datasets_read(job.config)
            check_weights(job.config, catalog, weights)
    for line in sorted(set(weights.values())):
        say(f"initial weights: {line}")
    catalog.check_read(names)
    say(f"checking {len(names)} dataset(s): {', '.join(sorted(names))}")
    available, skeletons = {}, {}
    for name, (report, images, skeleton) in catalog.validate(names, say).items():
        say("  " + report.summary())
        available[name], skeletons[name] = images, skeleton
        if sizes is not None:
            sizes[name] = report.kept
    catalog = check_images(catalog, names, say)
    for jobs in planned.values():
        for job in jobs:
            # A sigma set that does not fit the test skeleton fails here, not in a worker.
            resolve_sigmas(job.config.eval.sigmas, skeletons[job.config.data.test])
    for name, count in needed_sizes(planned, test_cap=False).items():
        if count > available.get(name, count):
            raise ValueError(
                f"a trial draws {count} images from dataset {name!r} but it has only "
                f"{available[name]} ({catalog.entry(name).kind} entry in {catalog.source})"
            )
    ResultsStore(options.results).check_writable()
    return with_data_digests(planned, catalog), catalog


def with_data_digests(planned: Planned, catalog: Catalog) -> Planned:
    """Each grid job with the digest of the exact instances it trains and tests on (the
    mixing is cheap; each dataset's annotations are read once here)."""
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
            if not job.sampled:
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
                  seen: dict[tuple[str, str | None, str], str] | None = None) -> None:
    """Every initial-weights reference a trial will load resolves now: the catalog's or an
    explicit file (a state dict that fits the backbone), an ``s3://`` object, or timm's hub
    weights (cached, or online). Each distinct source is checked once (``seen``)."""
    from orchestrator.data.weights import check_named_weights, check_weights_source

    model = config.model
    if model.init == "random" or is_reference(model.weights):
        return
    key = (model.backbone, model.weights, model.init)
    if seen is not None and key in seen:
        return
    if model.weights is None:
        line = check_weights_source(model.backbone, catalog)
    else:
        line = check_named_weights(model.weights, model.backbone, model.init)
    if seen is not None:
        seen[key] = line
