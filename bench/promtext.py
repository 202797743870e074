"""Request counters from Prometheus text exposition: the API server's and the operator's.

These complement the audit log: the API server's ``apiserver_request_total`` counts every
client's requests cluster-wide (other tests included, no user), and the operator's own
``steprun_api_request_duration_seconds_count`` counts exactly the operator's, by HTTP verb.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

MUTATING_HTTP_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a step is made of, on either side; writes to anything else are other clients' business.
STEP_RESOURCES = frozenset(
    {
        "pods",
        "pods/status",
        "pods/binding",
        "configmaps",
        "secrets",
        "events",
        "stepruns",
        "stepruns/status",
        "jobs",
        "jobs/status",
        "networkpolicies",
    }
)


def apiserver_writes(text: str) -> Counter[tuple[str, str]]:
    """Mutating requests served so far to the resources steps are made of, by
    (resource[/subresource], verb)."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            verb = labels.get("verb", "")
            if verb not in MUTATING_HTTP_VERBS:
                continue
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            if resource in STEP_RESOURCES:
                counts[(resource, verb)] += int(sample.value)
    return counts


def operator_requests(text: str) -> Counter[str]:
    """The operator's API requests so far, by lower-case HTTP verb."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "steprun_api_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                counts[sample.labels.get("verb", "")] += int(sample.value)
    return counts


def delta(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> dict[str, int]:
    """Growth of each counter, keyed "resource verb", zeros left out."""
    grown = {f"{r} {v}": after[(r, v)] - before.get((r, v), 0) for r, v in after}
    return {key: n for key, n in sorted(grown.items()) if n > 0}


# The operator's own timings, in the order a step meets them, as the report names them.
OPERATOR_TIMINGS = (
    ("steprun_workqueue_queue_duration_seconds", "work queue: waiting for a reconcile to start"),
    ("steprun_reconcile_duration_seconds", "reconcile: one run, its API requests included"),
    ("steprun_api_throttle_wait_seconds", "API request: held by the client-side rate or a 429"),
    ("steprun_api_request_duration_seconds", "API request"),
)


def operator_timings(text: str) -> list[dict[str, Any]]:
    """Count, mean and interpolated p50/p90/p99 (Prometheus' histogram_quantile) of each of the
    operator's OPERATOR_TIMINGS histograms, one row per label set (an API request's verb)."""
    rows: list[dict[str, Any]] = []
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for metric, label in OPERATOR_TIMINGS:
        family = families.get(metric)
        if family is None:
            continue
        series: dict[str, dict[str, Any]] = {}
        for sample in family.samples:
            verb = sample.labels.get("verb", "")
            entry = series.setdefault(verb, {"buckets": [], "count": 0.0, "sum": 0.0})
            if sample.name.endswith("_bucket"):
                entry["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
        for verb, entry in sorted(series.items()):
            count = entry["count"]
            if not count:
                continue
            buckets = sorted(entry["buckets"])
            rows.append(
                {
                    "what": f"{label} ({verb})" if verb else label,
                    "count": int(count),
                    "mean": entry["sum"] / count,
                    **{f"p{q}": quantile(q / 100, buckets) for q in (50, 90, 99)},
                }
            )
    return rows


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """histogram_quantile over cumulative (upper bound, count) buckets, +Inf last: linear
    within the bucket the rank falls in; the highest finite bound when it falls in +Inf."""
    if not buckets or not buckets[-1][1]:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, cumulative
    return lower
