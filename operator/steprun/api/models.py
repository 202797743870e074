"""The steprun.dev/v1alpha1 API as pydantic models: the single source of truth.

The CRD schemas in ``crds/`` are generated from these classes (``steprun.api.crdgen``); the
renderer, the policy checker, the client and the CLI all read the same classes. A field's
docstring is its description, the ``kubectl explain`` text, so it is written for the people who
read that.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "steprun.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
STEPRUN_PLURAL = "stepruns"
SANDBOXPOLICY_PLURAL = "sandboxpolicies"

# The API server stores at most 1.5 MiB per object; inputs are bounded well below that so a
# StepRun with large inputs still fits beside its status.
MAX_INPUTS_BYTES = 256 * 1024
MAX_OUTPUT_BYTES = 4 * 1024
# Outputs are copied into status; deeper JSON than this is refused (the models' serialiser stops
# at 255 levels, and nobody's outputs need more).
MAX_OUTPUT_DEPTH = 64

# Bounds shared by the schema and the renderer.
MAX_ENV_VARS = 256
MAX_SECRETS = 64
MAX_ARGS = 256
MAX_STRING = 32 * 1024
MAX_SCRIPT = 128 * 1024
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_RETRIES = 20
# Platform failures (a Pod deleted, evicted, its node lost) retried apart from the step's own.
MAX_PLATFORM_RETRIES = 10
DEFAULT_PLATFORM_RETRIES = 2
MAX_ATTEMPTS = MAX_RETRIES + MAX_PLATFORM_RETRIES + 1
# The Events kept in a failure: enough to explain it, few enough to keep the status small.
MAX_FAILURE_EVENTS = 5
# The grace period cap of sandbox steps whose SandboxPolicy sets none.
DEFAULT_SANDBOX_MAX_GRACE_SECONDS = 30
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# A label value: the workflow name, run id and step id become labels on every child.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
RESERVED_ENV_PREFIX = "STEPRUN_"
# Resource maps: a container has a handful of resources, and a quantity is a short string. The
# bounds let the API server's CEL cost estimate accept the quantity check on these maps.
MAX_RESOURCES = 32
MAX_QUANTITY = 64

# Plugin entries (workflow handlers and CLI commands) and how a sandbox step names one, in the
# forms of a workflow step's uses. An id may hold "/" (a handler path, as in
# plugin:release/notes/draft) and ":" (a namespaced CLI command, as in command:mind:rag-index);
# a plugin name is a DNS label or, as the npm packages workflow plugins ship in, a scoped name
# @<scope>/<name> (plugin:@kb-labs/quality/check), so the plugin name ends at the first "/"
# after plugin:, or at the second when the name starts with "@". Plugin names never become label
# values or object names (a label cannot hold "@" or "/"); they stay in specs, statuses and
# messages.
MAX_HANDLER_ID = 128
MAX_PLUGIN_HANDLERS = 32
# The SandboxPolicy schema checks that no two plugins declare the same CLI command. CEL has no
# set type, so the API server estimates that rule's cost from every pair of command slots:
# (plugins x commands)^2 comparisons of ids up to MAX_COMMAND_ID long. These bounds keep the
# estimate at about three quarters of the API server's per-rule budget (64 plugins of 8
# commands costs the same; 256 plugins of 32 commands would exceed it a hundredfold).
MAX_POLICY_PLUGINS = 32
MAX_PLUGIN_COMMANDS = 16
MAX_COMMAND_ID = 48
ENTRY_ID_CHARS = r"[A-Za-z0-9]([-A-Za-z0-9_.:/]*[A-Za-z0-9])?"
ENTRY_ID_PATTERN = f"^{ENTRY_ID_CHARS}$"
USES_PLUGIN_PREFIX = "plugin:"
USES_COMMAND_PREFIX = "command:"
USES_BUILTIN_SHELL = "builtin:shell"
PLUGIN_NAME_PART = r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?"
PLUGIN_NAME_CHARS = rf"([a-z0-9]([-a-z0-9]*[a-z0-9])?|@{PLUGIN_NAME_PART}/{PLUGIN_NAME_PART})"
PLUGIN_NAME_PATTERN = f"^{PLUGIN_NAME_CHARS}$"
MAX_PLUGIN_NAME = 128
USES_PATTERN = (
    rf"^({USES_PLUGIN_PREFIX}{PLUGIN_NAME_CHARS}/{ENTRY_ID_CHARS}"
    rf"|{USES_COMMAND_PREFIX}{ENTRY_ID_CHARS}|{USES_BUILTIN_SHELL})$"
)

QuantityMap = dict[str, int | Annotated[str, Field(max_length=MAX_QUANTITY)]]
# A container's requests or limits, or a policy's bounds on them.
Quantities = Annotated[QuantityMap, Field(max_length=MAX_RESOURCES)]
# A claim's requests or limits: storage is the one resource a claim has.
ClaimQuantities = Annotated[QuantityMap, Field(max_length=4)]
DnsLabel = Annotated[str, Field(max_length=63, pattern=DNS_LABEL_PATTERN)]
# A plugin's name: a DNS label (eslint) or a scoped package name (@kb-labs/quality).
PluginName = Annotated[str, Field(max_length=MAX_PLUGIN_NAME, pattern=PLUGIN_NAME_PATTERN)]
# What most Kubernetes objects' names are (Secrets, claims, ServiceAccounts, StepRuns).
DnsSubdomain = Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
Image = Annotated[str, Field(max_length=1024, min_length=1)]
EnvMap = Annotated[dict[str, str], Field(max_length=MAX_ENV_VARS)]
Tolerations = Annotated[list[dict[str, Any]], Field(max_length=64)]
TimeoutSeconds = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_SECONDS)]
# A backoff or a grace period: an hour at the most.
WaitSeconds = Annotated[int, Field(ge=0, le=3600)]
# A command line or its arguments, bounded as a container's.
Argv = Annotated[list[Annotated[str, Field(max_length=MAX_STRING)]], Field(max_length=MAX_ARGS)]


def list_map(key: str, max_length: int | None = None) -> Any:
    """A list whose items are identified by ``key`` (unique), of at most ``max_length``."""
    return Field(
        max_length=max_length,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]},
    )


def list_set(max_length: int) -> Any:
    """A list of distinct items, of at most ``max_length``."""
    return Field(max_length=max_length, json_schema_extra={"x-kubernetes-list-type": "set"})


def _one_line_descriptions(schema: JsonDict) -> None:
    """A field's description is its docstring, wrapped to the source's line length; kubectl
    explain wraps descriptions to its own width, so the schema has each on one line."""
    properties = schema.get("properties")
    for prop in properties.values() if isinstance(properties, dict) else ():
        description = prop.get("description") if isinstance(prop, dict) else None
        if isinstance(description, str) and isinstance(prop, dict):
            prop["description"] = " ".join(description.splitlines())


class ApiModel(BaseModel):
    """Base for API objects: camelCase on the wire, snake_case in Python, unknown fields refused.

    Enum fields hold enum members; they become their strings only where an object is
    serialised (``to_api``, ``model_dump(mode="json")``).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        json_schema_extra=_one_line_descriptions,
    )

    def to_api(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optional fields omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Mode(enum.StrEnum):
    """How the step's Pod is built."""

    LOCAL = "local"
    SANDBOX = "sandbox"


class Permission(enum.StrEnum):
    """A capability a sandbox step may need and a SandboxPolicy may grant."""

    NETWORK_EGRESS = "network.egress"
    SECRETS_READ = "secrets.read"
    FILESYSTEM_WRITABLE = "filesystem.writable"
    WORKSPACES_MOUNT = "workspaces.mount"
    # Artifacts (spec.artifacts): downloading inputs, uploading outputs.
    ARTIFACTS_READ = "artifacts.read"
    ARTIFACTS_WRITE = "artifacts.write"


# What a step asks for, a plugin's entry point needs, or a policy grants: a set of permissions.
PermissionSet = Annotated[list[Permission], list_set(8)]


class Phase(enum.StrEnum):
    """Where the step is in its life; the last five are terminal."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset(
    {Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT, Phase.CANCELLED, Phase.REJECTED}
)


def is_terminal_phase(phase: str | None) -> bool:
    """Whether a phase as read from the API is terminal; a phase this version does not know
    (written by a newer operator) is not."""
    return phase in TERMINAL_PHASES


class Reason(enum.StrEnum):
    """Machine-readable reasons written to status.reason, attempts[].reason and conditions."""

    CREATED = "Created"
    POD_CREATED = "PodCreated"
    STARTED = "Started"
    RETRYING = "Retrying"
    COMPLETED = "Completed"
    ERROR = "Error"
    OOM_KILLED = "OOMKilled"
    # Exit 137 (SIGKILL) without evidence that the container's memory limit was reached.
    KILLED = "Killed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    STARTUP_TIMEOUT = "StartupTimeout"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CANCELLED = "Cancelled"
    PERMISSION_DENIED = "PermissionDenied"
    POLICY_NOT_FOUND = "PolicyNotFound"
    INVALID_SPEC = "InvalidSpec"
    POD_DELETED = "PodDeleted"
    POD_EVICTED = "Evicted"
    NODE_LOST = "NodeLost"
    CREATE_FAILED = "PodCreateFailed"
    ARTIFACT_UPLOAD_FAILED = "ArtifactUploadFailed"
    ARTIFACT_DOWNLOAD_FAILED = "ArtifactDownloadFailed"
    # The operator could not carry the step forward: its reconcile kept failing, or the API
    # server refused a write the step needs (status too large, forbidden).
    RECONCILE_FAILED = "ReconcileFailed"
    WORKSPACE_UNAVAILABLE = "WorkspaceUnavailable"
    # Kueue: waiting for the step's Workload to be admitted; admitted; waited longer than
    # queueTimeoutSeconds; the attempt was evicted (preempted) by Kueue and is queued again.
    QUEUED = "Queued"
    ADMITTED = "Admitted"
    QUEUE_TIMEOUT = "QueueTimeout"
    PREEMPTED = "Preempted"


class SecretKeyRef(ApiModel):
    """A key of a Secret in the StepRun's namespace."""

    name: DnsSubdomain
    """Name of a Secret in the StepRun's namespace."""
    key: str = Field(max_length=253, pattern=SECRET_KEY_PATTERN)
    """Key inside that Secret."""


class SecretProjection(ApiModel):
    """One key of an existing Secret, copied into the step's own Secret and exposed to the step."""

    name: str = Field(max_length=253, pattern=ENV_NAME_PATTERN)
    """Environment variable name (as: env) or file name under STEPRUN_SECRETS_DIR (as: file)."""
    secret_key_ref: SecretKeyRef
    """The Secret key whose value is projected."""
    as_: Literal["env", "file"] = Field("env", alias="as")
    """How the value reaches the step: an env var (default) or a file."""


# A Kubernetes label value.
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]


