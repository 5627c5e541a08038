"""Hydra loads sweepers only from the ``hydra_plugins`` package; the logic is in
:mod:`attnlab.sweepers.failsafe_optuna`. Selected with ``override /hydra/sweeper: optuna_failsafe``."""

from attnlab.sweepers.failsafe_optuna import FailSafeOptunaSweeper


class AttnlabOptunaSweeper(FailSafeOptunaSweeper):
    """Optuna sweeper that records failed and nan trials as ``TrialState.FAIL`` and goes on."""
