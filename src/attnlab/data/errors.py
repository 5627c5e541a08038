"""Data errors live in :mod:`attnlab.errors`; re-exported here for the data modules."""

from attnlab.errors import DataError

__all__ = ["DataError"]
