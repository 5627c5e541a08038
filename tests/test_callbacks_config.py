"""Every callback a run gets comes from ``conf/callbacks/``: the default list is complete, ``callbacks=none``
keeps those every run needs, and a real run's trainer holds exactly what the config lists."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import pytorch_lightning as pl

import attnlab.callbacks
from attnlab.cli.instantiate import instantiate_callbacks

from .helpers import TINY_TRANSLATION, compose_train

# What a run's records and resumes depend on: present whatever `callbacks=` says.
ALWAYS = {
    "CostRecorder",
    "TestOutputsWriter",
    "ConfigInCheckpoint",
    "CheckpointOnInterrupt",
    "ExactResume",
    "ScheduleFollowsBudget",
    "StopAfterEpochs",
}
# Lightning's own, listed in conf/callbacks/default.yaml.
LIGHTNING = {"ModelCheckpoint", "EarlyStopping", "RichProgressBar", "LearningRateMonitor"}
SUPPLIED = {"config": {"model": {"_target_": "attnlab.tasks.translation.TranslationTask"}}, "choices": {"model": "m"}}


def attnlab_callback_classes() -> set[str]:
    """Every ``pl.Callback`` class defined in a module of :mod:`attnlab.callbacks`."""
    found = set()
    for info in pkgutil.iter_modules(attnlab.callbacks.__path__, "attnlab.callbacks."):
        module = importlib.import_module(info.name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, pl.Callback) and obj.__module__ == module.__name__:
                found.add(name)
    return found


def built(option: str, tmp_path: Path) -> list[pl.Callback]:
    cfg = compose_train([f"callbacks={option}"], tmp_path)
    return instantiate_callbacks(cfg.callbacks, SUPPLIED)


def test_the_default_list_holds_every_attnlab_callback(tmp_path: Path) -> None:
    names = [type(cb).__name__ for cb in built("default", tmp_path)]
    assert len(names) == len(set(names)) + 1, names  # ModelCheckpoint twice: best and last
    missing = attnlab_callback_classes() - set(names)
    assert not missing, (
        f"callbacks defined in attnlab.callbacks but not listed in conf/callbacks/default.yaml: {missing}"
    )
    assert set(names) == attnlab_callback_classes() | LIGHTNING


def test_none_keeps_the_callbacks_every_run_needs(tmp_path: Path) -> None:
    assert {type(cb).__name__ for cb in built("none", tmp_path)} == ALWAYS


def test_values_left_to_the_run_reach_the_constructor_as_given(tmp_path: Path) -> None:
    """``config: ???`` is the run's resolved config, passed as a plain dict: Hydra would otherwise
    instantiate the ``_target_``s inside it and hand over config nodes."""
    (saver,) = [cb for cb in built("none", tmp_path) if type(cb).__name__ == "ConfigInCheckpoint"]
    assert saver.config is SUPPLIED["config"] and saver.choices is SUPPLIED["choices"]


def test_stop_after_epochs_is_listed_and_off_by_default(tmp_path: Path) -> None:
    (stop,) = [cb for cb in built("none", tmp_path) if type(cb).__name__ == "StopAfterEpochs"]
    assert stop.epochs is None
    cfg = compose_train(["stop_after_epochs=2"], tmp_path)
    (stop,) = [cb for cb in instantiate_callbacks(cfg.callbacks, SUPPLIED) if type(cb).__name__ == "StopAfterEpochs"]
    assert stop.epochs == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_a_run_gets_exactly_the_callbacks_the_config_lists(tmp_path: Path) -> None:
    """No callback is added behind the config's back: with no logger (so none steps aside), the
    trainer's attnlab and Lightning callbacks are those ``callbacks=none`` lists."""
    from attnlab.cli.training import TrainingRun

    cfg = compose_train(["callbacks=none", "logger=[]", "extras.print_config=false", *TINY_TRANSLATION], tmp_path)
    job = TrainingRun(cfg)
    job.start()
    job.build()
    ours = {type(cb).__name__ for cb in job.trainer.callbacks if type(cb).__module__.startswith("attnlab.")}
    assert ours == ALWAYS
    saver = next(cb for cb in job.trainer.callbacks if type(cb).__name__ == "ConfigInCheckpoint")
    assert saver.config["model"]["_target_"] == cfg.model._target_ and saver.choices == job.run.choices
