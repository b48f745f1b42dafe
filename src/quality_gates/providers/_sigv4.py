"""AWS Signature Version 4 for JSON POSTs, and where AWS credentials come from.

Signing is done here rather than through botocore's SigV4Auth because it sits on the
gateway's hot path: this costs tens of microseconds a request (the signing key is cached per
day), botocore's several hundred. tests/test_providers_bedrock.py checks that both produce
the same signature. Credentials come from the config's variables, else botocore's standard
chain (environment, shared files, SSO, container and instance roles).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class AwsCredentials:
    """One set of AWS keys (session token for temporary ones)."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class CredentialSource(Protocol):
    """Something that hands out current credentials (botocore's refresh them)."""

    def current(self) -> AwsCredentials: ...


@dataclass(frozen=True)
class StaticCredentials:
    """Keys given once (from the config's variables or a simulator)."""

    credentials: AwsCredentials

    def current(self) -> AwsCredentials:
        """The keys."""
        return self.credentials


class BotocoreCredentials:
    """botocore's resolved credentials; temporary ones refresh themselves."""

    def __init__(self, resolved: Any) -> None:
        self._resolved = resolved

    def current(self) -> AwsCredentials:
        """Frozen current keys (a refresh, when due, happens here)."""
        frozen = self._resolved.get_frozen_credentials()
        return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)


async def standard_chain(profile: str | None) -> CredentialSource | None:
    """botocore's credential chain, resolved off the event loop (it may read files or call
    the instance metadata service); None when it finds nothing."""

    def resolve() -> Any:
        import botocore.session

        session = botocore.session.Session(profile=profile)
        return session.get_credentials()

    resolved = await asyncio.to_thread(resolve)
    return BotocoreCredentials(resolved) if resolved is not None else None


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def canonical_uri(path: str) -> str:
    """The path as SigV4 signs it for every service but S3: each byte of the (already
    percent-encoded) path encoded once more."""
    return quote(path or "/", safe="/~")


class SigV4Signer:
    """Signs requests for one service and region; the day's signing key is cached."""

    def __init__(self, service: str, region: str) -> None:
        self.service = service
        self.region = region
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, key)

    def _signing_key(self, secret: str, date: str) -> bytes:
        if self._key is None or self._key[0] != secret or self._key[1] != date:
            key = _hmac(f"AWS4{secret}".encode(), date)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._key = (secret, date, key)
        return self._key[2]

    def sign(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        credentials: AwsCredentials,
        now: datetime.datetime | None = None,
    ) -> dict[str, str]:
        """`headers` plus host, x-amz-date, x-amz-security-token and Authorization."""
        moment = now or datetime.datetime.now(datetime.UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        parts = urlsplit(url)
        signed = {k.lower(): v for k, v in headers.items()}
        signed["host"] = parts.netloc
        signed["x-amz-date"] = amz_date
        if credentials.session_token:
            signed["x-amz-security-token"] = credentials.session_token
        names = sorted(signed)
        canonical_headers = "".join(f"{n}:{' '.join(signed[n].split())}\n" for n in names)
        signed_headers = ";".join(names)
        query = "&".join(
            sorted(
                f"{quote(unquote(k), safe='-_.~')}={quote(unquote(v), safe='-_.~')}"
                for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
            )
        )
        canonical_request = "\n".join(
            (
                method,
                canonical_uri(parts.path),
                query,
                canonical_headers,
                signed_headers,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            (ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        key = self._signing_key(credentials.secret_access_key, date)
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        signed["authorization"] = (
            f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return signed
