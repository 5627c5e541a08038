"""Score a checkpoint: ``python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt``.

Thin on purpose: everything lives in :mod:`attnlab.cli.eval` (also the ``attnlab-eval`` command).
"""

from attnlab.cli.eval import main

if __name__ == "__main__":
    main()
