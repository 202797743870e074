"""The one error taxonomy of the Kubernetes access layer.

Every failure of a call to the API server is classified once, here, into what the caller can
decide on:

- the expected answers of idempotent writes (``NotFound``, ``AlreadyExists``, ``Conflict``);
- ``Transient``: the same request may succeed a moment later (429, 5xx, timeouts, lost
  connections, a ResourceQuota that is full for now). Carries the server's Retry-After;
- ``Refused``: the request will never succeed as it is (400, 403, 422, an object too large for
  the API server or etcd). Whoever asked for it must end what needed it, with the message.

Pure: no I/O, so the operator, the engine client and tests share it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

# Messages by which the API server says a namespace ResourceQuota is full (403 Forbidden): the
# quota frees up when other Pods end, so this is worth waiting for.
_QUOTA_MARKERS = ("exceeded quota", "insufficient quota")
# Messages by which the API server or etcd say an object is too large: retrying the same body
# can never succeed, whatever the status code (etcd's answers arrive as 500).
_TOO_LARGE_MARKERS = (
    "request is too large",
    "request entity too large",
    "too long: must have at most",
    "resourceexhausted",
    "trying to send message larger than max",
)
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Retry-After beyond this is not honoured as such: the caller's own bounds apply instead.
MAX_RETRY_AFTER_SECONDS = 300.0


class KubeError(Exception):
    """A request the API server did not carry out. ``status`` is 0 when it was never answered."""

    transient = False

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ):
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message
        self.body = dict(body or {})
        self.retry_after = retry_after


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    pass


class Conflict(KubeError):
    """A write lost a race: the object changed since it was read (stale resourceVersion)."""


class Transient(KubeError):
    """Worth retrying unchanged after a backoff (no sooner than ``retry_after``, if set)."""

    transient = True


class QuotaExceeded(Transient):
    """A namespace ResourceQuota is full for now."""


class Refused(KubeError):
    """Permanent: the API server will not accept this request as it is (``message`` says why)."""


class TooLarge(Refused):
    """The object is larger than the API server or etcd store."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the API server sends whole seconds)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def _status_body(raw: str | bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return {"message": text.strip()[:1024]}
    return doc if isinstance(doc, dict) else {}


def classify_response(
    status: int,
    body: str | bytes | None,
    *,
    http_reason: str = "",
    retry_after: str | None = None,
) -> KubeError:
    """The error for an answer of the API server that is not a success."""
    doc = _status_body(body)
    reason = str(doc.get("reason") or http_reason or "")
    message = str(doc.get("message") or http_reason or f"HTTP {status}")
    lowered = message.lower()
    wait = parse_retry_after(retry_after)
    details = doc.get("details")
    if wait is None and isinstance(details, dict):
        seconds = details.get("retryAfterSeconds")
        if isinstance(seconds, int) and seconds > 0:
            wait = min(float(seconds), MAX_RETRY_AFTER_SECONDS)
    if status == 404:
        return NotFound(status, reason, message, doc)
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, reason, message, doc)
    if status == 409:
        return Conflict(status, reason, message, doc)
    if status == 413 or any(marker in lowered for marker in _TOO_LARGE_MARKERS):
        return TooLarge(status, reason, message, doc)
    if status == 403 and any(marker in lowered for marker in _QUOTA_MARKERS):
        return QuotaExceeded(status, reason, message, doc, retry_after=wait)
    if status in TRANSIENT_STATUSES:
        return Transient(status, reason, message, doc, retry_after=wait)
    return Refused(status, reason, message, doc)


def classify_exception(error: BaseException) -> KubeError | None:
    """The error for a request that got no answer (connection lost, timed out), else None."""
    if isinstance(error, KubeError):
        return error
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return Transient(0, "Timeout", f"the API server did not answer in time ({error!r})")
    # aiohttp's and urllib3's connection errors derive from OSError or from these bases; the
    # names are checked instead of importing either library into this pure module.
    names = {cls.__name__ for cls in type(error).__mro__}
    if isinstance(error, ConnectionError | OSError) or names & {
        "ClientError",
        "ClientConnectionError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        "HTTPError",
        "ProtocolError",
        "MaxRetryError",
    }:
        return Transient(0, "ConnectionError", f"cannot reach the API server: {error}")
    return None


__all__ = [
    "AlreadyExists",
    "Conflict",
    "KubeError",
    "NotFound",
    "QuotaExceeded",
    "Refused",
    "TooLarge",
    "Transient",
    "classify_exception",
    "classify_response",
    "parse_retry_after",
]