class WorkflowRef(ApiModel):
    """Which workflow run this step belongs to; each value becomes a label on the Pod."""

    name: LabelValue | None = None
    """Workflow name."""
    run_id: LabelValue | None = None
    """Workflow run identifier."""
    step_id: LabelValue | None = None
    """Step identifier within the run."""
    job_id: LabelValue | None = None
    """Job identifier within the run (the group of steps this one belongs to)."""


# ---------------------------------------------------------------- trace context (W3C)

# W3C Trace Context, level 1: version-traceId-parentId-flags, lowercase hex. A version other
# than 00 may carry more fields after the flags (the spec's forward compatibility); ff is invalid.
TRACEPARENT_PATTERN = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[-0-9a-zA-Z.]*)?$"
# tracestate: up to 32 comma-separated key=value members, optional spaces around the commas.
_TRACESTATE_KEY = r"([a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"
_TRACESTATE_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TRACESTATE_MEMBER = f"{_TRACESTATE_KEY}={_TRACESTATE_VALUE}"
TRACESTATE_PATTERN = rf"^[ \t]*{_TRACESTATE_MEMBER}([ \t]*,[ \t]*{_TRACESTATE_MEMBER})*[ \t]*$"
MAX_TRACESTATE = 512
MAX_TRACESTATE_MEMBERS = 32
_TRACEPARENT = "spec.context.trace.traceparent"
TRACEPARENT_MESSAGES = {
    "version": f"{_TRACEPARENT} version ff is invalid",
    "length": f"{_TRACEPARENT} of version 00 has exactly 55 characters",
    "trace-id": f"{_TRACEPARENT} trace-id must not be all zeros",
    "parent-id": f"{_TRACEPARENT} parent-id must not be all zeros",
}
TRACESTATE_MESSAGE = f"spec.context.trace.tracestate has more than {MAX_TRACESTATE_MEMBERS} members"


