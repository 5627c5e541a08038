"""A run's bookkeeping: its folder, its record (``metrics.json``), its checkpoints read safely, and
what it leaves besides checkpoints (its test outputs).

Light on purpose (no torch at import): ``train.py --help`` and ``--cfg job`` import from here.
"""
