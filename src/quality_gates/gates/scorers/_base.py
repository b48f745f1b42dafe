"""What a scorer sees (an item and an answer) and what it returns."""

from __future__ import annotations

import abc
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from quality_gates.errors import UsageError

if TYPE_CHECKING:
    from quality_gates.gates.datasets import DatasetItem


class ScorerUnavailable(UsageError):
    """A scorer needs an optional package that is not installed (or cannot load offline)."""


@dataclass
class Answer:
    """One model answer to one item, with what it cost; `error_class` set when it failed."""

    text: str
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    finish_reason: str = "stop"
    error_class: str | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 1
    stored_at: float | None = None  # when a reused answer was first recorded
    # the function calls the model made: {"id", "name", "arguments"} (arguments as text)
    tool_calls: list[dict[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when no answer came back."""
        return self.error_class is not None


@dataclass
class ScoreResult:
    """One scorer's finding on one answer: pass/fail, a score in [0, 1], and why."""

    scorer: str
    passed: bool
    score: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As written in a results file."""
        out: dict[str, Any] = {
            "scorer": self.scorer,
            "passed": self.passed,
            "score": round(self.score, 6),
        }
        if self.detail:
            out["detail"] = self.detail
        if self.data:
            out["data"] = self.data
        return out


class Scorer(abc.ABC):
    """Checks an answer. `accuracy` scorers decide whether an item passed; `safety` scorers
    (profanity, PII, refusal) feed rates; `budget` scorers check latency and cost."""

    name: ClassVar[str]
    role: ClassVar[str] = "accuracy"

    @abc.abstractmethod
    async def score(self, item: DatasetItem, answer: Answer) -> ScoreResult:
        """Score one answer."""

    async def close(self) -> None:  # noqa: B027 - most scorers hold nothing
        """Release anything the scorer opened."""


_PUNCT_EDGES = re.compile(r"^[\s\"'`.,;:!?()\[\]{}]+|[\s\"'`.,;:!?()\[\]{}]+$")
_SPACES = re.compile(r"\s+")


def normalize(text: str, *, case_sensitive: bool = False) -> str:
    """Unicode-normalised, whitespace collapsed, edge punctuation and quotes dropped."""
    text = unicodedata.normalize("NFKC", text)
    text = _SPACES.sub(" ", _PUNCT_EDGES.sub("", text))
    return text if case_sensitive else text.casefold()


def require(spec: dict[str, Any], key: str, kind: type | tuple[type, ...], scorer: str) -> Any:
    """A field of an assertion, or a UsageError saying what is missing."""
    value = spec.get(key)
    if value is None or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UsageError(f"assertion {scorer!r} needs {key!r} ({names})")
    return value