class TraceContext(ApiModel):
    """The W3C Trace Context of the workflow step, as the engine propagates it."""

    traceparent: str = Field(max_length=256, pattern=TRACEPARENT_PATTERN)
    """W3C traceparent, e.g. 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01; passed to
    the step as TRACEPARENT and recorded as the Pod annotation steprun.dev/traceparent."""
    tracestate: str | None = Field(None, max_length=MAX_TRACESTATE, pattern=TRACESTATE_PATTERN)
    """W3C tracestate (at most 32 key=value members); passed to the step as TRACESTATE and
    recorded as the Pod annotation steprun.dev/tracestate."""

    @field_validator("traceparent")
    @classmethod
    def _valid_ids(cls, value: str) -> str:
        if problem := traceparent_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("tracestate")
    @classmethod
    def _few_members(cls, value: str | None) -> str | None:
        if value is not None and len(value.split(",")) > MAX_TRACESTATE_MEMBERS:
            raise ValueError(TRACESTATE_MESSAGE)
        return value


def traceparent_problem(value: str) -> str | None:
    """What the W3C rules beyond the pattern say is wrong with a traceparent, if anything."""
    version, trace_id, parent_id = value[:2], value[3:35], value[36:52]
    if version == "ff":
        return TRACEPARENT_MESSAGES["version"]
    if version == "00" and len(value) != 55:
        return TRACEPARENT_MESSAGES["length"]
    if set(trace_id) == {"0"}:
        return TRACEPARENT_MESSAGES["trace-id"]
    if set(parent_id) == {"0"}:
        return TRACEPARENT_MESSAGES["parent-id"]
    return None


class StepContext(ApiModel):
    """What the workflow hands to the step: env, inputs and secrets."""

    workflow: WorkflowRef | None = None
    """The workflow run this step belongs to (labels and context.json)."""
    env: EnvMap = Field(default_factory=dict)
    """Workflow-level environment; spec.env overrides it."""
    inputs: dict[str, Any] = Field(default_factory=dict)
    """Free JSON object (at most 256 KiB serialized) mounted read-only as context.json at
    STEPRUN_CONTEXT_FILE."""
    secrets: Annotated[list[SecretProjection], list_map("name", MAX_SECRETS)] = Field(
        default_factory=list
    )
    """Keys projected from existing Secrets in the same namespace; names are unique."""
    trace: TraceContext | None = None
    """W3C Trace Context of the step: TRACEPARENT and TRACESTATE in its environment,
    steprun.dev/traceparent and steprun.dev/tracestate annotations on its Pod."""


class RetryPolicy(ApiModel):
    """How failed attempts are retried; each attempt runs in a new Pod. Two budgets: limit for
    failures of the step itself and of its configuration, platformLimit for failures of the
    platform (status.attempts[].failure.category Platform); a retry spends only its own
    budget."""

    limit: int = Field(0, ge=0, le=MAX_RETRIES)
    """How many times an attempt that failed by the step's own doing (or its configuration's)
    is retried (0: never)."""
    backoff_seconds: WaitSeconds = 10
    """Seconds between such a failed attempt and the next one."""
    platform_limit: int | None = Field(None, ge=0, le=MAX_PLATFORM_RETRIES)
    """How many times an attempt the platform failed is retried, without spending limit
    (default 2; 0: never): its Pod deleted, evicted or preempted, its node lost, an image
    registry or the scheduler not delivering within startupTimeoutSeconds, the artifact store
    failing. A platform retry prefers a node other than the one the failed attempt ran on."""
    platform_backoff_seconds: WaitSeconds | None = None
    """Seconds between an attempt the platform failed and the next one (default:
    backoffSeconds)."""

    @property
    def platform_retries(self) -> int:
        return DEFAULT_PLATFORM_RETRIES if self.platform_limit is None else self.platform_limit


class ResourceRequirements(ApiModel):
    """Compute resources of the step container, as in a container's resources."""

    requests: Quantities | None = None
    """Like a container's resources.requests, e.g. {cpu: 100m}."""
    limits: Quantities | None = None
    """Like a container's resources.limits, e.g. {memory: 256Mi}."""


class PodTemplate(ApiModel):
    """The few Pod fields a step author may set on the step's Pod."""

    node_selector: dict[str, str] | None = None
    """Pod nodeSelector."""
    tolerations: Tolerations | None = None
    """Pod tolerations, as in a PodSpec."""
    labels: dict[str, str] | None = None
    """Extra Pod labels; steprun.dev/ labels cannot be overridden."""
    annotations: dict[str, str] | None = None
    """Extra Pod annotations."""


