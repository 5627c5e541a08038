"""attnlab: one attention block, swept across translation and detection."""

__version__ = "0.1.0"
