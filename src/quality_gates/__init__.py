"""quality-gates: gate what ships, watch what runs, fail over and roll back LLM services."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
