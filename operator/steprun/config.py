"""The operator's configuration: one typed object, read from STEPRUN_* environment variables."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

# A StatefulSet Pod's name: <statefulset>-<ordinal>.
_POD_ORDINAL = re.compile(r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?-(\d+)")
_TOP_PRIORITY = 100
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
DEFAULT_ADMISSION_POLICY = "steprun-stepruns"
DEFAULT_CLAIM_ORIGIN_POLICY = "steprun-claim-origin"
DEFAULT_EMPTY_DIR_SIZE_LIMIT = "256Mi"
# The helper uploads each artifact with one presigned PUT (docs/artifacts.md says why not
# multipart), and S3 takes at most 5 GiB in one PUT.
MAX_SINGLE_PUT_BYTES = 5 << 30


class EventPolicy(StrEnum):
    """Which Kubernetes Events the operator posts on StepRun transitions."""

    OFF = "off"
    # Only what a person has to look at: failures, rejections, retries. A successful step posts
    # nothing, so Events cost no API write per step in the common case.
    WARNINGS = "warnings"
    ALL = "all"


@dataclass(frozen=True)
class ArtifactRepository:
    """The store a namespace's steps use. ``prefix`` is empty or ends with ``/``."""

    endpoint: str
    bucket: str
    prefix: str
    region: str
    secret: str

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint and self.bucket)


