"""Hardening of a sandbox step's Pod, and an independent check of the "restricted" profile (pure).

``harden_pod`` turns the plain Pod of a step into a sandbox Pod: the Pod Security Standards
"restricted" profile, a read-only root filesystem unless filesystem.writable was granted, no
service-account token, no host namespaces or host paths, the policy's RuntimeClass and labels.
Security settings are replaced wholesale rather than merged, so nothing from the plain Pod (or a
step author's podTemplate) can loosen them.

``restricted_violations`` checks a Pod against the restricted profile (Kubernetes v1.34 rules,
baseline included) on its own terms, sharing no code with ``harden_pod``, so a test that runs
both catches a hardening gap instead of repeating it.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Iterator
from typing import Any

from steprun.api.models import Permission
from steprun.policy.decision import SandboxDecision
from steprun.policy.quantity import parse_quantity
from steprun.render.names import LABEL_POLICY, LABEL_SANDBOX, is_reserved_key

# A fixed non-root identity, so images whose USER is root (or unset) still start under
# runAsNonRoot; 65532 is the conventional "nonroot" user of distroless-style images.
SANDBOX_UID = 65532
SANDBOX_GID = 65532
TMP_VOLUME = "steprun-tmp"
WORKDIR_VOLUME = "steprun-workdir"

# The inline volume sources the restricted profile allows; anything else (hostPath above all)
# reaches outside the Pod. Hardening refuses the others, and the profile's check reports them.
_ALLOWED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# Annotations that choose security profiles belong to the operator, not to a podTemplate.
_SECURITY_ANNOTATION_PREFIXES = (
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
)
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def harden_pod(pod: dict[str, Any], decision: SandboxDecision) -> dict[str, Any]:
    """A hardened copy of ``pod`` for a step admitted with ``decision``; the input is untouched.

    Raises ValueError when the Pod holds something hardening cannot make safe by overriding a
    setting: a hostPath (or other non-restricted) volume, a projected service-account token, a
    container hostPort, or a probe or lifecycle hook aimed at another host. The Pod's
    activeDeadlineSeconds is capped at the decision's timeout.
    """
    hardened = copy.deepcopy(pod)
    metadata = hardened.setdefault("metadata", {})
    spec = hardened.setdefault("spec", {})
    _refuse_host_resources(spec)

    metadata["labels"] = _sandbox_labels(metadata.get("labels") or {}, decision)
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if not k.startswith(_SECURITY_ANNOTATION_PREFIXES)
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)

    spec["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": SANDBOX_UID,
        "runAsGroup": SANDBOX_GID,
        "fsGroup": SANDBOX_GID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spec["automountServiceAccountToken"] = False
    spec.pop("serviceAccountName", None)
    spec.pop("serviceAccount", None)
    spec["hostNetwork"] = False
    spec["hostPID"] = False
    spec["hostIPC"] = False
    # The decision's timeout is a ceiling: a shorter deadline from the plain Pod stays.
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is None or deadline > decision.timeout_seconds:
        spec["activeDeadlineSeconds"] = decision.timeout_seconds
    if decision.runtime_class_name:
        spec["runtimeClassName"] = decision.runtime_class_name
    else:
        spec.pop("runtimeClassName", None)

    read_only_root = not decision.grants(Permission.FILESYSTEM_WRITABLE)
    for container in _containers(spec):
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": read_only_root,
            "capabilities": {"drop": ["ALL"]},
        }
    for container in spec.get("containers") or []:
        # Bounded at admission (defaults merged per key, a limit for every bounded resource).
        if decision.resources is not None:
            container["resources"] = decision.resources.to_api()
        else:
            container.pop("resources", None)
    if decision.termination_grace_period_seconds is not None:
        grace = spec.get("terminationGracePeriodSeconds")
        if grace is None or grace > decision.termination_grace_period_seconds:
            spec["terminationGracePeriodSeconds"] = decision.termination_grace_period_seconds
    # Scheduling comes from the policy alone: an author's tolerations could reach any node.
    for key in ("nodeSelector", "tolerations", "affinity", "nodeName", "priorityClassName"):
        spec.pop(key, None)
    if decision.node_selector:
        spec["nodeSelector"] = dict(sorted(decision.node_selector.items()))
    if decision.tolerations:
        spec["tolerations"] = [dict(t) for t in decision.tolerations]
    if read_only_root:
        _add_scratch_volumes(spec)
    for volume in spec.get("volumes") or []:
        # An unbounded emptyDir fills the node's disk, and so does one the author sized.
        if "emptyDir" in volume:
            empty_dir = {**(volume["emptyDir"] or {})}
            empty_dir["sizeLimit"] = _bounded_size(
                empty_dir.get("sizeLimit"), decision.empty_dir_size_limit
            )
            volume["emptyDir"] = empty_dir
    return hardened


def _bounded_size(asked: int | str | None, bound: str) -> int | str:
    """The smaller of the author's ``sizeLimit`` and the policy's bound; the bound when the
    author set none (or something that is no quantity)."""
    if asked is None:
        return bound
    try:
        if parse_quantity(asked) <= parse_quantity(bound):
            return asked
    except ValueError:
        pass
    return bound


def _sandbox_labels(labels: dict[str, str], decision: SandboxDecision) -> dict[str, str]:
    # Policy labels (an admin's) win over the step author's, but never over the operator's own.
    policy_labels = {k: v for k, v in decision.pod_labels.items() if not is_reserved_key(k)}
    return {
        **labels,
        **policy_labels,
        LABEL_SANDBOX: "true",
        LABEL_POLICY: decision.policy,
    }


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in _CONTAINER_LISTS:
        yield from spec.get(key) or []


def _refuse_host_resources(spec: dict[str, Any]) -> None:
    for volume in spec.get("volumes") or []:
        sources = set(volume) - {"name"}
        refused = sorted(sources - _ALLOWED_VOLUME_SOURCES)
        if refused:
            raise ValueError(
                f"sandbox Pods cannot have volume {volume.get('name')!r} of type "
                f"{', '.join(refused)}"
            )
        # automountServiceAccountToken: false means nothing if a token is projected by hand.
        projected = volume.get("projected") or {}
        if any("serviceAccountToken" in src for src in projected.get("sources") or []):
            raise ValueError(
                f"sandbox Pods get no service-account token (volume {volume.get('name')!r})"
            )
    for container in _containers(spec):
        name = container.get("name")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                raise ValueError(
                    f"sandbox Pods cannot use hostPort {port['hostPort']} (container {name!r})"
                )
        lifecycle = container.get("lifecycle") or {}
        handlers = [
            *(container.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")),
            lifecycle.get("postStart"),
            lifecycle.get("preStop"),
        ]
        for handler in filter(None, handlers):
            if any((handler.get(a) or {}).get("host") for a in ("httpGet", "tcpSocket")):
                raise ValueError(
                    f"sandbox Pods cannot probe or hook another host (container {name!r})"
                )


def _add_scratch_volumes(spec: dict[str, Any]) -> None:
    """emptyDir at /tmp and at each working directory, the only writable places left.

    Without one at the working directory a read-only root would also stop the runtime from
    creating that directory, and the container would fail to start.
    """
    volumes: list[dict[str, Any]] = spec.setdefault("volumes", [])
    taken = {v.get("name") for v in volumes}
    workdir_volumes: dict[str, str] = {}

    def new_volume(base: str) -> str:
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        volumes.append({"name": name, "emptyDir": {}})
        return name

    tmp_volume: str | None = None
    for container in _containers(spec):
        mounts: list[dict[str, Any]] = container.setdefault("volumeMounts", [])
        mounted = {posixpath.normpath(m.get("mountPath", "")) for m in mounts}
        if "/tmp" not in mounted:
            tmp_volume = tmp_volume or new_volume(TMP_VOLUME)
            mounts.append({"name": tmp_volume, "mountPath": "/tmp"})
            mounted.add("/tmp")
        workdir = container.get("workingDir")
        if not workdir:
            continue
        workdir = posixpath.normpath(workdir)
        if workdir == "/" or workdir in mounted:
            continue
        if workdir not in workdir_volumes:
            workdir_volumes[workdir] = new_volume(WORKDIR_VOLUME)
        mounts.append({"name": workdir_volumes[workdir], "mountPath": workdir})


# ------------------------------------------------------------------ the restricted profile

_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
_SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
_GOOD_PROFILES = ("RuntimeDefault", "Localhost")


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every way ``pod`` breaks the Pod Security Standards "restricted" profile (v1.34).

    Covers the baseline checks too (the restricted profile includes them). An empty list means
    the Pod would pass a namespace enforcing ``pod-security.kubernetes.io/enforce: restricted``.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    psc = spec.get("securityContext") or {}
    containers = [
        (f"{key}[{c.get('name')}]", c, c.get("securityContext") or {})
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]
    found: list[str] = []

    # Baseline.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"spec.{field} must not be true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess must not be true")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl")
    found += _selinux_violations("spec.securityContext", psc)
    found += _apparmor_violations("spec.securityContext", psc)
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            value in ("", "runtime/default") or value.startswith("localhost/")
        ):
            found.append(f"annotation {key}={value} sets a forbidden AppArmor profile")
    for volume in spec.get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        if "hostPath" in kinds:
            found.append(f"volume {volume.get('name')} must not be a hostPath")
        elif any(k not in _ALLOWED_VOLUME_SOURCES for k in kinds):
            found.append(f"volume {volume.get('name')} has a type restricted Pods cannot use")

    for where, container, sc in containers:
        if sc.get("privileged"):
            found.append(f"{where}: privileged must not be true")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}: windowsOptions.hostProcess must not be true")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"{where}: procMount must be Default")
        found += _selinux_violations(where, sc)
        found += _apparmor_violations(where, sc)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']} is forbidden")
        for host in _probe_hosts(container):
            found.append(f"{where}: probe or lifecycle handler must not set host ({host})")

    # Restricted.
    pod_non_root = psc.get("runAsNonRoot")
    if pod_non_root is False:
        found.append("spec.securityContext.runAsNonRoot must not be false")
    if psc.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser must not be 0")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in _GOOD_PROFILES:
        found.append(f"spec.securityContext.seccompProfile.type {pod_seccomp} is forbidden")
    # Windows Pods cannot set these two fields, so the profile exempts them.
    linux = (spec.get("os") or {}).get("name") != "windows"
    for where, _, sc in containers:
        if linux and sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_non_root is not True):
            found.append(f"{where}: runAsNonRoot must be true (in the pod or the container)")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in _GOOD_PROFILES:
            found.append(f"{where}: seccompProfile.type {seccomp} is forbidden")
        elif linux and seccomp is None and pod_seccomp not in _GOOD_PROFILES:
            found.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{where}: capabilities.drop must include ALL")
        extra = [c for c in caps.get("add") or [] if c != "NET_BIND_SERVICE"]
        if extra:
            found.append(f"{where}: capabilities.add must not include {', '.join(extra)}")
    return found


def _selinux_violations(where: str, security_context: dict[str, Any]) -> list[str]:
    options = security_context.get("seLinuxOptions")
    if options is None:
        return []
    found = []
    if options.get("type", "") not in _SELINUX_TYPES:
        found.append(f"{where}: seLinuxOptions.type {options.get('type')} is forbidden")
    if options.get("user") or options.get("role"):
        found.append(f"{where}: seLinuxOptions user and role must not be set")
    return found


def _apparmor_violations(where: str, security_context: dict[str, Any]) -> list[str]:
    profile = security_context.get("appArmorProfile")
    if profile is not None and profile.get("type") not in _GOOD_PROFILES:
        return [f"{where}: appArmorProfile.type {profile.get('type')} is forbidden"]
    return []


def _probe_hosts(container: dict[str, Any]) -> list[str]:
    handlers = [container.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    lifecycle = container.get("lifecycle") or {}
    handlers += [lifecycle.get("postStart"), lifecycle.get("preStop")]
    hosts = []
    for handler in handlers:
        for action in ("httpGet", "tcpSocket"):
            host = ((handler or {}).get(action) or {}).get("host")
            if host:
                hosts.append(str(host))
    return hosts
