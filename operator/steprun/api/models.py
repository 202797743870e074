"""The steprun.dev/v1alpha1 API as pydantic models: the single source of truth.

The CRD schemas in ``crds/`` are generated from these classes (``steprun.api.crdgen``); the
renderer, the policy checker, the client and the CLI all read the same classes. Field
descriptions become ``kubectl explain`` text, so they are written for the people who read it.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "steprun.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
STEPRUN_PLURAL = "stepruns"
SANDBOXPOLICY_PLURAL = "sandboxpolicies"

# The API server stores at most 1.5 MiB per object; inputs are bounded well below that so a
# StepRun with large inputs still fits beside its status.
MAX_INPUTS_BYTES = 256 * 1024
MAX_OUTPUT_BYTES = 4 * 1024

# Bounds shared by the schema and the renderer.
MAX_ENV_VARS = 256
MAX_SECRETS = 64
MAX_ARGS = 256
MAX_STRING = 32 * 1024
MAX_SCRIPT = 128 * 1024
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MAX_RETRIES = 20
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

QuantityMap = dict[str, int | Annotated[str, Field(max_length=MAX_QUANTITY)]]


class ApiModel(BaseModel):
    """Base for API objects: camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
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


class Reason(enum.StrEnum):
    """Machine-readable reasons written to status.reason, attempts[].reason and conditions."""

    CREATED = "Created"
    POD_CREATED = "PodCreated"
    STARTED = "Started"
    RETRYING = "Retrying"
    COMPLETED = "Completed"
    ERROR = "Error"
    OOM_KILLED = "OOMKilled"
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


class SecretKeyRef(ApiModel):
    """A key of a Secret in the StepRun's namespace."""

    name: Annotated[
        str,
        Field(
            description="Name of a Secret in the StepRun's namespace.",
            max_length=253,
            pattern=DNS_SUBDOMAIN_PATTERN,
        ),
    ]
    key: Annotated[
        str,
        Field(description="Key inside that Secret.", max_length=253, pattern=SECRET_KEY_PATTERN),
    ]


class SecretProjection(ApiModel):
    """One key of an existing Secret, copied into the step's own Secret and exposed to the step."""

    name: Annotated[
        str,
        Field(
            description=(
                "Environment variable name (as: env) or file name under STEPRUN_SECRETS_DIR "
                "(as: file)."
            ),
            max_length=253,
            pattern=ENV_NAME_PATTERN,
        ),
    ]
    secret_key_ref: Annotated[
        SecretKeyRef, Field(description="The Secret key whose value is projected.")
    ]
    as_: Annotated[
        Literal["env", "file"],
        Field(
            alias="as",
            description="How the value reaches the step: an env var (default) or a file.",
        ),
    ] = "env"


class WorkflowRef(ApiModel):
    """Which workflow run this step belongs to; each value becomes a label on the Pod."""

    name: Annotated[
        str | None,
        Field(description="Workflow name.", max_length=63, pattern=LABEL_VALUE_PATTERN),
    ] = None
    run_id: Annotated[
        str | None,
        Field(description="Workflow run identifier.", max_length=63, pattern=LABEL_VALUE_PATTERN),
    ] = None
    step_id: Annotated[
        str | None,
        Field(
            description="Step identifier within the run.",
            max_length=63,
            pattern=LABEL_VALUE_PATTERN,
        ),
    ] = None


