"""Every object of one attempt of a step, from one pure function (the only build route).

The reconciler creates what ``plan_attempt`` returns and ``steprun render`` prints it, so what
the CLI shows is what the operator makes: the run's claims, the step's Secret, ConfigMap,
NetworkPolicy (sandbox steps) and the Pod with the artifact helper, the store's egress rule and
the sandbox or Pod Security "restricted" hardening applied.

What needs the API is passed in: the sandbox decision, whether the namespace enforces
"restricted", the artifact inputs resolved from their producers, the Secret's values, the time
the Pod is created and the node a retry should avoid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steprun.api.models import StepRun
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.artifacts import (
    ResolvedInput,
    add_artifacts,
    add_store_egress,
)
from steprun.render.context import needs_secret, render_configmap, render_secret
from steprun.render.names import ANNOTATION_CREATED_AT
from steprun.render.network import render_network_policy
from steprun.render.pod import prefer_other_node, render_pod
from steprun.render.sandbox import harden_pod
from steprun.render.workspaces import render_claim, run_claims
from steprun.timeutil import format_time

Body = dict[str, Any]


@dataclass(frozen=True)
class AttemptPlan:
    """The objects of one attempt. The Secret is rendered from its values when they are known
    (``secret``): the operator reads them while the other objects are already being created."""

    sr: StepRun
    claims: tuple[Body, ...]
    configmap: Body
    network_policy: Body | None
    pod: Body
    has_secret: bool

    def secret(self, values: Mapping[str, str]) -> Body | None:
        """The step's own Secret holding ``values`` (base64, by key), if the step has one: its
        secret projections. (The artifact helpers' presigned URLs are signed by the operator
        per attempt, in a Secret of their own: reconcile/artifacts.py.)"""
        return render_secret(self.sr, values) if self.has_secret else None

    def objects(self, secret_values: Mapping[str, str]) -> list[Body]:
        """Every object, in the order the operator creates them."""
        secret = self.secret(secret_values)
        return [
            *self.claims,
            *([secret] if secret is not None else []),
            self.configmap,
            *([self.network_policy] if self.network_policy is not None else []),
            self.pod,
        ]


def plan_attempt(
    sr: StepRun,
    attempt: int,
    config: OperatorConfig,
    sandbox: SandboxDecision | None,
    *,
    restricted: bool = False,
    inputs: Sequence[ResolvedInput] = (),
    created_at: datetime | None = None,
    avoid_node: str | None = None,
) -> AttemptPlan:
    """The objects of attempt ``attempt`` (1-based). Raises RenderError or ValueError for a spec
    that cannot run (the operator ends such a step InvalidSpec)."""
    pod = render_pod(sr, attempt, config, sandbox, restricted=restricted)
    pod = add_artifacts(pod, sr, attempt, config, list(inputs))
    network_policy = None
    if sandbox is not None:
        pod = harden_pod(pod, sandbox)
        network_policy = add_store_egress(render_network_policy(sr, sandbox), sr, config)
    if avoid_node is not None:
        pod = prefer_other_node(pod, avoid_node)
    if created_at is not None:
        # The operator's clock: the startup timeout counts from it until the attempt is recorded.
        pod["metadata"].setdefault("annotations", {})[ANNOTATION_CREATED_AT] = format_time(
            created_at
        )
    return AttemptPlan(
        sr=sr,
        claims=tuple(render_claim(sr, workspace) for workspace in run_claims(sr)),
        configmap=render_configmap(sr, config, sandbox),
        network_policy=network_policy,
        pod=pod,
        has_secret=needs_secret(sr, sandbox),
    )
