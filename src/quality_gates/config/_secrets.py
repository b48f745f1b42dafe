"""Environment references (`${VAR}`, `${VAR:-default}`) and plain-text secret detection.

Kept free of pydantic so the store and fast commands can use it without the models.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from quality_gates.errors import CredentialMissing

ENV_VAR_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Shapes of real credentials; a value matching one in the file is a plain-text secret.
_SECRET_SHAPES = (
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"sk-(ant-|proj-)?[A-Za-z0-9_-]{16,}"),  # OpenAI / Anthropic keys
    re.compile(r"AIza[0-9A-Za-z_-]{30,}"),  # Google API key
    re.compile(r"hooks\.slack\.com/services/[A-Za-z0-9/]+"),
    re.compile(r"xox[abprs]-[A-Za-z0-9-]{10,}"),  # Slack tokens
    re.compile(r"qg_[A-Za-z0-9_-]{20,}"),  # our own gateway keys
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),  # a password inside a URL
)


def is_env_reference(value: str) -> bool:
    """True when the whole value is `${VAR}` (optionally `${VAR:-default}`)."""
    return bool(_ENV_REF.fullmatch(value.strip()))


def looks_like_secret(value: str) -> bool:
    """A heuristic for credentials written in plain text; `${VAR}` references never are."""
    text = _ENV_REF.sub("", value)
    if any(shape.search(text) for shape in _SECRET_SHAPES):
        return True
    # A long token of mixed letters and digits with no spaces reads like a key.
    token = text.strip()
    return (
        len(token) >= 32
        and " " not in token
        and "/" not in token
        and any(c.isdigit() for c in token)
        and any(c.isupper() for c in token)
        and any(c.islower() for c in token)
    )


def resolve_env(value: str, *, needed_by: str, environ: dict[str, str] | None = None) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset variable without a default raises."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise CredentialMissing(name, needed_by=needed_by)

    return _ENV_REF.sub(substitute, value)


def env_variables_in(value: str) -> list[str]:
    """Names of the variables `value` refers to."""
    return [m.group(1) for m in _ENV_REF.finditer(value)]


SECRETS_FILE = Path(".quality-gates") / "secrets.env"
_SECRET_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def secrets_path(config_dir: Path) -> Path:
    """Where the secrets file of the config in `config_dir` lives."""
    return config_dir / SECRETS_FILE


def read_secrets(path: Path) -> dict[str, str]:
    """NAME -> value from a secrets file (empty when there is none)."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _SECRET_LINE.match(line)
        if match and not line.lstrip().startswith("#"):
            values[match.group(1)] = match.group(2).strip()
    return values


def load_secrets(config_dir: Path) -> list[str]:
    """Put the secrets file's variables into the environment (set ones win); their names."""
    loaded = []
    for name, value in read_secrets(secrets_path(config_dir)).items():
        if name not in os.environ:
            os.environ[name] = value
            loaded.append(name)
    return loaded