class SandboxSpec(ApiModel):
    """Which SandboxPolicy admits the step, which plugin it runs and what more it asks for."""

    policy: DnsSubdomain = "default"
    """Name of the SandboxPolicy that must admit this step."""
    plugin: PluginName | None = None
    """Plugin declared in that policy (a DNS label or a scoped name, @scope/name); the step runs
    the plugin's command. Exactly one of plugin and uses is set."""
    uses: str | None = Field(None, max_length=256, pattern=USES_PATTERN)
    """What the step runs, as a workflow step's uses names it: plugin:<plugin>/<handler> (a
    workflow handler of a plugin; <plugin> may be scoped, plugin:@scope/name/handler, or the
    short name of exactly one scoped plugin of the policy), command:<name> (a CLI command of
    one of the policy's plugins; context.inputs become its flags) or builtin:shell (spec.script
    in the policy's shellPlugin).
    Resolved at admission and frozen in status.admitted. Exactly one of plugin and uses is set."""
    permissions: PermissionSet = Field(default_factory=list)
    """Permissions this step asks for, beyond those of its plugin and its handler or command."""


# ---------------------------------------------------------------- workspaces

MAX_WORKSPACES = 16
WORKSPACE_ROOT = "/workspace"
# A relative path without "..": where a subPath or mountPath may not climb out of its volume.
SUB_PATH_PATTERN = r"^[^/]([^/]*/?)*$"
AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]


class ClaimReference(ApiModel):
    """An existing PersistentVolumeClaim of the StepRun's namespace."""

    claim_name: DnsSubdomain
    """Name of the PersistentVolumeClaim; the creator must be allowed to get it."""


class ClaimResources(ApiModel):
    """The storage a claim asks for, as in a PersistentVolumeClaim's resources."""

    requests: ClaimQuantities
    """At least {storage: <size>}, e.g. {storage: 1Gi}."""
    limits: ClaimQuantities | None = None
    """Like a claim's resources.limits."""


class ClaimSpec(ApiModel):
    """The part of a PersistentVolumeClaim spec a workspace template may set."""

    access_modes: Annotated[list[AccessMode], list_set(4)] = Field(
        default_factory=lambda: list[AccessMode](["ReadWriteOnce"])
    )
    """Access modes of the claim (default [ReadWriteOnce]). A ReadWriteOnce volume is mounted by
    one node at a time: concurrent steps of a run then share a node."""
    resources: ClaimResources
    """The storage the claim asks for."""
    storage_class_name: DnsSubdomain | None = None
    """StorageClass of the claim (default: the cluster's default class)."""
    volume_mode: Literal["Filesystem"] | None = None
    """Only Filesystem: a workspace is a directory."""


class ClaimTemplate(ApiModel):
    """One PersistentVolumeClaim per workflow run and workspace name, made by the operator."""

    spec: ClaimSpec
    """Spec of the run's claim."""


class EmptyDirSource(ApiModel):
    """Scratch space for this step alone, gone with its Pod."""

    medium: Literal["", "Memory"] | None = Field(
        None, description='"" (the node\'s disk, default) or Memory (tmpfs).'
    )
    size_limit: int | Annotated[str, Field(max_length=MAX_QUANTITY)] | None = None
    """Largest size of the directory, e.g. 1Gi."""


class Workspace(ApiModel):
    """A named directory mounted into the step's container; exactly one source is set."""

    name: DnsLabel
    """Workspace name, a DNS label unique in the list."""
    mount_path: str | None = Field(
        None,
        description=f"Absolute path in the container (default {WORKSPACE_ROOT}/<name>).",
        max_length=1024,
        pattern=r"^/",
    )
    sub_path: str | None = Field(None, max_length=1024, pattern=SUB_PATH_PATTERN)
    """Directory inside the volume to mount instead of its root (relative)."""
    read_only: bool = False
    """Mount read-only (default false)."""
    persistent_volume_claim: ClaimReference | None = None
    """An existing PersistentVolumeClaim of the namespace."""
    volume_claim_template: ClaimTemplate | None = None
    """A claim shared by every StepRun of the workflow run (context.workflow name and runId)
    that names this workspace; created for the first, garbage-collected when the last StepRun
    using it is deleted."""
    empty_dir: EmptyDirSource | None = None
    """Scratch space for this step alone."""

    @property
    def path(self) -> str:
        """Where the workspace appears in the container."""
        return self.mount_path or f"{WORKSPACE_ROOT}/{self.name}"

    @model_validator(mode="after")
    def _one_source(self) -> Workspace:
        sources = [
            self.persistent_volume_claim,
            self.volume_claim_template,
            self.empty_dir,
        ]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(WORKSPACE_ONE_SOURCE_MESSAGE)
        if self.sub_path is not None and ".." in self.sub_path.split("/"):
            raise ValueError(SUB_PATH_MESSAGE)
        return self


WORKSPACE_ONE_SOURCE_MESSAGE = (
    "spec.workspaces[] needs exactly one source: persistentVolumeClaim, volumeClaimTemplate or "
    "emptyDir"
)
WORKSPACE_PATHS_MESSAGE = "spec.workspaces[] must have distinct mount paths"
SUB_PATH_MESSAGE = "spec.workspaces[].subPath must be a relative path without '..'"
WORKSPACE_TEMPLATE_MESSAGE = (
    "spec.workspaces[] with volumeClaimTemplate needs spec.context.workflow.name and runId: "
    "the claim is shared by the steps of one workflow run"
)


# ---------------------------------------------------------------- artifacts

