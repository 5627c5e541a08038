"""Lightning callbacks that are not tied to one task."""

from attnlab.callbacks.media import MediaLogger

__all__ = ["MediaLogger"]
