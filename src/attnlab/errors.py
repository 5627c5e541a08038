"""Errors that mean "the user asked for something that cannot work", with the fix in the message.

They are kept free of heavy imports so that ``train.py`` can raise them before torch is loaded,
and ``attnlab.cli.train`` prints them as one clear line instead of a traceback.
"""

from __future__ import annotations


class AttnlabError(Exception):
    """Base class: a problem in the user's input (config, paths, files), not a bug."""


class ConfigError(AttnlabError, ValueError):
    """An impossible or inconsistent configuration (e.g. a detection model with translation data)."""


class DataError(AttnlabError, ValueError):
    """Input data that is missing or malformed; the message names the file (and line or id)."""