MAX_ARTIFACTS = 16
# An absolute path other than "/"; the renderer also refuses "." and ".." components.
ARTIFACT_PATH_PATTERN = r"^/[^\x00]+$"
ArtifactPath = Annotated[str, Field(max_length=4096, pattern=ARTIFACT_PATH_PATTERN)]


class ArtifactOutput(ApiModel):
    """A file or directory the step leaves behind, uploaded to the artifact repository."""

    name: DnsLabel
    """Name of the artifact, unique among the step's outputs (a DNS label)."""
    path: ArtifactPath
    """Absolute path of a file or directory in the step's container, packed as tar+gzip after
    the step's command ends."""


class ArtifactSource(ApiModel):
    """Where an input comes from: an artifact of an earlier StepRun in the same namespace."""

    step_run: DnsSubdomain
    """Name of the StepRun that uploaded the artifact (same namespace)."""
    artifact: DnsLabel
    """Name of that StepRun's output."""
    attempt: int | None = Field(None, ge=1)
    """Which attempt's upload to use (default: the latest attempt that uploaded it)."""


class ArtifactInput(ApiModel):
    """An artifact downloaded (sha256 checked) and unpacked before the step starts."""

    name: DnsLabel
    """Name of the input, unique among the step's inputs (a DNS label)."""
    from_: ArtifactSource = Field(alias="from")
    """The StepRun and artifact to download."""
    path: ArtifactPath
    """Absolute path where the file or directory appears in the step's container."""


class ArtifactsSpec(ApiModel):
    """Files that travel through the artifact repository (an S3-compatible store).

    A step with artifacts runs its command through steprun's artifact helper, so it needs
    spec.command or spec.script (or, for sandbox steps, a plugin with a command).
    """

    outputs: Annotated[list[ArtifactOutput], list_map("name", MAX_ARTIFACTS)] = Field(
        default_factory=list
    )
    """Files or directories uploaded after the step's command ends."""
    inputs: Annotated[list[ArtifactInput], list_map("name", MAX_ARTIFACTS)] = Field(
        default_factory=list
    )
    """Artifacts of earlier StepRuns, downloaded before the step starts."""
    upload_on_failure: bool = True
    """Upload outputs also when the step's command fails (default true), so the reports of
    failing tests survive."""


class ArtifactStatus(ApiModel):
    """One uploaded artifact."""

    name: str
    """The output's name."""
    attempt: int
    """The attempt that uploaded it."""
    key: str
    """Object key in the artifact repository's bucket."""
    size: int
    """Size of the tar+gzip object in bytes."""
    sha256: str
    """sha256 of the object, hex."""


class StepRunSpec(ApiModel):
    """One workflow step to run as a Pod."""

    mode: Mode = Mode.LOCAL
    """local: a plain Pod. sandbox: a restricted Pod admitted by a SandboxPolicy."""
    image: Image | None = None
    """Container image; required for local steps, taken from the plugin for sandbox."""
    command: Argv | None = None
    """Like a container's command."""
    args: Argv | None = None
    """Like a container's args."""
    script: str | None = Field(None, max_length=MAX_SCRIPT)
    """Shell script run under /bin/sh -c; exclusive with command and args."""
    working_dir: str | None = Field(None, max_length=4096)
    """Working directory of the step."""
    env: EnvMap = Field(default_factory=dict)
    """Step environment; overrides context.env. STEPRUN_* names are reserved."""
    context: StepContext = Field(default_factory=StepContext)
    """Workflow context: env, inputs, secrets."""
    timeout_seconds: TimeoutSeconds | None = None
    """Run-time limit, enforced as the Pod's activeDeadlineSeconds (default: the operator's; for
    sandbox steps at most the policy's maxTimeoutSeconds)."""
    startup_timeout_seconds: TimeoutSeconds | None = None
    """A Pod not running by then (image pull failure, unschedulable) ends the step Failed
    (default: the operator's, 300)."""
    queue_timeout_seconds: TimeoutSeconds | None = None
    """For a step queued by Kueue (label kueue.x-k8s.io/queue-name): how long one wait for
    admission may last before the step ends Failed with reason QueueTimeout (default: no
    limit). The startup timeout counts only from admission."""
    termination_grace_period_seconds: WaitSeconds = 30
    """Grace period given to the step on cancel and timeout."""
    cancel: bool = False
    """Set to true to cancel: the Pod is deleted and the step ends Cancelled."""
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retries of failed attempts."""
    resources: ResourceRequirements | None = None
    """The step container's resources."""
    service_account_name: DnsSubdomain | None = None
    """ServiceAccount of the Pod; local steps only."""
    ttl_seconds_after_finished: int | None = Field(None, ge=0, le=MAX_TIMEOUT_SECONDS * 52)
    """Delete the StepRun this many seconds after it reaches a terminal phase."""
    pod_template: PodTemplate | None = None
    """Scheduling and metadata for the step's Pod."""
    sandbox: SandboxSpec | None = None
    """Sandbox settings; only with mode: sandbox."""
    workspaces: Annotated[list[Workspace] | None, list_map("name", MAX_WORKSPACES)] = None
    """Directories mounted into the step's container; names are unique. workingDir defaults to
    the first one's mount path."""
    artifacts: ArtifactsSpec | None = None
    """Outputs uploaded to and inputs downloaded from the artifact repository; needs a
    repository configured by the cluster admin."""

    @property
    def workspace_list(self) -> list[Workspace]:
        return self.workspaces or []

    @model_validator(mode="after")
    def _workspaces_fit(self) -> StepRunSpec:
        if any(w.volume_claim_template is not None for w in self.workspace_list):
            workflow = self.context.workflow
            if workflow is None or not workflow.name or not workflow.run_id:
                raise ValueError(WORKSPACE_TEMPLATE_MESSAGE)
        paths = [w.path for w in self.workspace_list]
        if len(set(paths)) != len(paths):
            raise ValueError(WORKSPACE_PATHS_MESSAGE)
        return self


