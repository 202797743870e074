"""Where each kind lives in the API: group, version, plural, scope. One table, one path builder.

The CRD generator, the access layer, the engine client and the benchmark all address the API
through these descriptors (lightkube's resource classes are the model), so no path is written
by hand anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from steprun.api.models import GROUP, SANDBOXPOLICY_PLURAL, STEPRUN_PLURAL, VERSION


@dataclass(frozen=True)
class Resource:
    kind: str
    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        """The path of the collection (across all namespaces when ``namespace`` is None for a
        namespaced kind), of one object, or of its subresource."""
        path = self.prefix
        if self.namespaced and namespace is not None:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path


STEPRUN = Resource("StepRun", GROUP, VERSION, STEPRUN_PLURAL)
SANDBOX_POLICY = Resource("SandboxPolicy", GROUP, VERSION, SANDBOXPOLICY_PLURAL, namespaced=False)

RESOURCES = {
    resource.kind: resource
    for resource in (
        STEPRUN,
        SANDBOX_POLICY,
        Resource("Pod", "", "v1", "pods"),
        Resource("ConfigMap", "", "v1", "configmaps"),
        Resource("Secret", "", "v1", "secrets"),
        Resource("Event", "", "v1", "events"),
        Resource("ServiceAccount", "", "v1", "serviceaccounts"),
        Resource("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims"),
        Resource("Namespace", "", "v1", "namespaces", namespaced=False),
        Resource("Node", "", "v1", "nodes", namespaced=False),
        Resource("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies"),
        Resource("Job", "batch", "v1", "jobs"),
        # Kueue (sigs.k8s.io/kueue): a queued step's Workload, and what its admission names.
        Resource("Workload", "kueue.x-k8s.io", "v1beta2", "workloads"),
        Resource("LocalQueue", "kueue.x-k8s.io", "v1beta2", "localqueues"),
        Resource(
            "ResourceFlavor", "kueue.x-k8s.io", "v1beta2", "resourceflavors", namespaced=False
        ),
        Resource(
            "WorkloadPriorityClass",
            "kueue.x-k8s.io",
            "v1beta2",
            "workloadpriorityclasses",
            namespaced=False,
        ),
        # Read to tell whether this replica is the active one (steprun.activity).
        Resource("ClusterKopfPeering", "kopf.dev", "v1", "clusterkopfpeerings", namespaced=False),
        # Read to know whether StepRun creators are checked (steprun.reconcile.tenancy).
        Resource(
            "ValidatingAdmissionPolicy",
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicies",
            namespaced=False,
        ),
        Resource(
            "ValidatingAdmissionPolicyBinding",
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicybindings",
            namespaced=False,
        ),
        Resource(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            namespaced=False,
        ),
        Resource(
            "ClusterRoleBinding",
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            namespaced=False,
        ),
        Resource(
            "SelfSubjectReview",
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            namespaced=False,
        ),
    )
}


def resource(kind: str) -> Resource:
    """The descriptor of ``kind``; KeyError for a kind steprun does not address."""
    return RESOURCES[kind]
