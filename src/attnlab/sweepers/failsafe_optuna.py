"""Optuna sweeps that record a failed trial as failed and go on.

hydra-optuna-sweeper 1.3 tells Optuna each job's return value. A job that failed returns nan
(``attnlab.cli.train.run_job`` records the error and returns nan so that a sweep goes on), and the
plugin's own error path then calls ``study.tell(state=FAIL, values=[nan])``, which Optuna refuses
("Values were told ...") and the whole study crashes. This sweeper puts a thin wrapper around the
plugin's launcher: a job whose value is nan or missing comes back to the plugin as a *failed* job,
which the plugin tells Optuna as ``TrialState.FAIL`` with no value, and its ``metrics.json`` says
why. With ``max_failure_rate: 1.0`` (our configs) the study then goes on.

``failed_trials`` says what a resumed study (the same command again, same SQLite storage) does
with the trials that failed before: ``skip`` (leave them failed; the sampler proposes new ones) or
``retry`` (run each failed trial's parameters once more, first, within this run's ``n_trials``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper

log = logging.getLogger(__name__)

FAILED_TRIALS = ("skip", "retry")
RETRIED_ATTR = "attnlab_retried_trials"


class TrialFailed(RuntimeError):
    """A job that ended without a finite value for the study."""


def _job_dir(ret: JobReturn) -> Path | None:
    try:
        return Path(str(ret.hydra_cfg.hydra.runtime.output_dir))  # type: ignore[union-attr]  # None: caught below
    except Exception:  # noqa: BLE001 - a JobReturn from another launcher may lack it
        return None


def fail_jobs_without_value(returns: Sequence[JobReturn]) -> list[JobReturn]:
    """Turn each completed job whose value is nan or missing into a failed job (in place), with
    the reason from, and written to, its ``metrics.json``; return the jobs that failed that way."""
    from attnlab.runs.attempts import amend_record, read_record

    failed = []
    for ret in returns:
        if ret.status != JobStatus.COMPLETED:
            continue
        value = ret._return_value
        try:
            finite = value is not None and math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if finite:
            continue
        job_dir = _job_dir(ret)
        record = (read_record(job_dir) if job_dir else None) or {}
        if record.get("status") == "failed" and record.get("error"):
            reason = f"the job failed: {record['error']}"
        else:
            monitor = (record.get("monitor") or {}).get("metric", "the monitored metric")
            reason = f"{monitor} is {value!r} (nan or missing): nothing for the study to compare"
            if job_dir:
                amend_record(job_dir, status="failed", error=f"{reason}; recorded as a failed Optuna trial")
        ret.status = JobStatus.FAILED
        ret._return_value = TrialFailed(f"{ret.overrides}: {reason}")
        failed.append(ret)
    return failed


class _FailureAwareLauncher:
    """The plugin's launcher, with :func:`fail_jobs_without_value` applied to what it returns."""

    def __init__(self, launcher: Any) -> None:
        self._launcher = launcher

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns = self._launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        for ret in fail_jobs_without_value(returns):
            log.warning("Trial failed, recorded as FAIL in the study; the study goes on: %s", ret._return_value)
        return returns

    def __getattr__(self, name: str) -> Any:
        return getattr(self._launcher, name)


def enqueue_failed_trials(storage: Any, study_name: str | None) -> int:
    """Queue the parameters of every failed trial not retried before; return how many."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet: nothing failed before
        return 0
    retried = set(study.user_attrs.get(RETRIED_ATTR, []))
    failed = [
        t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)) if t.number not in retried
    ]
    for trial in failed:
        study.enqueue_trial(dict(trial.params))
    if failed:
        study.set_user_attr(RETRIED_ATTR, sorted(retried | {t.number for t in failed}))
        log.info("failed_trials=retry: trials %s run again first", [t.number for t in failed])
    return len(failed)


def _completed_trials(impl: Any) -> int | None:
    """How many trials of the plugin's study completed (None when there is no storage to ask)."""
    import optuna

    if not impl.storage:
        return None
    study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


class FailSafeOptunaSweeper(Sweeper):
    """hydra-optuna-sweeper's sweeper, recording failed and nan trials as FAIL (see the module doc).

    It holds the plugin's sweeper rather than subclassing it, so that Hydra's plugin scan, which
    imports this module at every start, does not import the Optuna plugin a second time.
    """

    def __init__(self, failed_trials: str = "skip", **kwargs: Any) -> None:
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        if failed_trials not in FAILED_TRIALS:
            raise ValueError(f"hydra.sweeper.failed_trials={failed_trials!r}: use one of {', '.join(FAILED_TRIALS)}")
        self.optuna = OptunaSweeper(**kwargs)
        self.failed_trials = failed_trials

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.optuna.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        # A wrapper, not a Launcher subclass: everything but launch() goes to the plugin's own launcher.
        self.optuna.sweeper.launcher = _FailureAwareLauncher(self.optuna.sweeper.launcher)  # type: ignore[assignment]

    def sweep(self, arguments: list[str]) -> Any:
        impl = self.optuna.sweeper
        if self.failed_trials == "retry" and impl.storage:
            enqueue_failed_trials(impl.storage, impl.study_name)
        try:
            return self.optuna.sweep(arguments)
        except ValueError as exc:
            # The plugin asks for the best trial at the end, which Optuna refuses when none completed
            # ("No trials are completed yet" in memory, "Record does not exist" from SQLite).
            if _completed_trials(impl) != 0 and "No trials are completed yet" not in str(exc):
                raise
            log.error(
                "No trial of study %r completed: every trial failed (see each job's metrics.json).", impl.study_name
            )
            return None