class FailureCategory(enum.StrEnum):
    """Whose failure it is, which says what to do about it."""

    # The step's own code: it exited non-zero, ran out of memory, was killed, timed out.
    STEP = "Step"
    # The cluster: the Pod was deleted, evicted or preempted, its node was lost, the image
    # registry or the scheduler did not deliver, the API server refused or failed a request.
    PLATFORM = "Platform"
    # The step as written or the rules it meets: an invalid spec, denied by policy, a missing
    # Secret, claim or image.
    CONFIG = "Config"


class FailureStage(enum.StrEnum):
    """How far the attempt got before it failed."""

    ADMISSION = "Admission"
    SCHEDULING = "Scheduling"
    IMAGE_PULL = "ImagePull"
    INIT = "Init"
    RUNNING = "Running"
    FINISHING = "Finishing"


class FailureEvent(ApiModel):
    """An Event about the failed attempt's Pod, as the cluster reported it."""

    reason: str
    """The Event's reason, e.g. FailedScheduling, FailedMount, Failed, Evicted."""
    message: str | None = None
    """The Event's message (secret values of the step masked)."""
    type: str | None = None
    """Normal or Warning."""
    count: int | None = None
    """How many times it was reported."""
    last_time: str | None = None
    """When it was last reported (RFC 3339)."""


class Failure(ApiModel):
    """Why an attempt, or the step, failed, in fields a workflow engine can branch on without
    reading the message: retry on category Platform, report category Step, alert on Config."""

    category: FailureCategory
    """Step (the step's own code), Platform (node, eviction, preemption, image registry,
    scheduler, API server, a deleted Pod) or Config (invalid spec, denied by policy, missing
    Secret, claim or image)."""
    stage: FailureStage
    """Where the attempt failed: Admission (before any Pod ran), Scheduling, ImagePull, Init
    (volumes, init containers, container creation), Running (the step's command) or
    Finishing (uploading its outputs)."""
    reason: str
    """The same machine-readable reason as the attempt's reason, e.g. OOMKilled, PodDeleted."""
    container: str | None = None
    """The container that failed, when one did (step for the step's command)."""
    exit_code: int | None = None
    """That container's exit code, when it exited."""
    signal: int | None = None
    """The signal that ended it, from an exit code above 128 (9 for SIGKILL)."""
    node: str | None = None
    """The node the attempt's Pod was on, if it got one."""
    events: list[FailureEvent] | None = Field(None, max_length=MAX_FAILURE_EVENTS)
    """The last few Warning Events of the attempt's Pod, oldest first: the scheduler's,
    kubelet's or controllers' own words, when they explain the failure."""


class AttemptStatus(ApiModel):
    """One attempt of the step: one Pod."""

    attempt: int
    """Attempt number, 1 for the first."""
    pod_name: str
    """Name of the attempt's Pod."""
    exit_code: int | None = None
    """Exit code of the step container, once it ended."""
    reason: str | None = None
    """Machine-readable outcome, e.g. Completed, Error, OOMKilled."""
    message: str | None = None
    """Human-readable detail of the outcome."""
    creation_time: str | None = None
    """When the operator created the attempt's Pod (RFC 3339, the operator's clock);
    startupTimeoutSeconds counts from here."""
    start_time: str | None = None
    """When the attempt started running (RFC 3339)."""
    completion_time: str | None = None
    """When the attempt ended (RFC 3339)."""
    failure: Failure | None = None
    """Why the attempt failed, set on every failed attempt. Its category says which retry
    budget the attempt spent: Platform spends retries.platformLimit, any other retries.limit."""


class QueueStatus(ApiModel):
    """Where a step queued by Kueue waits, and how long it waited."""

    name: str
    """The LocalQueue named by the kueue.x-k8s.io/queue-name label."""
    cluster_queue: str | None = None
    """The ClusterQueue behind the LocalQueue, once known."""
    workload: str
    """The Workload the operator created for the step (owned by the StepRun)."""
    queued_time: str | None = None
    """When the current wait for admission began (RFC 3339); unset while admitted."""
    admitted_time: str | None = None
    """When Kueue last admitted the step (RFC 3339)."""
    wait_seconds: int | None = None
    """Seconds the step has waited for admission in all, over every wait that ended."""
    flavors: dict[str, str] | None = None
    """The admitted ResourceFlavor per resource, e.g. {cpu: default}."""


