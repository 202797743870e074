"""The access layer's one error taxonomy: each answer of the API server classified once."""

from __future__ import annotations

import json
import random

import aiohttp
import pytest

from steprun.kube.backoff import Jittered
from steprun.kube.errors import (
    AlreadyExists,
    Conflict,
    KubeError,
    NotFound,
    QuotaExceeded,
    Refused,
    TooLarge,
    Transient,
    classify_exception,
    classify_response,
)


def status_body(code: int, reason: str, message: str, **details: object) -> str:
    doc = {"kind": "Status", "code": code, "reason": reason, "message": message}
    if details:
        doc["details"] = details
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("code", "reason", "message", "kind", "transient"),
    [
        pytest.param(404, "NotFound", 'pods "x" not found', NotFound, False, id="404"),
        pytest.param(409, "AlreadyExists", "exists", AlreadyExists, False, id="409-exists"),
        pytest.param(409, "Conflict", "the object has been modified", Conflict, False, id="409"),
        pytest.param(429, "TooManyRequests", "slow down", Transient, True, id="429"),
        pytest.param(500, "InternalError", "etcd leader changed", Transient, True, id="500"),
        pytest.param(503, "ServiceUnavailable", "", Transient, True, id="503"),
        pytest.param(504, "Timeout", "timed out", Transient, True, id="504"),
        pytest.param(
            403,
            "Forbidden",
            'pods "x" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2',
            QuotaExceeded,
            True,
            id="quota-exceeded",
        ),
        pytest.param(403, "Forbidden", "cannot patch stepruns/status", Refused, False, id="403"),
        pytest.param(
            422, "Invalid", "spec.containers[0].image: Required", Refused, False, id="422"
        ),
        pytest.param(400, "BadRequest", "bad", Refused, False, id="400"),
        pytest.param(413, "RequestEntityTooLarge", "limit is 3145728", TooLarge, False, id="413"),
        pytest.param(
            500,
            "InternalError",
            "etcdserver: request is too large",
            TooLarge,
            False,
            id="etcd-too-large-as-500",
        ),
        pytest.param(
            422,
            "Invalid",
            'ConfigMap "x" is invalid: []: Too long: must have at most 1048576 bytes',
            TooLarge,
            False,
            id="configmap-too-long",
        ),
    ],
)
def test_answers_are_classified(
    code: int, reason: str, message: str, kind: type[KubeError], transient: bool
) -> None:
    error = classify_response(code, status_body(code, reason, message))
    assert type(error) is kind
    assert error.transient is transient
    assert (error.status, error.reason) == (code, reason)


def test_retry_after_header_and_details_are_honoured() -> None:
    from_header = classify_response(429, status_body(429, "TooManyRequests", "x"), retry_after="3")
    assert from_header.retry_after == 3.0
    from_details = classify_response(
        503, status_body(503, "ServiceUnavailable", "x", retryAfterSeconds=2)
    )
    assert from_details.retry_after == 2.0
    assert classify_response(429, "", retry_after="soon").retry_after is None


def test_a_body_that_is_not_a_status_keeps_its_text() -> None:
    error = classify_response(502, "<html>bad gateway</html>", http_reason="Bad Gateway")
    assert isinstance(error, Transient)
    assert "bad gateway" in error.message


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(TimeoutError(), id="timeout"),
        pytest.param(ConnectionResetError("reset by peer"), id="reset"),
        pytest.param(aiohttp.ServerDisconnectedError(), id="disconnected"),
        pytest.param(aiohttp.ClientPayloadError("cut"), id="payload-cut"),
    ],
)
def test_unanswered_requests_are_transient(error: BaseException) -> None:
    classified = classify_exception(error)
    assert isinstance(classified, Transient)
    assert classified.status == 0


def test_bugs_are_not_classified_as_api_errors() -> None:
    assert classify_exception(KeyError("x")) is None


def test_backoff_grows_with_jitter_and_never_undercuts_retry_after() -> None:
    policy = Jittered(initial=0.5, maximum=60.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng=rng) for n in range(1, 10)]
    for failures, delay in enumerate(delays, start=1):
        ceiling = min(60.0, 0.5 * 2 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(1, retry_after=30.0, rng=rng) == 30.0
    assert policy.delay(10_000, rng=rng) <= 60.0


def test_the_backoff_module_says_which_jitter_it_implements() -> None:
    from steprun.kube import backoff

    # Equal jitter (half the delay fixed, half random), not full jitter (zero to the delay):
    # the lower bound is what keeps the backoff growing, and what the docs promise.
    rng = random.Random(3)
    lowest = min(Jittered(initial=8.0, maximum=8.0).delay(1, rng=rng) for _ in range(2000))
    assert 4.0 <= lowest < 4.1
    assert backoff.__doc__ is not None
    assert "equal jitter" in backoff.__doc__ and "full jitter" not in backoff.__doc__
