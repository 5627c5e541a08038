"""LightningModules, one per task: losses, metrics, optimisers and media logging, no architecture code.

Import the submodule you need (``from attnlab.tasks.translation import TranslationTask``); this package
file stays import-free so ``train.py --help`` and the detection task do not pay for translation imports.
"""