class Condition(ApiModel):
    """A standard Kubernetes condition; type Succeeded summarises the step."""

    type: str
    """Condition type, e.g. Succeeded."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown (Unknown while the step runs)."""
    reason: str | None = None
    """Machine-readable reason of the last transition."""
    message: str | None = None
    """Human-readable detail."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """metadata.generation the condition was computed from."""


class StepRunStatus(ApiModel):
    """Observed state of the step; written only by the operator."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    # A phase this version knows is read as its member; any other string (a phase added by a
    # newer operator) is kept as it is rather than refused. The schema still lists the phases
    # this version writes.
    phase: Annotated[
        Phase | str | None,
        Field(union_mode="left_to_right"),
        WithJsonSchema({"type": "string", "enum": [p.value for p in Phase]}),
    ] = None
    """Pending, Running, or one of the terminal phases Succeeded, Failed, TimedOut, Cancelled,
    Rejected; a terminal phase never changes."""
    reason: str | None = None
    """Machine-readable reason for the phase, e.g. Completed, Error, OOMKilled, Killed,
    DeadlineExceeded, StartupTimeout, ImagePullFailed, Cancelled, PermissionDenied,
    PolicyNotFound, InvalidSpec; status.failure says whose failure it was."""
    message: str | None = None
    """Human-readable explanation that says what to fix."""
    exit_code: int | None = None
    """Exit code of the last attempt's step container."""
    failure: Failure | None = None
    """Why the step failed: set with a terminal phase other than Succeeded and Cancelled (the
    last attempt's failure, or the admission's)."""
    outputs: dict[str, Any] | None = None
    """The JSON object the step wrote to STEPRUN_OUTPUT_FILE (at most 4 KiB), if any."""
    pod_name: str | None = None
    """Pod of the current attempt."""
    attempt: int | None = None
    """Number of the current attempt, 1 for the first."""
    attempts: list[AttemptStatus] = Field(default_factory=list)
    """Every attempt so far, oldest first."""
    start_time: str | None = None
    """When the first Pod was created (RFC 3339); duration counts from here."""
    completion_time: str | None = None
    """When the step reached a terminal phase (RFC 3339)."""
    duration: str | None = None
    """Wall-clock time from startTime to completionTime, e.g. "12s" or "3m4s"; set when the step
    reaches a terminal phase (kubectl get shows it)."""
    observed_generation: int | None = None
    """metadata.generation this status was computed from."""
    conditions: Annotated[list[Condition], list_map("type")] = Field(default_factory=list)
    """Standard conditions; Succeeded summarises the outcome."""
    next_attempt_time: str | None = None
    """When the next attempt's Pod may be created (retry backoff, RFC 3339)."""
    queue: QueueStatus | None = None
    """Set for a step queued by Kueue: its queues, Workload and waits."""
    # Unknown fields preserved: the snake_case keys of decisions stored by older operators.
    admitted: AdmittedSandbox | None = Field(
        None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """The sandbox admission decision, frozen when the step was admitted so later policy edits
    never change a started step (its retries included)."""
    artifacts: list[ArtifactStatus] | None = Field(None, max_length=MAX_ARTIFACTS * MAX_ATTEMPTS)
    """Every artifact uploaded, by every attempt, oldest first; only complete uploads are listed."""


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    uid: str = ""
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")
    deletion_timestamp: str | None = Field(default=None, alias="deletionTimestamp")


class ApiObject(BaseModel):
    """An object of this API as read from the API server; each kind adds its spec (and status).

    Fields the operator does not read (managedFields, a newer version's) are ignored.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: ObjectMeta

    @classmethod
    def from_body(cls, body: Any) -> Self:
        return cls.model_validate(dict(body))


class StepRun(ApiObject):
    """A StepRun as read from the API server."""

    kind: Literal["StepRun"] = "StepRun"
    spec: StepRunSpec
    status: StepRunStatus = Field(default_factory=StepRunStatus)

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def uid(self) -> str:
        return self.metadata.uid


# ---------------------------------------------------------------- SandboxPolicy


class PluginHandler(ApiModel):
    """A workflow handler of a plugin; a step runs it with uses: plugin:<plugin>/<id>."""

    id: str = Field(max_length=MAX_HANDLER_ID, pattern=ENTRY_ID_PATTERN)
    """Handler id, unique within the plugin; may hold / and :, e.g. fix or notes/draft."""
    command: Argv | None = None
    """The handler's command (default: the plugin's command)."""
    args: Argv | None = None
    """Arguments after the command; the step's spec.args are appended."""
    permissions: PermissionSet = Field(default_factory=list)
    """Permissions this handler needs beyond the plugin's own."""


class PluginCommand(ApiModel):
    """A CLI command of a plugin; a step runs it with uses: command:<id>, its inputs as flags."""

    id: str = Field(max_length=MAX_COMMAND_ID, pattern=ENTRY_ID_PATTERN)
    """Command name, unique among the commands of every plugin of the policy, e.g. lint or
    mind:rag-index."""
    command: Argv | None = None
    """The command line before the flags (default: the plugin's command); the flags adapted from
    context.inputs follow, then the step's spec.args."""
    permissions: PermissionSet = Field(default_factory=list)
    """Permissions this command needs beyond the plugin's own."""


class Plugin(ApiModel):
    """A tool sandbox steps may run: its image, its entry points and the permissions they need."""

    name: PluginName
    """Plugin name that steps ask for: a DNS label or a scoped name (@scope/name)."""
    image: Image
    """Image the plugin runs in."""
    command: Argv | None = None
    """The plugin's command; step args are appended."""
    permissions: PermissionSet = Field(default_factory=list)
    """Permissions the plugin itself needs, whichever entry point runs."""
    version: str | None = Field(None, max_length=128, min_length=1)
    """The plugin's version, as its manifest gives it (recorded at admission)."""
    handlers: Annotated[list[PluginHandler] | None, list_map("id", MAX_PLUGIN_HANDLERS)] = None
    """Workflow handlers (uses: plugin:<plugin>/<id>); ids are unique."""
    commands: Annotated[list[PluginCommand] | None, list_map("id", MAX_PLUGIN_COMMANDS)] = None
    """CLI commands (uses: command:<id>); an id names one command of one plugin of the policy."""
    # Tenancy: what of a step author's environment reaches the plugin process.
    allowed_env: list[Annotated[str, Field(max_length=253)]] | None = Field(
        None, max_length=MAX_ENV_VARS
    )
    """Glob patterns of the author env names (spec.env, context.env, secret env projections) the
    plugin accepts; others are left off. Unset: every name except loader and interpreter hooks
    (LD_*, NODE_OPTIONS, PYTHON*, JAVA_TOOL_OPTIONS, BASH_ENV, ENV, PERL5OPT, RUBYOPT,
    GIT_CONFIG_*, PATH, ...)."""


