"""labelmill: annotate a corpus with a teacher LLM under a budget, then distil a student."""

from labelmill._version import __version__

__all__ = ["__version__"]
