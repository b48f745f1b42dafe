"""What a simulated model says: answer-key items right or wrong, everything else a
deterministic generic answer; tokens counted the way real tokenizers roughly do.

The answer key is a set of dataset items (`input` and `expected`, the dataset format of the
gates) looked up by the normalised last user message: lower case, whitespace collapsed. Items
come from the file named by `faults.answer_key` and from `PUT /_sim/answers`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

INPUT_FIELDS = ("input", "prompt", "question")
EXPECTED_FIELDS = ("expected", "ideal", "answer", "expected_output")
WRONG_FIELDS = ("wrong", "wrong_answer", "distractor")
_PIECE = re.compile(r"\s*\S{1,5}|\s+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_NORMAL = NormalDist()
_Z95 = _NORMAL.inv_cdf(0.95)
_FLIPS = {"yes": "no", "no": "yes", "true": "false", "false": "true"}
_LETTERS = "ABCDE"
_VOCABULARY = tuple(
    " ".join(
        (
            "the system answer model provider request latency service team data result value",
            "response question context policy change update review process quality metric",
            "error rate user traffic window check report record cost token budget region",
            "deployment is are was can will should may often usually clearly directly quickly",
            "carefully and or but so because while when if then also however therefore",
            "instead a an this that each every most some many few new stable current previous",
            "simple important useful reliable expected measured recent typical higher lower",
            "better explain describe compare consider reduce improve depend follow return",
            "handle keep",
        )
    ).split()
)
TOXIC_SENTENCES = (
    "What a stupid fucking question, you idiot.",
    "Shut up, you worthless moron, nobody cares.",
    "Only a damn fool would ask this crap.",
)
PII_SENTENCES = (
    "You can reach Jane Doe at jane.doe@example.com or +1 212-555-0187.",
    "Contact John Smith at john.smith@example.org, phone (415) 555-0142.",
)


def normalise(text: str) -> str:
    """The answer key's lookup form: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


def tokens(text: str) -> list[str]:
    """Text split into token-sized pieces (~1.3 per English word, like BPE tokenizers);
    joined, they give the text back."""
    return _PIECE.findall(text)


def count_tokens(text: str) -> int:
    """How many tokens `text` is."""
    return len(_PIECE.findall(text)) if text else 0


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by `parts` (the same on every run and machine)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def lognormal_quantile(p50: float, p95: float, u: float) -> float:
    """The `u` quantile of the lognormal with this median and 95th percentile."""
    if p50 <= 0:
        return 0.0
    if p95 <= p50:
        return p50
    u = min(max(u, 1e-12), 1 - 1e-12)
    sigma = (math.log(p95) - math.log(p50)) / _Z95
    return p50 * math.exp(sigma * _NORMAL.inv_cdf(u))


@dataclass(frozen=True)
class KeyItem:
    """One item with a known right answer (and optionally a known wrong one)."""

    expected: str
    wrong: str | None = None


