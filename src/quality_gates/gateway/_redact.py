"""Redaction of prompt and answer text before it is stored (only when text storage is on).

Two layers, offline. The project's own patterns: e-mail addresses, phone numbers, payment
card numbers, IBANs, US social security numbers, IP addresses, and credentials (PEM private
key blocks, JWTs, `password=...` and other secret-named key/value pairs, AWS key ids and
secret keys, provider API keys, bearer tokens, and generic high-entropy tokens). Then, when
`detect-secrets` (Yelp, the `safety` extra) is installed, its maintained detectors (cloud and
SaaS token formats, private keys, basic-auth URLs, ...) on each line of what is left. Each
match becomes `[KIND]`; a secret-named key keeps its name (`password=[SECRET]`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import cache
from typing import Any

# A secret-looking value after one of these names, in key=value, key: value or "key": "value".
_SECRET_NAMES = (
    r"password|passwd|pwd|pass|secret|secret[_-]?key|client[_-]?secret|token|"
    r"access[_-]?token|refresh[_-]?token|api[_-]?key|apikey|access[_-]?key|"
    r"aws[_-]?secret[_-]?access[_-]?key|private[_-]?key|auth|credentials?"
)

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "SECRET",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|$)",
            re.DOTALL,
        ),
    ),
    ("SECRET", re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")),
    ("SECRET", re.compile(r"\b(?:sk|pk|rk|qg|xox[abp])-[A-Za-z0-9_\-]{12,}")),
    ("SECRET", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("SECRET", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/]{12,}=*")),
    ("SECRET", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b")),
    ("CARD", re.compile(r"\b(?:\d[ -]?){13,19}\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("PHONE", re.compile(r"(?<!\w)\+?\d{1,3}[ .\-]?\(?\d{2,4}\)?[ .\-]?\d{3,4}[ .\-]?\d{3,4}\b")),
    ("IP", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
)
_KEY_VALUE = re.compile(rf"(?i)(\b(?:{_SECRET_NAMES})\b[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{{4,}})")
# Candidates for the entropy test: long runs of token characters.
_TOKEN = re.compile(r"(?<![A-Za-z0-9_\-+/=])[A-Za-z0-9_\-+/=]{20,}(?![A-Za-z0-9_\-+/=])")
MIN_TOKEN_ENTROPY = 3.5  # bits per character; English words score well below it at length 20+


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


_PART = re.compile(r"[-_/.+=]+")


def _high_entropy(match: re.Match[str]) -> str:
    token = match.group(0)
    parts = [p for p in _PART.split(token) if p]
    if all(p.isdigit() or (p.isalpha() and (p.islower() or p.istitle())) for p in parts):
        return token  # words and numbers joined (a model id, a path, a slug): not a secret
    has_digit = any(c.isdigit() for c in token)
    mixed = any(c.isupper() for c in token) and any(c.islower() for c in token)
    if (has_digit or mixed) and _entropy(token) >= MIN_TOKEN_ENTROPY and not token.isalpha():
        return "[SECRET]"
    return token


@cache
def _detectors() -> tuple[Any, ...]:
    """detect-secrets' plugins with their default settings, or none if it is not installed."""
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.settings import default_settings
    except ImportError:
        return ()
    with default_settings():
        classes: list[Any] = list(get_mapping_from_secret_type_to_class().values())
        return tuple(cls() for cls in classes)


def _maintained(text: str) -> str:
    detectors = _detectors()
    if not detectors:
        return text
    found: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        for detector in detectors:
            for secret in detector.analyze_line(filename="text", line=line, line_number=number):
                value = secret.secret_value
                if value and len(value) >= 8 and "[" not in value:
                    found.add(value)
    for value in sorted(found, key=len, reverse=True):
        text = text.replace(value, "[SECRET]")
    return text


def redact(text: str, max_chars: int | None = None) -> str:
    """`text` with personal data and secrets replaced by `[KIND]`, cut to `max_chars`."""
    text = PATTERNS[0][1].sub("[SECRET]", text)  # PEM blocks first: they span lines
    text = _KEY_VALUE.sub(r"\1[SECRET]", text)
    for kind, pattern in PATTERNS[1:]:
        text = pattern.sub(f"[{kind}]", text)
    text = _TOKEN.sub(_high_entropy, text)
    text = _maintained(text)
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars] + "…"
    return text
