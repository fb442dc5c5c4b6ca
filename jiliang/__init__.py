"""Jiliang (计量): smart supervision platform for legally controlled measuring instruments."""

__version__ = "0.1.0"