class StepContext(ApiModel):
    """What the workflow hands to the step: env, inputs and secrets."""

    workflow: Annotated[
        WorkflowRef | None,
        Field(description="The workflow run this step belongs to (labels and context.json)."),
    ] = None
    env: Annotated[
        dict[str, str],
        Field(
            description="Workflow-level environment; spec.env overrides it.",
            max_length=MAX_ENV_VARS,
        ),
    ] = Field(default_factory=dict)
    inputs: Annotated[
        dict[str, Any],
        Field(
            description=(
                "Free JSON object (at most 256 KiB serialized) mounted read-only as context.json "
                "at STEPRUN_CONTEXT_FILE."
            ),
        ),
    ] = Field(default_factory=dict)
    secrets: Annotated[
        list[SecretProjection],
        Field(
            description=(
                "Keys projected from existing Secrets in the same namespace; names are unique."
            ),
            max_length=MAX_SECRETS,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = Field(default_factory=list)


class RetryPolicy(ApiModel):
    """How failed attempts are retried; each attempt runs in a new Pod."""

    limit: Annotated[
        int,
        Field(
            description="How many times a failed attempt is retried (0: never).",
            ge=0,
            le=MAX_RETRIES,
        ),
    ] = 0
    backoff_seconds: Annotated[
        int,
        Field(description="Seconds between a failed attempt and the next one.", ge=0, le=3600),
    ] = 10


class ResourceRequirements(ApiModel):
    """Compute resources of the step container, as in a container's resources."""

    requests: Annotated[
        QuantityMap | None,
        Field(
            description="Like a container's resources.requests, e.g. {cpu: 100m}.",
            max_length=MAX_RESOURCES,
        ),
    ] = None
    limits: Annotated[
        QuantityMap | None,
        Field(
            description="Like a container's resources.limits, e.g. {memory: 256Mi}.",
            max_length=MAX_RESOURCES,
        ),
    ] = None


class PodTemplate(ApiModel):
    """The few Pod fields a step author may set on the step's Pod."""

    node_selector: Annotated[dict[str, str] | None, Field(description="Pod nodeSelector.")] = None
    tolerations: Annotated[
        list[dict[str, Any]] | None,
        Field(description="Pod tolerations, as in a PodSpec.", max_length=64),
    ] = None
    labels: Annotated[
        dict[str, str] | None,
        Field(description="Extra Pod labels; steprun.dev/ labels cannot be overridden."),
    ] = None
    annotations: Annotated[dict[str, str] | None, Field(description="Extra Pod annotations.")] = (
        None
    )


class SandboxSpec(ApiModel):
    """Which SandboxPolicy admits the step, which plugin it runs and what more it asks for."""

    policy: Annotated[
        str,
        Field(
            description="Name of the SandboxPolicy that must admit this step.",
            max_length=253,
            pattern=DNS_SUBDOMAIN_PATTERN,
        ),
    ] = "default"
    plugin: Annotated[
        str,
        Field(
            description="Plugin declared in that policy.", max_length=63, pattern=DNS_LABEL_PATTERN
        ),
    ]
    permissions: Annotated[
        list[Permission],
        Field(
            description="Permissions this step asks for, beyond the plugin's own.",
            max_length=8,
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ] = Field(default_factory=list)


class StepRunSpec(ApiModel):
    """One workflow step to run as a Pod."""

    mode: Annotated[
        Mode,
        Field(
            description="local: a plain Pod. sandbox: a restricted Pod admitted by a SandboxPolicy."
        ),
    ] = Mode.LOCAL
    image: Annotated[
        str | None,
        Field(
            description=(
                "Container image; required for local steps, taken from the plugin for sandbox."
            ),
            max_length=1024,
            min_length=1,
        ),
    ] = None
    command: Annotated[
        list[Annotated[str, Field(max_length=MAX_STRING)]] | None,
        Field(description="Like a container's command.", max_length=MAX_ARGS),
    ] = None
    args: Annotated[
        list[Annotated[str, Field(max_length=MAX_STRING)]] | None,
        Field(description="Like a container's args.", max_length=MAX_ARGS),
    ] = None
    script: Annotated[
        str | None,
        Field(
            description="Shell script run under /bin/sh -c; exclusive with command and args.",
            max_length=MAX_SCRIPT,
        ),
    ] = None
    working_dir: Annotated[
        str | None, Field(description="Working directory of the step.", max_length=4096)
    ] = None
    env: Annotated[
        dict[str, str],
        Field(
            description="Step environment; overrides context.env. STEPRUN_* names are reserved.",
            max_length=MAX_ENV_VARS,
        ),
    ] = Field(default_factory=dict)
    context: Annotated[
        StepContext, Field(description="Workflow context: env, inputs, secrets.")
    ] = Field(default_factory=StepContext)
    timeout_seconds: Annotated[
        int | None,
        Field(
            description=(
                "Run-time limit, enforced as the Pod's activeDeadlineSeconds (default: the "
                "operator's; for sandbox steps at most the policy's maxTimeoutSeconds)."
            ),
            ge=1,
            le=MAX_TIMEOUT_SECONDS,
        ),
    ] = None
    startup_timeout_seconds: Annotated[
        int | None,
        Field(
            description=(
                "A Pod not running by then (image pull failure, unschedulable) ends the step "
                "Failed (default: the operator's, 300)."
            ),
            ge=1,
            le=MAX_TIMEOUT_SECONDS,
        ),
    ] = None
    termination_grace_period_seconds: Annotated[
        int,
        Field(description="Grace period given to the step on cancel and timeout.", ge=0, le=3600),
    ] = 30
    cancel: Annotated[
        bool,
        Field(description="Set to true to cancel: the Pod is deleted and the step ends Cancelled."),
    ] = False
    retries: Annotated[RetryPolicy, Field(description="Retries of failed attempts.")] = Field(
        default_factory=RetryPolicy
    )
    resources: Annotated[
        ResourceRequirements | None, Field(description="The step container's resources.")
    ] = None
    service_account_name: Annotated[
        str | None,
        Field(
            description="ServiceAccount of the Pod; local steps only.",
            max_length=253,
            pattern=DNS_SUBDOMAIN_PATTERN,
        ),
    ] = None
    ttl_seconds_after_finished: Annotated[
        int | None,
        Field(
            description="Delete the StepRun this many seconds after it reaches a terminal phase.",
            ge=0,
            le=MAX_TIMEOUT_SECONDS * 52,
        ),
    ] = None
    pod_template: Annotated[
        PodTemplate | None, Field(description="Scheduling and metadata for the step's Pod.")
    ] = None
    sandbox: Annotated[
        SandboxSpec | None, Field(description="Sandbox settings; only with mode: sandbox.")
    ] = None


class AttemptStatus(ApiModel):
    """One attempt of the step: one Pod."""

    attempt: Annotated[int, Field(description="Attempt number, 1 for the first.")]
    pod_name: Annotated[str, Field(description="Name of the attempt's Pod.")]
    exit_code: Annotated[
        int | None, Field(description="Exit code of the step container, once it ended.")
    ] = None
    reason: Annotated[
        str | None, Field(description="Machine-readable outcome, e.g. Completed, Error, OOMKilled.")
    ] = None
    message: Annotated[str | None, Field(description="Human-readable detail of the outcome.")] = (
        None
    )
    start_time: Annotated[
        str | None, Field(description="When the attempt started running (RFC 3339).")
    ] = None
    completion_time: Annotated[
        str | None, Field(description="When the attempt ended (RFC 3339).")
    ] = None


class Condition(ApiModel):
    """A standard Kubernetes condition; type Succeeded summarises the step."""

    type: Annotated[str, Field(description="Condition type, e.g. Succeeded.")]
    status: Annotated[
        Literal["True", "False", "Unknown"],
        Field(description="True, False or Unknown (Unknown while the step runs)."),
    ]
    reason: Annotated[
        str | None, Field(description="Machine-readable reason of the last transition.")
    ] = None
    message: Annotated[str | None, Field(description="Human-readable detail.")] = None
    last_transition_time: Annotated[
        str | None, Field(description="When status last changed (RFC 3339).")
    ] = None
    observed_generation: Annotated[
        int | None, Field(description="metadata.generation the condition was computed from.")
    ] = None


class StepRunStatus(ApiModel):
    """Observed state of the step; written only by the operator."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True
    )

    phase: Annotated[
        Phase | None,
        Field(
            description=(
                "Pending, Running, or one of the terminal phases Succeeded, Failed, TimedOut, "
                "Cancelled, Rejected; a terminal phase never changes."
            )
        ),
    ] = None
    reason: Annotated[
        str | None,
        Field(
            description=(
                "Machine-readable reason for the phase, e.g. Completed, Error, DeadlineExceeded, "
                "StartupTimeout, ImagePullFailed, Cancelled, PermissionDenied, PolicyNotFound, "
                "InvalidSpec."
            )
        ),
    ] = None
    message: Annotated[
        str | None, Field(description="Human-readable explanation that says what to fix.")
    ] = None
    exit_code: Annotated[
        int | None, Field(description="Exit code of the last attempt's step container.")
    ] = None
    outputs: Annotated[
        dict[str, Any] | None,
        Field(
            description=(
                "The JSON object the step wrote to STEPRUN_OUTPUT_FILE (at most 4 KiB), if any."
            )
        ),
    ] = None
    pod_name: Annotated[str | None, Field(description="Pod of the current attempt.")] = None
    attempt: Annotated[
        int | None, Field(description="Number of the current attempt, 1 for the first.")
    ] = None
    attempts: Annotated[
        list[AttemptStatus], Field(description="Every attempt so far, oldest first.")
    ] = Field(default_factory=list)
    start_time: Annotated[
        str | None,
        Field(description="When the first Pod was created (RFC 3339); duration counts from here."),
    ] = None
    completion_time: Annotated[
        str | None, Field(description="When the step reached a terminal phase (RFC 3339).")
    ] = None
    duration: Annotated[
        str | None,
        Field(
            description=(
                'Wall-clock time from startTime to completionTime, e.g. "12s" or "3m4s"; set '
                "when the step reaches a terminal phase (kubectl get shows it)."
            )
        ),
    ] = None
    observed_generation: Annotated[
        int | None, Field(description="metadata.generation this status was computed from.")
    ] = None
    conditions: Annotated[
        list[Condition],
        Field(
            description="Standard conditions; Succeeded summarises the outcome.",
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = Field(default_factory=list)
    next_attempt_time: Annotated[
        str | None,
        Field(description="When the next attempt's Pod may be created (retry backoff, RFC 3339)."),
    ] = None
    admitted: Annotated[
        dict[str, Any] | None,
        Field(
            description=(
                "The sandbox admission decision, frozen when the step was admitted so later "
                "policy edits never change a started step."
            )
        ),
    ] = None


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


class StepRun(BaseModel):
    """A StepRun as read from the API server."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["StepRun"] = "StepRun"
    metadata: ObjectMeta
    spec: StepRunSpec
    status: StepRunStatus = Field(default_factory=StepRunStatus)

    @classmethod
    def from_body(cls, body: Any) -> StepRun:
        return cls.model_validate(dict(body))

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


class Plugin(ApiModel):
    """A tool sandbox steps may run: its image, command and the permissions it needs."""

    name: Annotated[
        str,
        Field(
            description="Plugin name that steps ask for.", max_length=63, pattern=DNS_LABEL_PATTERN
        ),
    ]
    image: Annotated[
        str, Field(description="Image the plugin runs in.", max_length=1024, min_length=1)
    ]
    command: Annotated[
        list[Annotated[str, Field(max_length=MAX_STRING)]] | None,
        Field(description="The plugin's command; step args are appended.", max_length=MAX_ARGS),
    ] = None
    permissions: Annotated[
        list[Permission],
        Field(
            description="Permissions the plugin itself needs.",
            max_length=8,
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ] = Field(default_factory=list)
    # Tenancy: what of a step author's environment reaches the plugin process.
    allowed_env: Annotated[
        list[Annotated[str, Field(max_length=253)]] | None,
        Field(
            description=(
                "Glob patterns of the author env names (spec.env, context.env, secret env "
                "projections) the plugin accepts; others are left off. Unset: every name "
                "except loader and interpreter hooks (LD_*, NODE_OPTIONS, PYTHON*, "
                "JAVA_TOOL_OPTIONS, BASH_ENV, ENV, PERL5OPT, RUBYOPT, GIT_CONFIG_*, PATH, ...)."
            ),
            max_length=MAX_ENV_VARS,
        ),
    ] = None


class EgressRule(ApiModel):
    """Destinations sandbox Pods may reach when network.egress is granted."""

    cidr: Annotated[str, Field(description="Destination CIDR, e.g. 10.0.0.0/8.", max_length=64)]
    ports: Annotated[
        list[Annotated[int, Field(ge=1, le=65535)]] | None,
        Field(
            description="TCP ports; all ports when empty.",
            max_length=64,
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ] = None


class LabelSelectorRequirement(ApiModel):
    """A label selector requirement, as in metav1.LabelSelectorRequirement."""

    key: Annotated[str, Field(description="Label key the requirement applies to.")]
    operator: Annotated[
        Literal["In", "NotIn", "Exists", "DoesNotExist"],
        Field(description="How the key's value relates to values."),
    ]
    values: Annotated[
        list[str] | None,
        Field(description="Values for In and NotIn; empty for Exists and DoesNotExist."),
    ] = None


class LabelSelector(ApiModel):
    """A label selector, as in metav1.LabelSelector; empty selects everything."""

    match_labels: Annotated[
        dict[str, str] | None,
        Field(description="Labels that must all be present with these values."),
    ] = None
    match_expressions: Annotated[
        list[LabelSelectorRequirement] | None,
        Field(description="Requirements that must all hold."),
    ] = None


class SandboxPolicySpec(ApiModel):
    """What sandbox steps may do; written by cluster admins."""

    namespace_selector: Annotated[
        LabelSelector,
        Field(description="Namespaces whose StepRuns may use this policy (empty: all)."),
    ] = Field(default_factory=LabelSelector)
    grants: Annotated[
        list[Permission],
        Field(
            description="Permissions this policy grants.",
            max_length=8,
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ] = Field(default_factory=list)
    plugins: Annotated[
        list[Plugin],
        Field(
            description="Plugins steps may run; names are unique.",
            max_length=256,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = Field(default_factory=list)
    max_timeout_seconds: Annotated[
        int | None,
        Field(description="Largest timeoutSeconds a step may have.", ge=1, le=MAX_TIMEOUT_SECONDS),
    ] = None
    default_resources: Annotated[
        ResourceRequirements | None,
        Field(description="Resources for steps that set none."),
    ] = None
    max_resources: Annotated[
        QuantityMap | None,
        Field(
            description="Largest request or limit per resource, e.g. {cpu: '2', memory: 1Gi}.",
            max_length=MAX_RESOURCES,
        ),
    ] = None
    runtime_class_name: Annotated[
        str | None, Field(description="RuntimeClass of sandbox Pods.", max_length=253)
    ] = None
    egress: Annotated[
        list[EgressRule],
        Field(description="Egress allowed when network.egress is granted.", max_length=64),
    ] = Field(default_factory=list)
    pod_labels: Annotated[
        dict[str, str] | None,
        Field(description="Labels stamped on every sandbox Pod of this policy."),
    ] = None
    env: Annotated[
        dict[str, str] | None,
        Field(
            description=(
                "Default environment of this policy's steps (overrides only the operator's "
                "defaults); STEPRUN_* names are reserved."
            ),
            max_length=MAX_ENV_VARS,
        ),
    ] = None
    # Tenancy: bounds a step cannot skip, and scheduling that only the admin chooses.
    max_termination_grace_period_seconds: Annotated[
        int | None,
        Field(
            description=(
                "Largest grace period a sandbox step gets on cancel and timeout; a step asking "
                "for more gets this much (default 30)."
            ),
            ge=0,
            le=3600,
        ),
    ] = None
    node_selector: Annotated[
        dict[str, str] | None,
        Field(description="nodeSelector of every sandbox Pod of this policy (steps set none)."),
    ] = None
    tolerations: Annotated[
        list[dict[str, Any]] | None,
        Field(
            description="Tolerations of every sandbox Pod of this policy (steps set none).",
            max_length=64,
        ),
    ] = None


class SandboxPolicy(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["SandboxPolicy"] = "SandboxPolicy"
    metadata: ObjectMeta
    spec: SandboxPolicySpec

    @classmethod
    def from_body(cls, body: Any) -> SandboxPolicy:
        return cls.model_validate(dict(body))
