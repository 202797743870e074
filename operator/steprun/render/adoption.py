"""Whether an object found under a child's name is one the operator made for that StepRun (pure).

The operator adopts an existing child (after a crash between its create and its status write)
instead of creating a duplicate. An owner reference proves nothing: anyone who may create Pods
or ConfigMaps in the namespace can read the StepRun's uid and write it into one. So an object is
adopted only when it is what the operator would have rendered: a Pod with the same containers,
security settings, volumes and scheduling (allowing only what the API server itself adds), a
ConfigMap or Secret with the same data, a NetworkPolicy with the same spec. The pod-origin
admission policy makes the labels themselves unforgeable; this check stands on its own where
that policy is not installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steprun.policy.quantity import parse_quantity

SA_TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# Tolerations the DefaultTolerationSeconds admission plugin adds to every Pod.
_DEFAULT_TOLERATION_KEYS = frozenset(
    {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
)
# Pod spec fields the API server or the scheduler fill in, with the values that are harmless;
# None: any value (set by the control plane, not chosen by whoever created the Pod).
_SPEC_DEFAULTS: dict[str, Any] = {
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "priority": 0,
    "preemptionPolicy": "PreemptLowerPriority",
    "nodeName": None,
    "serviceAccount": None,  # the deprecated alias of serviceAccountName, compared there
    "securityContext": {},
    "hostNetwork": False,
    "hostPID": False,
    "hostIPC": False,
    "serviceAccountName": "default",
    "tolerations": None,  # compared on their own
    "volumes": None,  # compared on their own
}
_CONTAINER_DEFAULTS: dict[str, Any] = {
    "imagePullPolicy": None,
    "resources": {},
    "securityContext": None,  # compared on its own
    "volumeMounts": None,  # compared on their own
}


def _subset(rendered: Any, live: Any) -> bool:
    """``rendered`` appears in ``live``: dicts key by key, lists element by element."""
    if isinstance(rendered, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and _subset(v, live[k]) for k, v in rendered.items()
        )
    if isinstance(rendered, list):
        return (
            isinstance(live, list)
            and len(rendered) == len(live)
            and all(_subset(r, x) for r, x in zip(rendered, live, strict=True))
        )
    return bool(rendered == live)


def _same_resources(rendered: Any, live: Any) -> bool:
    rendered, live = rendered or {}, live or {}
    for kind in set(rendered) | set(live):
        a, b = rendered.get(kind) or {}, live.get(kind) or {}
        if set(a) != set(b):
            return False
        try:
            if any(parse_quantity(a[k]) != parse_quantity(b[k]) for k in a):
                return False
        except ValueError:
            return False
    return True


def _is_token_volume(volume: Mapping[str, Any]) -> bool:
    sources = (volume.get("projected") or {}).get("sources") or []
    return set(volume) == {"name", "projected"} and any("serviceAccountToken" in s for s in sources)


def _unexpected(
    where: str, rendered: Mapping[str, Any], live: Mapping[str, Any], defaults: Mapping[str, Any]
) -> list[str]:
    problems = []
    for key, value in live.items():
        if key in rendered:
            continue
        if key not in defaults:
            problems.append(f"{where}.{key} was not rendered")
        elif defaults[key] is not None and value != defaults[key]:
            problems.append(f"{where}.{key} is {value!r}")
    return problems


def _container_problems(
    index: int, rendered: Mapping[str, Any], live: Mapping[str, Any]
) -> list[str]:
    where = f"containers[{index}]"
    problems = _unexpected(where, rendered, live, _CONTAINER_DEFAULTS)
    for key, value in rendered.items():
        if key == "resources":
            if not _same_resources(value, live.get(key)):
                problems.append(f"{where}.resources differ")
        elif key == "volumeMounts":
            mounts = list(live.get(key) or [])
            extra = mounts[len(value) :]
            if not _subset(value, mounts[: len(value)]) or any(
                m.get("mountPath") != SA_TOKEN_MOUNT for m in extra
            ):
                problems.append(f"{where}.volumeMounts differ")
        elif not _subset(value, live.get(key)):
            problems.append(f"{where}.{key} differs")
    if "securityContext" not in rendered and live.get("securityContext"):
        problems.append(f"{where}.securityContext was not rendered")
    return problems


def pod_adoption_problems(rendered: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """Why ``live`` is not the Pod ``rendered`` describes; empty when it may be adopted."""
    problems = []
    labels = (live.get("metadata") or {}).get("labels") or {}
    wanted = (rendered.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        problems.append("its steprun.dev/ labels differ")
    spec, live_spec = rendered.get("spec") or {}, live.get("spec") or {}
    problems += _unexpected("spec", spec, live_spec, _SPEC_DEFAULTS)
    containers, live_containers = spec.get("containers") or [], live_spec.get("containers") or []
    if [c.get("name") for c in containers] != [c.get("name") for c in live_containers]:
        problems.append("its containers differ")
    else:
        for index, (mine, theirs) in enumerate(zip(containers, live_containers, strict=True)):
            problems += _container_problems(index, mine, theirs)
    for key, value in spec.items():
        if key in ("containers", "volumes", "tolerations"):
            continue
        if not _subset(value, live_spec.get(key)):
            problems.append(f"spec.{key} differs")
    volumes, live_volumes = spec.get("volumes") or [], live_spec.get("volumes") or []
    token_allowed = spec.get("automountServiceAccountToken") is not False
    if not _subset(volumes, live_volumes[: len(volumes)]) or any(
        not (token_allowed and _is_token_volume(v)) for v in live_volumes[len(volumes) :]
    ):
        problems.append("spec.volumes differ")
    tolerations, live_tolerations = (
        spec.get("tolerations") or [],
        live_spec.get("tolerations") or [],
    )
    if not _subset(tolerations, live_tolerations[: len(tolerations)]) or any(
        t.get("key") not in _DEFAULT_TOLERATION_KEYS for t in live_tolerations[len(tolerations) :]
    ):
        problems.append("spec.tolerations differ")
    account = live_spec.get("serviceAccountName") or "default"
    if account != (spec.get("serviceAccountName") or "default"):
        problems.append(f"spec.serviceAccountName is {account}")
    return problems


def adoption_problems(rendered: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """Why ``live`` (found under the name of ``rendered``) is not the operator's object."""
    kind = rendered.get("kind")
    if kind == "Pod":
        return pod_adoption_problems(rendered, live)
    problems = []
    labels = (live.get("metadata") or {}).get("labels") or {}
    wanted = (rendered.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        problems.append("its steprun.dev/ labels differ")
    for key in ("data", "spec"):
        if key in rendered and not _subset(rendered[key], live.get(key)):
            problems.append(f"its {key} differs from what the operator renders")
        if key == "data" and set(live.get(key) or {}) != set(rendered.get(key) or {}):
            problems.append("its data keys differ from what the operator renders")
    return sorted(set(problems))
