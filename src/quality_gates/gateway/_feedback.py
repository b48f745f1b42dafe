"""`POST /v1/feedback`: a 1-5 score for a response id, stored for the satisfaction metric.

Body: `{"response_id": "chatcmpl-...", "score": 4, "comment": "optional"}` (`request_id` or
`id` are accepted for the id). The row goes to the `feedback` table from a thread of its own,
so the event loop never waits on SQL; the watch plane joins it with `requests` for the
`satisfaction` metric (feedback for an id the gateway never answered counts for nothing).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from quality_gates.gateway._wire import ApiError
from quality_gates.store.db import Connection

MAX_BODY = 16 * 1024
MAX_ID = 64
MAX_COMMENT = 2000
ID_FIELDS = ("response_id", "request_id", "id")


@dataclass(frozen=True)
class Feedback:
    """One validated feedback."""

    response_id: str
    score: int
    comment: str | None


def parse_feedback(raw: bytes) -> Feedback:
    """Validate a feedback body; ApiError 400 names the field and what is accepted."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body is not JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_body")
    field = next((f for f in ID_FIELDS if f in body), "response_id")
    response_id = body.get(field)
    if not isinstance(response_id, str) or not 0 < len(response_id) <= MAX_ID:
        raise ApiError(
            400,
            f"{field} must be the id of a response (the `id` of a chat completion, at most "
            f"{MAX_ID} characters)",
            param=field,
            code="invalid_response_id",
        )
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ApiError(
            400, "score must be an integer from 1 to 5", param="score", code="invalid_score"
        )
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise ApiError(
            400,
            f"comment must be a string of at most {MAX_COMMENT} characters",
            param="comment",
            code="invalid_comment",
        )
    return Feedback(response_id, score, comment)


class FeedbackWriter:
    """Writes feedback rows from one dedicated thread with its own connection."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._conn: Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qg-feedback")

    def _insert(self, feedback: Feedback, key_name: str | None) -> int:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        with conn.write():
            row = conn.one(
                "INSERT INTO feedback (request_id, ts, score, comment, key_name) VALUES "
                "(:request, :ts, :score, :comment, :key) RETURNING id",
                {
                    "request": feedback.response_id,
                    "ts": time.time(),
                    "score": feedback.score,
                    "comment": feedback.comment,
                    "key": key_name,
                },
            )
        return int(row["id"]) if row else 0

    async def write(self, feedback: Feedback, key_name: str | None) -> int:
        """Store one feedback; returns its id (ApiError 503 when the store is unreachable)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._insert, feedback, key_name)
        except Exception as exc:
            self._conn = None  # reconnect next time
            raise ApiError(
                503, f"the feedback could not be stored now: {exc}", code="store_unavailable"
            ) from None

    def close(self) -> None:
        """Close the connection and the thread."""
        conn, self._conn = self._conn, None

        def shut() -> None:
            if conn is not None:
                conn.close()

        self._executor.submit(shut)
        self._executor.shutdown(wait=True)


def feedback_json(feedback_id: int, feedback: Feedback) -> dict[str, Any]:
    """What the endpoint answers."""
    return {
        "object": "feedback",
        "id": feedback_id,
        "response_id": feedback.response_id,
        "score": feedback.score,
    }
