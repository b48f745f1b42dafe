"""Reference-free checks of prompts and answers: prompt injection, PII, refusals, profanity.

Prompt injection is judged twice: by patterns of the well-known attacks ("ignore previous
instructions", "reveal your system prompt", DAN, developer mode, ...) and by a small
multinomial naive Bayes over word uni- and bigrams, trained at first use on the 80 labelled
prompts shipped in `data/injection-examples.jsonl` (40 attacks, 40 ordinary prompts, some of
them with the same words in a harmless sense). The classifier catches paraphrases the
patterns miss; with so little training data it is a tripwire for `monitor --security-mode`,
not a guarantee: put a real moderation model in front of anything that matters.

PII uses presidio's pattern recognizers when the `safety` extra is installed, else the
gateway's redaction patterns (e-mail, phone, card, IBAN, SSN, IP); profanity uses
alt-profanity-check when installed (it measures profanity and insults, not threats).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

INJECTION_PATTERNS = (
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:previous|prior|above|earlier|all|your)"
    r"\b.{0,20}\b(?:instructions?|rules|directions|messages|context|guidelines|policies)",
    r"\b(?:reveal|print|show|repeat|output|dump|leak|tell me)\b.{0,40}\b(?:system|hidden|"
    r"initial|secret|confidential|original)\b.{0,12}\b(?:prompt|instructions?|message|rules)",
    r"\b(?:developer|maintenance|god|unrestricted|jailbreak(?:en)?|DAN)\s+mode\b",
    r"\bdo anything now\b|\byou are now DAN\b|\bjailbr(?:eak|oken)\b",
    r"\b(?:no|without)\s+(?:content\s+)?(?:restrictions|filters?|guidelines|policy|policies)\b",
    r"\b(?:bypass|disable|turn off)\b.{0,20}\b(?:filters?|guardrails|safety|moderation)\b",
)
_INJECTION = re.compile("|".join(f"(?:{p})" for p in INJECTION_PATTERNS), re.I | re.S)
_WORD = re.compile(r"[a-z']+")
CLASSIFIER_THRESHOLD = 0.8
EXAMPLES = "injection-examples.jsonl"


def _features(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]


@dataclass
class NaiveBayes:
    """Multinomial naive Bayes with Laplace smoothing over two classes."""

    counts: tuple[Counter[str], Counter[str]]
    totals: tuple[int, int]
    priors: tuple[float, float]
    vocabulary: int

    @classmethod
    def train(cls, examples: list[tuple[str, int]]) -> NaiveBayes:
        """Fit on (text, label) pairs, label 1 = injection."""
        counts: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
        docs = [0, 0]
        for text, label in examples:
            counts[label].update(_features(text))
            docs[label] += 1
        vocabulary = len(set(counts[0]) | set(counts[1]))
        total = sum(docs)
        return cls(
            counts,
            (sum(counts[0].values()), sum(counts[1].values())),
            (docs[0] / total, docs[1] / total),
            vocabulary,
        )

    def probability(self, text: str) -> float:
        """P(injection | text)."""
        logs = []
        for label in (0, 1):
            value = math.log(self.priors[label])
            denominator = self.totals[label] + self.vocabulary
            for feature in _features(text):
                value += math.log((self.counts[label][feature] + 1) / denominator)
            logs.append(value)
        top = max(logs)
        odds = [math.exp(v - top) for v in logs]
        return odds[1] / (odds[0] + odds[1])


@lru_cache(maxsize=1)
def classifier() -> NaiveBayes:
    """The injection classifier, trained once from the shipped examples."""
    path = resources.files("quality_gates") / "data" / EXAMPLES
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return NaiveBayes.train([(r["text"], int(r["label"])) for r in rows])


@dataclass(frozen=True)
class InjectionVerdict:
    """Whether a prompt looks like an injection attempt, and why."""

    flagged: bool
    pattern: str | None
    probability: float


def injection(text: str) -> InjectionVerdict:
    """Patterns first, then the classifier."""
    match = _INJECTION.search(text)
    probability = classifier().probability(text) if text.strip() else 0.0
    return InjectionVerdict(
        match is not None or probability >= CLASSIFIER_THRESHOLD,
        match.group(0)[:80] if match else None,
        probability,
    )


_PII_FALLBACK = ("EMAIL", "IBAN", "CARD", "SSN", "PHONE", "IP")


def pii_kinds(text: str) -> list[str]:
    """Kinds of personal data found in `text` (presidio if installed, else patterns)."""
    if not text:
        return []
    try:
        from quality_gates.gates.scorers._models import find_pii

        return sorted({kind for kind, _ in find_pii(text)})
    except Exception:  # the safety extra is optional: fall back to the redaction patterns
        from quality_gates.gateway._redact import PATTERNS

        return sorted({kind for kind, p in PATTERNS if kind in _PII_FALLBACK and p.search(text)})


def profanity(texts: list[str]) -> list[float] | None:
    """Profanity probabilities of `texts` in one batch, None when the classifier is absent."""
    try:
        from quality_gates.gates.scorers._models import _load_profanity, _once

        predict = _once("profanity", _load_profanity)
    except Exception:
        return None
    return [float(p) for p in predict(texts)] if texts else []
