"""API requests per side, client, resource and verb, from the API server's audit log.

The local cluster's audit policy (hack/cluster-up.sh) logs, at Metadata level, every create,
update, patch and delete of the objects a step is made of, and every get and list of them.
Each arm of a scenario lives in its own namespace, so the namespace says which arm a request
served and ``user.username`` says who made it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MUTATING = frozenset({"create", "update", "patch", "delete"})
READS = frozenset({"get", "list"})

# The controller-manager runs with --use-service-account-credentials: one identity per controller.
KNOWN_USERS = {
    "system:serviceaccount:kube-system:job-controller": "job controller",
    "system:serviceaccount:kube-system:generic-garbage-collector": "garbage collector",
    "system:serviceaccount:kube-system:namespace-controller": "namespace controller",
    "system:serviceaccount:kube-system:pod-garbage-collector": "pod garbage collector",
    "system:serviceaccount:kube-system:ttl-after-finished-controller": "ttl controller",
    "system:kube-scheduler": "scheduler",
    "system:kube-controller-manager": "controller manager",
    "kwok": "kwok",
}


def actor(username: str, *, operator: str, client: str) -> str:
    """A short name for whoever made a request."""
    if username == operator:
        return "operator"
    if username == client:
        return "bench client"
    if username.startswith("system:node:"):
        return "kubelet"
    return KNOWN_USERS.get(username, username)


def audit_files(log: Path) -> list[Path]:
    """The log and its rotated backups (audit-<time>.log), oldest first."""
    if not log.parent.is_dir():
        return []
    backups = sorted(p for p in log.parent.glob(f"{log.stem}-*{log.suffix}") if p.is_file())
    return [*backups, *([log] if log.is_file() else [])]


def entries(files: Iterable[Path], namespaces: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Completed requests in the given namespaces. A cheap substring test skips the (many)
    lines of other namespaces before any JSON is parsed."""
    wanted = tuple(f'"namespace":"{ns}"' for ns in namespaces)
    for path in files:
        with path.open(errors="replace") as lines:
            for line in lines:
                if not any(marker in line for marker in wanted):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by rotation
                if entry.get("stage") == "ResponseComplete":
                    yield entry


@dataclass
class RequestCounts:
    """Requests by (side, actor, resource, verb); failed ones counted apart."""

    ok: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    failed: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)

    def add(self, side: str, who: str, resource: str, verb: str, code: int) -> None:
        target = self.ok if 200 <= code < 300 else self.failed
        target[(side, who, resource, verb)] += 1

    def total(
        self, side: str, who: str | None = None, *, failed: bool = False, reads: bool = False
    ) -> int:
        """Writes (or, with ``reads``, reads) of a side, by everyone or one client."""
        counts = self.failed if failed else self.ok
        verbs = READS if reads else MUTATING
        return sum(
            n
            for (s, w, _, verb), n in counts.items()
            if s == side and (who is None or w == who) and verb in verbs
        )

    def rows(self) -> list[dict[str, Any]]:
        keys = sorted(set(self.ok) | set(self.failed))
        return [
            {
                "side": side,
                "actor": who,
                "resource": resource,
                "verb": verb,
                "ok": self.ok[(side, who, resource, verb)],
                "failed": self.failed[(side, who, resource, verb)],
            }
            for side, who, resource, verb in keys
        ]


def count_requests(
    records: Iterable[Mapping[str, Any]],
    sides: Mapping[str, str],
    *,
    operator: str,
    client: str,
) -> RequestCounts:
    """``sides`` maps each namespace to the side it holds."""
    counts = RequestCounts()
    for entry in records:
        verb = entry.get("verb")
        ref = entry.get("objectRef") or {}
        side = sides.get(str(ref.get("namespace")))
        if (verb not in MUTATING and verb not in READS) or side is None:
            continue
        resource = str(ref.get("resource"))
        if ref.get("subresource"):
            resource += "/" + str(ref["subresource"])
        username = str((entry.get("user") or {}).get("username"))
        code = int((entry.get("responseStatus") or {}).get("code") or 0)
        counts.add(side, actor(username, operator=operator, client=client), resource, verb, code)
    return counts