class NamespaceArtifactRepository(BaseModel):
    """A store for some namespaces, set by the admin; unset fields are the operator-wide ones.

    Admin-set on purpose (the operator's environment, i.e. the chart), not a per-namespace
    object: whoever chooses the store receives the credentials and every artifact, so it must
    not be a co-tenant of the namespace.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    namespaces: list[str] = Field(min_length=1, description="Namespace names or glob patterns.")
    endpoint: str = ""
    bucket: str = ""
    key_prefix: str | None = None
    region: str = ""
    secret: str = ""


def _key_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


# The admin's allow-lists of podTemplate keys for local steps: metadata with an unlisted key is
# left off the Pod, scheduling with an unlisted key rejects the step.
def _keys_passed_on(podtemplate_field: str) -> Any:
    return Field(
        default_factory=list,
        description=f"Glob patterns of podTemplate.{podtemplate_field} keys that reach a local "
        "step's Pod (JSON list; none by default: other keys are left off).",
    )


def _keys_allowed(podtemplate_field: str) -> Any:
    return Field(
        default_factory=list,
        description=f"Glob patterns of podTemplate.{podtemplate_field} keys a local step may use "
        "(JSON list; none by default: a step using another key is Rejected).",
    )


class OperatorConfig(BaseSettings):
    """Every knob of the operator. Environment variable: STEPRUN_<FIELD_NAME_UPPER>."""

    model_config = SettingsConfigDict(env_prefix="STEPRUN_", extra="ignore")

    default_timeout_seconds: int = Field(3600, ge=1, description="timeoutSeconds when unset.")
    default_startup_timeout_seconds: int = Field(
        300, ge=1, description="startupTimeoutSeconds when unset."
    )
    default_env: dict[str, str] = Field(
        default_factory=dict, description="Lowest-precedence env of every step (JSON object)."
    )
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty means all (JSON list)."
    )
    context_mount_path: str = Field(
        "/var/run/steprun/context", description="Where context.json is mounted in the Pod."
    )
    secrets_mount_path: str = Field(
        "/var/run/steprun/secrets", description="Where as: file secrets appear in the Pod."
    )
    output_file: str = Field(
        "/dev/termination-log",
        description="The container's terminationMessagePath; STEPRUN_OUTPUT_FILE points to it.",
    )
    default_ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        description="ttlSecondsAfterFinished of StepRuns that set none (unset: kept forever).",
    )
    max_reconcile_failures: int = Field(
        10,
        ge=1,
        description="Consecutive unexpected reconcile failures after which a StepRun ends "
        "Failed (ReconcileFailed) instead of being retried again.",
    )
    events: EventPolicy = Field(
        EventPolicy.WARNINGS,
        description="Kubernetes Events on StepRun transitions: off, warnings (failures, "
        "rejections, retries; the default) or all (one per transition). true and false "
        "are read as all and off.",
    )
    log_level: str = Field("INFO", description="Operator log level.")
    metrics_port: int = Field(8080, ge=0, description="Prometheus metrics port (0: off).")
    health_port: int = Field(8081, ge=0, description="kopf liveness endpoint port (0: off).")
    worker_limit: int = Field(
        0, ge=0, description="kopf queueing.worker_limit (0: kopf's default, unbounded)."
    )
    api_qps: float = Field(
        0.0,
        ge=0,
        description="Client-side limit of the operator's own API requests per second (client-go's "
        "--kube-api-qps; 0: none, the API server's Priority and Fairness is the brake).",
    )
    api_burst: int = Field(
        100, ge=1, description="Requests allowed at once above api_qps (--kube-api-burst)."
    )
    api_proxy: str = Field(
        "",
        description="HTTP(S) proxy for the operator's API requests (else the kubeconfig's "
        "proxy-url). HTTPS_PROXY and friends are not read: looking them up costs every request.",
    )
    reconcile_concurrency: int = Field(
        64,
        ge=1,
        description="Reconciles that run at once; as many again are kept for steps whose Pod "
        "is running or done, so finishing a step never waits behind steps being started.",
    )
    archive_concurrency_per_namespace: int = Field(
        4,
        ge=1,
        description="Logs of cancelled steps of one namespace followed and archived at once, "
        "outside the reconcile slots; a log whose turn does not come within its step's grace "
        "period is not archived.",
    )
    peering: str = Field("", description="kopf peering name for HA; empty: standalone.")
    peering_lifetime: int = Field(
        60,
        ge=5,
        description="Seconds a replica's peering record lives without a keep-alive: how long a "
        "standby waits before taking over from a crashed leader.",
    )
    # ---------------------------------------------------------------- tenancy (docs/security.md)
    operator_namespace: str = Field(
        "",
        description="The operator's own namespace (the chart sets it from the Pod's namespace); "
        "its StepRuns are not run unless listed in allowed_system_namespaces.",
    )
    system_namespaces: list[str] = Field(
        default_factory=lambda: list(SYSTEM_NAMESPACES),
        description="Namespaces whose StepRuns are never run (JSON list), besides the "
        "operator's own, unless listed in allowed_system_namespaces.",
    )
    allowed_system_namespaces: list[str] = Field(
        default_factory=list,
        description="System namespaces (or the operator's own) whose StepRuns an admin allows.",
    )
    admission_policy: str = Field(
        DEFAULT_ADMISSION_POLICY,
        description="Name of the StepRun-create ValidatingAdmissionPolicy (and its binding) "
        "that checks a creator may read the Secrets and use the ServiceAccount a step names.",
    )
    claim_origin_policy: str = Field(
        DEFAULT_CLAIM_ORIGIN_POLICY,
        description="Name of the ValidatingAdmissionPolicy (and its binding) that lets only the "
        "operator create PersistentVolumeClaims with steprun.dev/ labels or annotations.",
    )
    require_admission_policy: bool = Field(
        True,
        description="Fail closed: without the admission policy, steps that name Secrets, a "
        "ServiceAccount, claims or artifact producers end Rejected, and without the claim-origin "
        "policy so do steps with volumeClaimTemplate workspaces. false runs them anyway (no "
        "creator check at all, and run claims are joined on their labels alone).",
    )
    local_pod_hardening: bool = Field(
        True,
        description="Local step Pods get seccomp RuntimeDefault, no privilege escalation and "
        "no ServiceAccount token unless the step names a serviceAccountName.",
    )
    pod_label_keys: list[str] = _keys_passed_on("labels")
    pod_annotation_keys: list[str] = _keys_passed_on("annotations")
    node_selector_keys: list[str] = _keys_allowed("nodeSelector")
    toleration_keys: list[str] = _keys_allowed("tolerations")
    allow_wildcard_toleration: bool = Field(
        False,
        description="Whether a toleration without a key (tolerates every taint, control-plane "
        "nodes included) is allowed.",
    )
    sandbox_empty_dir_size_limit: str = Field(
        DEFAULT_EMPTY_DIR_SIZE_LIMIT,
        description="Largest sizeLimit of a sandbox Pod's emptyDirs (scratch and workspaces; "
        "an author's larger one is lowered to it) when its policy's maxResources names no "
        "ephemeral-storage.",
    )
    priority: int = Field(
        0,
        description="kopf peering priority of this replica: an integer, or the name of a "
        "StatefulSet Pod (operator-<ordinal>), read as 100 - ordinal.",
    )

    # ---------------------------------------------------------------- artifact repository
    # One S3-compatible store for every step's artifacts and archived logs (docs/artifacts.md).
    artifacts_endpoint: str = Field(
        "", description="URL of the S3-compatible store, e.g. http://10.0.0.5:7070 (empty: off)."
    )
    artifacts_bucket: str = Field("", description="Bucket holding artifacts and archived logs.")
    artifacts_key_prefix: str = Field(
        "", description="Prefix of every object key, e.g. steprun/ (a / is added if missing)."
    )
    artifacts_region: str = Field("us-east-1", description="Region the store expects.")
    artifacts_secret: str = Field(
        "",
        description="NAMESPACE/NAME of the Secret holding the store's credentials (keys "
        "accessKey and secretKey); read by the operator only, which hands each step presigned "
        "URLs for exactly the objects of its attempt.",
    )
    artifacts_max_bytes: int = Field(
        4 << 30,
        ge=1,
        le=MAX_SINGLE_PUT_BYTES,
        description="Largest artifact (tar+gzip bytes) uploaded or downloaded; at most 5 GiB, "
        "the largest object one presigned PUT may write.",
    )
    artifacts_max_unpacked_bytes: int = Field(
        16 << 30,
        ge=1,
        description="Largest total size of the files one input unpacks to (a few MB of gzip can "
        "unpack to gigabytes); also sizes the helper's scratch volume.",
    )
    artifacts_max_entries: int = Field(
        100_000, ge=1, description="Most entries (files, directories, links) one input unpacks."
    )
    artifacts_archive_logs: bool = Field(
        True, description="Archive every attempt's log to the store when one is configured."
    )
    artifacts_image: str = Field(
        "steprun.local/artifacts:1", description="Image of the artifact helper containers."
    )

    artifacts_namespaces: list[NamespaceArtifactRepository] = Field(
        default_factory=list,
        description="Stores of some namespaces (JSON list of {namespaces: [patterns], endpoint, "
        "bucket, keyPrefix, region, secret}); the first entry matching a namespace wins, and "
        "the fields it leaves unset are the operator-wide ones.",
    )

    @property
    def artifacts_enabled(self) -> bool:
        """Whether the operator-wide store is set (a namespace may still have its own)."""
        return bool(self.artifacts_endpoint and self.artifacts_bucket)

    @property
    def artifacts_prefix(self) -> str:
        return _key_prefix(self.artifacts_key_prefix)

    def artifact_repository(self, namespace: str) -> ArtifactRepository:
        """The store of a namespace's steps: its own entry's fields over the operator-wide ones."""
        entry = next(
            (
                e
                for e in self.artifacts_namespaces
                if any(fnmatch.fnmatchcase(namespace, p) for p in e.namespaces)
            ),
            None,
        )
        if entry is None:
            entry = NamespaceArtifactRepository(namespaces=[namespace])
        prefix = self.artifacts_key_prefix if entry.key_prefix is None else entry.key_prefix
        return ArtifactRepository(
            endpoint=entry.endpoint or self.artifacts_endpoint,
            bucket=entry.bucket or self.artifacts_bucket,
            prefix=_key_prefix(prefix),
            region=entry.region or self.artifacts_region,
            secret=entry.secret or self.artifacts_secret,
        )

    def posts_event(self, event_type: str) -> bool:
        """Whether an Event of ``event_type`` (Normal or Warning) is posted."""
        if self.events == EventPolicy.ALL:
            return True
        return self.events == EventPolicy.WARNINGS and event_type == "Warning"

    @field_validator("events", mode="before")
    @classmethod
    def _events_from_bool(cls, value: object) -> object:
        # STEPRUN_EVENTS was a boolean: keep its two values meaning what they meant.
        if isinstance(value, bool):
            return EventPolicy.ALL if value else EventPolicy.OFF
        if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
            return EventPolicy.ALL if value.strip().lower() in {"true", "1"} else EventPolicy.OFF
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_from_pod_name(cls, value: object) -> object:
        # Replicas of a StatefulSet get STEPRUN_PRIORITY from their Pod name (a fieldRef): the
        # ordinal makes every replica's priority distinct and stable across restarts, and kopf
        # pauses replicas of equal priority. Replica 0 ranks highest, so scaling down removes
        # standbys first.
        if isinstance(value, str):
            match = _POD_ORDINAL.fullmatch(value.strip())
            if match:
                return _TOP_PRIORITY - int(match.group(1))
        return value
