"""Redaction of prompt and answer text before it is stored (only when text storage is on).

Pattern-based, so it is fast and offline: e-mail addresses, phone numbers, payment card
numbers, IBANs, US social security numbers, IP addresses, and anything that looks like a
credential (API keys, bearer tokens, AWS key ids). Each match becomes `[KIND]`.
"""

from __future__ import annotations

import re

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("SECRET", re.compile(r"\b(?:sk|pk|rk|qg|xox[abp])-[A-Za-z0-9_\-]{12,}")),
    ("SECRET", re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    ("SECRET", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/]{12,}=*")),
    ("SECRET", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b")),
    ("CARD", re.compile(r"\b(?:\d[ -]?){13,19}\b")),
    ("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("PHONE", re.compile(r"(?<!\w)\+?\d{1,3}[ .\-]?\(?\d{2,4}\)?[ .\-]?\d{3,4}[ .\-]?\d{3,4}\b")),
    ("IP", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
)


def redact(text: str, max_chars: int | None = None) -> str:
    """`text` with personal data and secrets replaced by `[KIND]`, cut to `max_chars`."""
    for kind, pattern in PATTERNS:
        text = pattern.sub(f"[{kind}]", text)
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars] + "…"
    return text
