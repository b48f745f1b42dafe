"""'Did you mean ...?': the nearest known name for a misspelt or shortened one."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name `name` most likely meant: a unique prefix match, else the closest."""
    options = list(known)
    prefixed = [k for k in options if k.startswith(name) and name]
    if len(prefixed) == 1:
        return prefixed[0]
    close = get_close_matches(name, options, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` or an empty string."""
    match = nearest(name, known)
    return f"; did you mean {match!r}?" if match else ""
