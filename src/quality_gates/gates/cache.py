"""A content-addressed store of model answers for offline evaluation.

The key is the SHA-256 of (provider, provider model, sampling parameters, messages, salt);
the entry is one small JSON file under `<dir>/<key[:2]>/<key>.json`, written atomically, so
concurrent runs share it safely and `rm -r` clears it. Only successful answers are stored.

Every fresh answer is written; an answer is read back only when the run asked for it
(`--reuse-answers`): a provider can change behind an unchanged model id, and a gate exists to
see that, so reuse is never a default. A run that reuses answers counts them and keeps the
oldest and newest time they were stored, which the verdict and the stored run report.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quality_gates.providers import ChatRequest


def request_key(provider: str, request: ChatRequest, salt: str = "") -> str:
    """The content address of a request (the provider's model name, not our alias)."""
    canonical = json.dumps(
        {
            "provider": provider,
            "model": request.model,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "messages": [[m.role, m.content] for m in request.messages],
            "salt": salt,
            # tools and response formats change the answer (None for plain requests, so
            # the keys of answers recorded before them stay the same)
            **({"extras": repr(request.extras)} if request.extras is not None else {}),
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ResponseCache:
    """Answers on disk by content address, with this run's hit and miss counts.

    `reuse` says whether `get` may answer at all; `put` always records (unless `record` is
    off), so that a later run can reuse today's answers when asked to."""

    directory: Path
    reuse: bool = False
    record: bool = True
    hits: int = 0
    misses: int = 0
    writes: int = 0
    oldest: float | None = None
    newest: float | None = None

    @property
    def enabled(self) -> bool:
        """Whether this run reads stored answers."""
        return self.reuse

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer when reuse was asked for, counting a hit or a miss."""
        if not self.reuse:
            return None
        try:
            data: dict[str, Any] = json.loads((self._path(key)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        stored = data.get("stored_at")
        if isinstance(stored, (int, float)):
            self.oldest = stored if self.oldest is None else min(self.oldest, stored)
            self.newest = stored if self.newest is None else max(self.newest, stored)
        return data

    def peek(self, key: str) -> bool:
        """Whether an answer is stored under `key` (for estimates; counts nothing)."""
        return self.reuse and self._path(key).exists()

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store an answer (atomic rename; a failed write only costs a future miss)."""
        if not self.record:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(value, handle, ensure_ascii=False)
            os.replace(tmp, path)
            self.writes += 1
        except OSError:
            pass

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    @property
    def hit_rate(self) -> float:
        """Hits over lookups in this run."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
