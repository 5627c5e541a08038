"""Plain ``nn.Module`` architectures (no Lightning): ``seq2seq`` (translation), ``detector`` (detection).

Import the submodule you need (``from attnlab.models.seq2seq import Seq2Seq``); this package file
stays import-free so that one task's model never pulls in the other's dependencies.
"""
