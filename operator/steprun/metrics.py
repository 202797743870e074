"""Prometheus metrics of the operator. Defined once here; served by ``serve_metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

STEPRUNS_BY_PHASE = Gauge(
    "steprun_stepruns", "StepRuns known to this operator, by phase", ["phase"]
)
TRANSITIONS = Counter(
    "steprun_transitions_total", "StepRun phase transitions written", ["phase", "reason"]
)
RECONCILE_SECONDS = Histogram(
    "steprun_reconcile_duration_seconds",
    "Time to reconcile one StepRun once",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POD_START_SECONDS = Histogram(
    "steprun_pod_start_duration_seconds",
    "From StepRun creation to its first Pod created",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_REQUESTS = Histogram(
    "steprun_api_request_duration_seconds",
    "Kubernetes API requests made by the operator",
    ["verb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_ERRORS = Counter(
    "steprun_api_errors_total", "Kubernetes API requests that failed", ["verb", "code"]
)


def serve_metrics(port: int) -> None:
    if port:
        start_http_server(port)
