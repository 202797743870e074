"""NetworkPolicies are enforced: a sandbox step's egress is refused unless granted.

Proven by real TCP connections from step Pods to a listener Pod in the same namespace, whose
log shows every token it received: a refused connection never delivers its token, an allowed
one does. The local cluster enforces NetworkPolicies with its agent (hack/netpol-up.sh); the
first test checks that agent, the others hold on any cluster whose network plugin enforces
NetworkPolicies.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client

from steprun.render.names import network_policy_name
from tests.cluster.conftest import SandboxPolicies
from tests.conftest import STEP_IMAGE
from tests.support.steps import Steps, eventually

PORT = 8080
OTHER_PORT = 8081
NETPOL_HEALTH_PORT = 20244
# Every Pod here runs in a namespace enforcing the "restricted" Pod Security profile.
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The agent installs a Pod's rules once the Pod has an IP, which the Pod's containers may
# already be using: each connecting script waits this long first (docs/security.md).
SETTLE_SECONDS = 5
ATTEMPTS = 3


def connect_script(
    address: str, port: int, token: str, into: str = '"$STEPRUN_OUTPUT_FILE"'
) -> str:
    """A script that tries to send ``token`` to ``address:port`` a few times and writes to
    ``into`` (a step's outputs by default) whether any attempt connected."""
    return (
        f"sleep {SETTLE_SECONDS}; r=refused; "
        f"for i in $(seq {ATTEMPTS}); do "
        f"if echo {token} | nc -w 3 {address} {port}; then r=connected; break; fi; sleep 1; "
        "done; "
        f'printf \'{{"result": "%s"}}\' "$r" > {into}'
    )


@dataclass
class Listener:
    """A Pod accepting TCP connections on PORT and logging what each one sent."""

    core: client.CoreV1Api
    namespace: str
    name: str
    ip: str

    def received(self) -> str:
        return str(self.core.read_namespaced_pod_log(self.name, self.namespace))


def start_listener(core: client.CoreV1Api, namespace: str) -> Listener:
    name = f"listener-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "listener"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "listen",
                    "image": STEP_IMAGE,
                    # One connection at a time; each one's data goes to the log, then a newline.
                    "command": ["sh", "-c", f"while :; do nc -l -p {PORT}; echo; done"],
                    "securityContext": RESTRICTED_CONTAINER,
                }
            ],
        },
    }
    core.create_namespaced_pod(namespace, pod)

    def running_ip() -> str | None:
        current = core.read_namespaced_pod(name, namespace)
        if current.status.phase == "Running" and current.status.pod_ip:
            return str(current.status.pod_ip)
        return None

    ip = eventually(running_ip, 90, f"listener Pod {name} to run")
    return Listener(core, namespace, name, ip)


def outcome(steps: Steps, name: str) -> str:
    status = steps.wait_terminal(name, timeout=120)
    assert status["phase"] == "Succeeded", status
    return str(status["outputs"]["result"])


def sandbox_step(policy: str, script: str, **sandbox: Any) -> dict[str, Any]:
    return {
        "mode": "sandbox",
        "sandbox": {"policy": policy, "plugin": "sh", **sandbox},
        "args": [script],
        "timeoutSeconds": 90,
    }


SH_PLUGIN = {"name": "sh", "image": STEP_IMAGE, "command": ["/bin/sh", "-c"]}


# ------------------------------------------------------------------ the local cluster's agent


