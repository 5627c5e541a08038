"""Hydra sweepers with attnlab's failure handling (the classes Hydra loads live in ``hydra_plugins``)."""
