"""Ray's tracker callbacks, told what to log (see :mod:`orchestrator.run.trackers`).

Each subclass changes only what the tracker is given: Ray's callbacks log the raw Tune
config (which holds the data catalog) and every numeric result key including the echoed
config; ours log :func:`tracked_params` and :func:`report_metrics`, and add the final
metrics and the checkpoint URI when the trial ends. Imported only when ``--log`` asks for a
tracker, since it imports the tracker's package.
"""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.logger import TBXLoggerCallback

from orchestrator.run.trackers import (
    checkpoint_uri,
    final_metrics,
    missing_package,
    parse_specs,
    report_metrics,
    tracked_params,
)


def _step(trial: Any) -> int:
    return int((trial.last_result or {}).get("training_iteration", 0))


class MLflowCallback(MLflowLoggerCallback):
    """One MLflow run per trial."""

    def log_trial_start(self, trial: Any) -> None:
        # Ray's version logs trial.config as is; the run is created the same way.
        if trial not in self._trial_runs:
            tags = {**(self.tags or {}), "trial_name": str(trial)}
            run = self.mlflow_util.start_run(tags=tags, run_name=str(trial))
            self._trial_runs[trial] = run.info.run_id
            self.mlflow_util.log_params(run_id=self._trial_runs[trial],
                                        params_to_log=tracked_params(trial.config))

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        metrics = report_metrics(result) | {"training_iteration": result["training_iteration"]}
        super().log_trial_result(iteration, trial, metrics)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run_id = self._trial_runs[trial]
        self.mlflow_util.log_metrics(run_id=run_id, step=_step(trial),
                                     metrics_to_log=final_metrics(trial.last_result))
        uri = checkpoint_uri(trial)
        if uri:
            self.mlflow_util.log_params(run_id=run_id, params_to_log={"checkpoint_uri": uri})
        super().log_trial_end(trial, failed)  # log_params_on_trial_end is False: no raw config


class TensorBoardCallback(TBXLoggerCallback):
    """tensorboardX event files in each trial's folder; params as TensorBoard hparams."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        metrics = report_metrics(result) | {"training_iteration": result["training_iteration"]}
        super().log_trial_result(iteration, trial, metrics)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        writer = self._trial_writer.get(trial)
        if writer is not None:
            for key, value in final_metrics(trial.last_result).items():
                writer.add_scalar(key, value, global_step=_step(trial))
            uri = checkpoint_uri(trial)
            if uri:
                writer.add_text("checkpoint_uri", uri, global_step=_step(trial))
            if not trial.evaluated_params:  # Ray writes hparams only for searched params
                self._try_log_hparams(trial, self._trial_result.get(trial) or {})
        super().log_trial_end(trial, failed)

    def _try_log_hparams(self, trial: Any, result: dict[str, Any]) -> None:
        from tensorboardX.summary import hparams

        metrics = {k: v for k, v in result.items() if isinstance(v, int | float)}
        for summary in hparams(hparam_dict=tracked_params(trial.config), metric_dict=metrics):
            self._trial_writer[trial].file_writer.add_summary(summary)


class WandbCallback(WandbLoggerCallback):
    """One W&B run per trial (online, or offline under ``WANDB_MODE=offline``)."""

    # The end-of-trial item's checkpoint URI is text: W&B's logging actor puts these keys
    # into the run's config instead of dropping them as non-numeric.
    AUTO_CONFIG_KEYS = [*WandbLoggerCallback.AUTO_CONFIG_KEYS, "checkpoint_uri"]

    def _start_logging_actor(self, trial: Any, exclude_results: list[str],
                             **wandb_init_kwargs: Any) -> None:
        wandb_init_kwargs["config"] = tracked_params(trial.config)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        super().log_trial_result(iteration, trial, report_metrics(result))

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if trial in self._trial_queues:
            final: dict[str, Any] = dict(final_metrics(trial.last_result))
            uri = checkpoint_uri(trial)
            if uri:
                final["checkpoint_uri"] = uri
            super().log_trial_result(_step(trial), trial, final)
        super().log_trial_end(trial, failed)


def tracker_callbacks(specs: list[str], experiment: str) -> list[Any]:
    """Tune callbacks for ``--log`` values; the MLflow experiment / W&B project is
    ``experiment`` unless the spec names one (W&B: ``wandb=PROJECT``). The specs are those
    :func:`~orchestrator.run.trackers.check_trackers` resolved (``mlflow`` has its URI)."""
    parsed = parse_specs(specs)
    for name, _ in parsed:
        missing = missing_package(name)
        if missing:
            raise ValueError(missing)
    return [_callback(name, target, experiment) for name, target in parsed]


def _callback(name: str, target: str | None, experiment: str) -> Any:
    if name == "mlflow":
        return MLflowCallback(tracking_uri=target, experiment_name=experiment,
                              tags={"posetune.experiment": experiment})
    if name == "tensorboard":
        return TensorBoardCallback()
    return WandbCallback(project=target or experiment, group=experiment)