def test_local_cluster_runs_the_network_policy_agent(kubeconfig: str) -> None:
    cluster_dir = Path(kubeconfig).resolve().parent
    pidfile = cluster_dir / "pids" / "netpol.pid"
    if not pidfile.exists():
        pytest.fail(
            f"no NetworkPolicy agent for this cluster ({pidfile} is missing): "
            "hack/cluster-up.sh starts one (hack/netpol-up.sh)"
        )
    pid = int(pidfile.read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--run-firewall=true" in cmdline, cmdline
    assert b"--run-router=false" in cmdline and b"--run-service-proxy=false" in cmdline
    health = urllib3.PoolManager().request(
        "GET", f"http://127.0.0.1:{NETPOL_HEALTH_PORT}/healthz", timeout=5, retries=False
    )
    assert health.status == 200, health.data


def test_a_deny_all_policy_refuses_only_the_pods_it_selects(
    api_client: client.ApiClient, restricted_namespace: str
) -> None:
    """The cluster-level contract, without the operator: Pods a NetworkPolicy selects lose what
    it does not allow, Pods it does not select keep everything."""
    core, namespace = client.CoreV1Api(api_client), restricted_namespace
    listener = start_listener(core, namespace)
    client.NetworkingV1Api(api_client).create_namespaced_network_policy(
        namespace,
        {
            "metadata": {"name": "deny-egress"},
            "spec": {
                "podSelector": {"matchLabels": {"confined": "yes"}},
                "policyTypes": ["Egress"],
            },
        },
    )
    tokens = {"confined": f"t-{uuid.uuid4().hex}", "free": f"t-{uuid.uuid4().hex}"}
    for name, token in tokens.items():
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "labels": {"confined": "yes" if name == "confined" else "no"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "connect",
                            "image": STEP_IMAGE,
                            "command": [
                                "sh",
                                "-c",
                                connect_script(listener.ip, PORT, token, into="/dev/stdout"),
                            ],
                            "securityContext": RESTRICTED_CONTAINER,
                        }
                    ],
                },
            },
        )

    def finished(name: str) -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    results = {}
    for name in tokens:
        eventually(lambda name=name: finished(name), 120, f"Pod {name} to finish")
        # nc's complaints come first; the result is the last line.
        last = core.read_namespaced_pod_log(name, namespace).strip().splitlines()[-1]
        results[name] = json.loads(last)["result"]
    assert results == {"confined": "refused", "free": "connected"}
    received = listener.received()
    assert tokens["free"] in received
    assert tokens["confined"] not in received


# ------------------------------------------------------------------ sandbox steps


def test_sandbox_egress_is_refused_unless_granted(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    listener = start_listener(steps.core, steps.namespace)
    closed = sandbox_policies.create("closed", {"plugins": [SH_PLUGIN]})
    granted = sandbox_policies.create(
        "granted",
        {
            "plugins": [SH_PLUGIN],
            "grants": ["network.egress"],
            "egress": [{"cidr": f"{listener.ip}/32", "ports": [PORT]}],
        },
    )
    # Granted, but the policy's only rule names another port of the same address.
    elsewhere = sandbox_policies.create(
        "elsewhere",
        {
            "plugins": [SH_PLUGIN],
            "grants": ["network.egress"],
            "egress": [{"cidr": f"{listener.ip}/32", "ports": [OTHER_PORT]}],
        },
    )
    egress = {"permissions": ["network.egress"]}
    cases = {
        "no-grant": (sandbox_step(closed, connect_script(listener.ip, PORT, "{token}")), "refused"),
        # The policy could grant it, but the step did not ask for network.egress.
        "not-asked": (
            sandbox_step(granted, connect_script(listener.ip, PORT, "{token}")),
            "refused",
        ),
        "granted": (
            sandbox_step(granted, connect_script(listener.ip, PORT, "{token}"), **egress),
            "connected",
        ),
        "other-port": (
            sandbox_step(elsewhere, connect_script(listener.ip, PORT, "{token}"), **egress),
            "refused",
        ),
        # A plain step beside them: no NetworkPolicy selects its Pod.
        "local": (
            {
                "image": STEP_IMAGE,
                "script": connect_script(listener.ip, PORT, "{token}"),
                "timeoutSeconds": 90,
            },
            "connected",
        ),
    }
    tokens = {name: f"t-{uuid.uuid4().hex}" for name in cases}
    for name, (spec, _) in cases.items():
        rendered = json.loads(json.dumps(spec).replace("{token}", tokens[name]))
        steps.create(name, rendered)

    results = {name: outcome(steps, name) for name in cases}
    assert results == {name: expected for name, (_, expected) in cases.items()}
    received = listener.received()
    for name, (_, expected) in cases.items():
        assert (tokens[name] in received) == (expected == "connected"), (name, received)

    # The refusals came from the steps' own NetworkPolicies: the local step has none.
    networking = client.NetworkingV1Api(steps.api)
    names = {
        p.metadata.name for p in networking.list_namespaced_network_policy(steps.namespace).items
    }
    assert names == {network_policy_name(n) for n in cases if n != "local"}, names
