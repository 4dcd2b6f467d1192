"""The `sac-train` console script. Light to import: it routes the stop signals to their
handlers (sac_cli.training.signals, standard library only) before the heavy imports (torch, Hydra,
Gymnasium) take their seconds, so that a SIGTERM during start-up is not lost."""

from __future__ import annotations


def sac_train() -> None:
    from sac_cli.training.signals import STOP

    STOP.install()
    from sac_cli.cli.train import main

    main()
