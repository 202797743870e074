"""Request counters from Prometheus text exposition: the API server's and the operator's.

These complement the audit log: the API server's ``apiserver_request_total`` counts every
client's requests cluster-wide (other tests included, no user), and the operator's own
``steprun_api_request_duration_seconds_count`` counts exactly the operator's, by HTTP verb.
"""

from __future__ import annotations

from collections import Counter

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
