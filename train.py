"""Train an attnlab experiment: ``python train.py [group=option ...] [key=value ...]``.

Thin on purpose: everything lives in :mod:`attnlab.cli.train` (also the ``attnlab-train`` command).
"""

from attnlab.cli.train import main

if __name__ == "__main__":
    main()