class EgressRule(ApiModel):
    """Destinations sandbox Pods may reach when network.egress is granted."""

    cidr: str = Field(max_length=64)
    """Destination CIDR, e.g. 10.0.0.0/8."""
    ports: Annotated[list[Annotated[int, Field(ge=1, le=65535)]] | None, list_set(64)] = None
    """TCP ports; all ports when empty."""


class LabelSelectorRequirement(ApiModel):
    """A label selector requirement, as in metav1.LabelSelectorRequirement."""

    key: str
    """Label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key's value relates to values."""
    values: list[str] | None = None
    """Values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(ApiModel):
    """A label selector, as in metav1.LabelSelector; empty selects everything."""

    match_labels: dict[str, str] | None = None
    """Labels that must all be present with these values."""
    match_expressions: list[LabelSelectorRequirement] | None = None
    """Requirements that must all hold."""


class SandboxPolicySpec(ApiModel):
    """What sandbox steps may do; written by cluster admins."""

    namespace_selector: LabelSelector = Field(default_factory=LabelSelector)
    """Namespaces whose StepRuns may use this policy (empty: all)."""
    grants: PermissionSet = Field(default_factory=list)
    """Permissions this policy grants."""
    plugins: Annotated[list[Plugin], list_map("name", MAX_POLICY_PLUGINS)] = Field(
        default_factory=list
    )
    """Plugins steps may run; names are unique."""
    max_timeout_seconds: TimeoutSeconds | None = None
    """Largest timeoutSeconds a step may have."""
    default_resources: ResourceRequirements | None = None
    """Resources for steps that set none."""
    max_resources: Quantities | None = None
    """Largest request or limit per resource, e.g. {cpu: '2', memory: 1Gi}."""
    runtime_class_name: str | None = Field(None, max_length=253)
    """RuntimeClass of sandbox Pods."""
    egress: list[EgressRule] = Field(default_factory=list, max_length=64)
    """Egress allowed when network.egress is granted."""
    pod_labels: dict[str, str] | None = None
    """Labels stamped on every sandbox Pod of this policy."""
    env: EnvMap | None = None
    """Default environment of this policy's steps (overrides only the operator's defaults);
    STEPRUN_* names are reserved."""
    # Tenancy: bounds a step cannot skip, and scheduling that only the admin chooses.
    max_termination_grace_period_seconds: WaitSeconds | None = None
    """Largest grace period a sandbox step gets on cancel and timeout; a step asking for more
    gets this much (default 30)."""
    node_selector: dict[str, str] | None = None
    """nodeSelector of every sandbox Pod of this policy (steps set none)."""
    tolerations: Tolerations | None = None
    """Tolerations of every sandbox Pod of this policy (steps set none)."""
    # Workspaces of sandbox steps: the workspaces.mount grant lets them have emptyDir and
    # volumeClaimTemplate workspaces; existing claims must also be listed here.
    workspace_claims: Annotated[list[DnsSubdomain] | None, list_set(256)] = None
    """Existing PersistentVolumeClaims (by name, in the step's namespace) that sandbox steps
    granted workspaces.mount may mount; read-only unless filesystem.writable is granted too."""

    # Plugin entry points.
    shell_plugin: PluginName | None = None
    """The plugin that runs uses: builtin:shell steps: their spec.script runs under /bin/sh in
    this plugin's image, with its permissions. Without it the policy refuses builtin:shell."""


class AdmittedSandbox(ApiModel):
    """What admission resolved for a sandbox step, frozen in status.admitted.

    Unknown keys are ignored: a step admitted by an operator before this model existed has its
    decision stored with snake_case keys, which the field names still read.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    policy: str
    """The SandboxPolicy that admitted the step."""
    uses: str | None = None
    """spec.sandbox.uses as written, when the step set it."""
    plugin: str
    """The plugin the step runs."""
    version: str | None = None
    """The plugin's version at admission, if the policy gave one."""
    handler: str | None = None
    """The workflow handler run (uses: plugin:<plugin>/<id>)."""
    cli_command: str | None = None
    """The CLI command run (uses: command:<id>)."""
    image: str
    """Image of the step container."""
    command: list[str] | None = None
    """Command of the step container (absent: the image's entrypoint)."""
    args: list[str] | None = None
    """Arguments from the policy (a handler's args); the Pod's args are these, then, for a CLI
    command, the flags adapted from context.inputs, then spec.args."""
    granted: list[Permission] = Field(default_factory=list)
    """Permissions the step holds: the union of its plugin's, its handler's or command's and its
    own, all granted by the policy."""
    timeout_seconds: int
    """Run-time limit of each attempt (activeDeadlineSeconds)."""
    resources: ResourceRequirements | None = None
    """Resources of the step container (the step's or the policy's)."""
    runtime_class_name: str | None = None
    """RuntimeClass of the step's Pods."""
    pod_labels: dict[str, str] | None = None
    """Labels from the policy stamped on the Pods."""
    egress: list[EgressRule] = Field(default_factory=list)
    """Where the step may connect (only with network.egress)."""
    env: dict[str, str] | None = None
    """Default environment from the policy."""
    # Tenancy bounds, frozen with the rest (absent in decisions that predate them).
    termination_grace_period_seconds: int | None = None
    """Grace period cap from the policy."""
    empty_dir_size_limit: str | None = None
    """sizeLimit of the Pod's emptyDirs."""
    allowed_env: list[str] | None = None
    """Author env name patterns the plugin accepts (absent: all but hooks)."""
    node_selector: dict[str, str] | None = None
    """nodeSelector of the Pods, from the policy."""
    tolerations: list[dict[str, Any]] | None = None
    """Tolerations of the Pods, from the policy."""


class SandboxPolicy(ApiObject):
    kind: Literal["SandboxPolicy"] = "SandboxPolicy"
    spec: SandboxPolicySpec