def _text_of(value: Any) -> str | None:
    """An item's input: a string, or the last user message of a chat."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for message in reversed(value):
            if isinstance(message, dict) and message.get("role", "user") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else None
    return None


def _first(record: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((record[n] for n in names if record.get(n) not in (None, "")), None)


def parse_items(records: Iterable[Any]) -> list[tuple[str, KeyItem]]:
    """(input, item) for every record with an input and an expected answer."""
    items = []
    for record in records:
        if not isinstance(record, dict):
            continue
        text = _text_of(_first(record, INPUT_FIELDS))
        expected = _first(record, EXPECTED_FIELDS)
        if text is None or expected is None:
            continue
        if isinstance(expected, list):  # several acceptable answers: the first is given
            expected = expected[0] if expected else None
            if expected is None:
                continue
        wrong = _first(record, WRONG_FIELDS)
        items.append((text, KeyItem(str(expected), str(wrong) if wrong is not None else None)))
    return items


def read_records(path: Path) -> list[Any]:
    """Records of a JSON, JSONL, CSV or YAML dataset file."""
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if suffix == ".csv":
        try:
            return list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise ValueError(str(exc)) from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
    else:
        data = json.loads(text)
    if isinstance(data, dict):
        data = data.get("items", [])
    return data if isinstance(data, list) else []


class AnswerKey:
    """Items by normalised input; lookups are one dict access."""

    def __init__(self) -> None:
        self._items: dict[str, KeyItem] = {}
        self._answers: list[str] = []
        self.sources: list[str] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[tuple[str, KeyItem]]) -> int:
        """Add or replace items; returns how many were given."""
        count = 0
        for text, item in items:
            self._items[normalise(text)] = item
            count += 1
        self._answers = sorted({item.expected for item in self._items.values()})
        return count

    def load(self, path: Path) -> int:
        """Add the items of a dataset file; ValueError names the file when it is unreadable."""
        try:
            records = read_records(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"answer key {path}: cannot read it ({exc})") from None
        except ValueError as exc:  # JSON and YAML errors
            raise ValueError(f"answer key {path}: not a dataset ({exc})") from None
        added = self.add(parse_items(records))
        self.sources.append(str(path))
        return added

    def clear(self) -> None:
        """Forget every item."""
        self._items.clear()
        self._answers = []
        self.sources = []

    def get(self, normalised_input: str) -> KeyItem | None:
        """The item for an input already normalised."""
        return self._items.get(normalised_input)

    def wrong_answer(self, item: KeyItem, salt: str) -> str:
        """A plausible wrong answer: the item's own, a changed number, a flipped yes/no or
        letter, or another item's answer."""
        if item.wrong:
            return item.wrong
        expected = item.expected.strip()
        pick = unit_hash(salt, expected)
        flipped = _FLIPS.get(expected.lower())
        if flipped:
            return flipped.capitalize() if expected[:1].isupper() else flipped
        if len(expected) == 1 and expected.upper() in _LETTERS:
            others = [c for c in _LETTERS[:4] if c != expected.upper()]
            return others[int(pick * len(others))]
        number = _NUMBER.search(expected)
        if number:
            value = float(number.group())
            delta = 1 + int(pick * 9)
            changed = value + delta if "." not in number.group() else round(value * 1.1 + 0.1, 2)
            shown = str(int(changed)) if "." not in number.group() else str(changed)
            return expected[: number.start()] + shown + expected[number.end() :]
        others = [a for a in self._answers if a.strip().lower() != expected.lower()]
        if others:
            return others[int(pick * len(others))]
        return f"I believe it is not {expected}."


def _sentence_pool(size: int = 512) -> tuple[tuple[str, ...], ...]:
    """Sentences made once from the vocabulary, each already split into tokens (with the
    leading space it has inside an answer): generic answers are picked from these, so
    answering costs microseconds, not a text generation."""
    rng = random.Random(20240601)
    pool = []
    for _ in range(size):
        words = rng.choices(_VOCABULARY, k=rng.randint(6, 14))
        pool.append(tuple(tokens(" " + " ".join(words).capitalize() + ".")))
    return tuple(pool)


_SENTENCES = _sentence_pool()


def generic_answer(model: str, prompt: str, p50: int, p95: int) -> list[str]:
    """The tokens of a fluent-looking answer of lognormal length, the same for the same
    model and prompt."""
    state = zlib.crc32(f"{model}\x1f{prompt}".encode())
    target = max(1, round(lognormal_quantile(p50, p95, (state + 0.5) / 2.0**32)))
    pieces: list[str] = []
    while len(pieces) < target:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF  # a small LCG walks the pool
        pieces.extend(_SENTENCES[state % len(_SENTENCES)])
    pieces[0] = pieces[0].lstrip()
    return pieces


def message_tokens(messages: Iterable[tuple[str, str]]) -> int:
    """Prompt tokens as chat models count them: about four characters per token of content,
    plus a few per message for the chat template."""
    return 3 + sum((len(text) + 3) // 4 + 4 for _role, text in messages)
