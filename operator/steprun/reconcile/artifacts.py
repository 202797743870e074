"""The operator's side of artifacts: the repository's credentials, inputs, archived logs.

Kept apart from the reconciler so its hooks stay one line each. Archiving a log is best effort
by design: a store that is down must not keep a finished step from being reported, so a failed
archive is logged (and said in the status message) instead of retried forever.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import ValidationError

from steprun.api.models import StepRun
from steprun.artifacts.names import ACCESS_KEY_KEY, SECRET_KEY_KEY, log_key
from steprun.artifacts.store import ArtifactStore, Credentials, Repository, StoreError
from steprun.config import OperatorConfig
from steprun.kube.client import Kube, KubeError
from steprun.log import for_steprun
from steprun.observe.pod import STEP_CONTAINER
from steprun.render.artifacts import ResolvedInput, input_sources, resolve_inputs

# The repository Secret is read at most this often (it rarely changes; each step needs it).
CREDENTIALS_TTL_SECONDS = 60.0
# How long a log archive may take before it is given up.
ARCHIVE_TIMEOUT_SECONDS = 300.0
# A cancelled step's log is followed for its grace period and this much more: the kubelet kills
# the container at the end of the grace period, and its last lines still have to be copied.
ARCHIVE_MARGIN_SECONDS = 10.0


class ArtifactProblem(Exception):
    """The step's artifacts cannot be honoured; the message says what to fix."""


class Artifacts:
    def __init__(self, kube: Kube, config: OperatorConfig):
        self.kube = kube
        self.config = config
        # Per credentials Secret ("NAMESPACE/NAME"): namespaces may have their own store.
        self._cached: dict[str, tuple[float, dict[str, str]]] = {}

    def enabled(self, namespace: str) -> bool:
        return self.config.artifact_repository(namespace).enabled

    async def secret_data(self, namespace: str) -> dict[str, str]:
        """The credentials of the namespace's store as keys of the step's own Secret (base64,
        as the API has them): the helper containers read them there, the step's container
        never does."""
        where = self.config.artifact_repository(namespace).secret
        now = time.monotonic()
        cached = self._cached.get(where)
        if cached is not None and now - cached[0] < CREDENTIALS_TTL_SECONDS:
            return dict(cached[1])
        secret_namespace, _, name = where.partition("/")
        if not secret_namespace or not name:
            raise ArtifactProblem(
                f"the operator has no artifact credentials for namespace {namespace}: set "
                "STEPRUN_ARTIFACTS_SECRET (or the namespace's entry in "
                "STEPRUN_ARTIFACTS_NAMESPACES) to NAMESPACE/NAME of a Secret with keys "
                "accessKey and secretKey"
            )
        secret = await self.kube.get_or_none("Secret", secret_namespace, name)
        data = (secret or {}).get("data") or {}
        missing = [k for k in ("accessKey", "secretKey") if k not in data]
        if secret is None or missing:
            what = "not found" if secret is None else f"has no key {', '.join(missing)}"
            raise ArtifactProblem(f"the artifact repository's Secret {where} {what}")
        result = {ACCESS_KEY_KEY: data["accessKey"], SECRET_KEY_KEY: data["secretKey"]}
        self._cached[where] = (now, result)
        return dict(result)

    async def resolve(self, sr: StepRun) -> list[ResolvedInput]:
        """Each input's object from its producer's status; ArtifactProblem names every miss."""
        if not self.enabled(sr.namespace):
            raise ArtifactProblem(
                "spec.artifacts needs an artifact repository, and none is configured for "
                f"namespace {sr.namespace}: ask the cluster admin to set one "
                "(artifactRepository in the Helm chart)"
            )
        producers: dict[str, StepRun | None] = {}
        for name in input_sources(sr):
            body = await self.kube.get_or_none("StepRun", sr.namespace, name)
            try:
                producers[name] = StepRun.from_body(body) if body is not None else None
            except ValidationError:
                producers[name] = None
        inputs, problems = resolve_inputs(sr, producers)
        if problems:
            raise ArtifactProblem("; ".join(problems))
        return inputs

    async def _store(self, namespace: str) -> ArtifactStore:
        data = await self.secret_data(namespace)
        settings = self.config.artifact_repository(namespace)
        credentials = Credentials.from_secret_data(
            {"accessKey": data[ACCESS_KEY_KEY], "secretKey": data[SECRET_KEY_KEY]},
            settings.secret,
        )
        repository = Repository(
            endpoint=settings.endpoint,
            bucket=settings.bucket,
            prefix=settings.prefix,
            region=settings.region,
        )
        return ArtifactStore(repository, credentials)

    def archives_logs(self, namespace: str) -> bool:
        return self.enabled(namespace) and self.config.artifacts_archive_logs

    async def archive_log(
        self,
        sr: StepRun,
        attempt: int,
        pod_name: str,
        *,
        follow: bool = False,
        give_up_after: float = ARCHIVE_TIMEOUT_SECONDS,
    ) -> str | None:
        """Copies the attempt's log to the store, streaming; returns why it could not, if so.

        ``follow``: the Pod is terminating (cancel) and its last lines are still to come.
        ``give_up_after``: seconds, then given up (what was copied by then is not kept).
        """
        if not self.archives_logs(sr.namespace):
            return None
        prefix = self.config.artifact_repository(sr.namespace).prefix
        key = log_key(prefix, sr.namespace, sr.name, sr.uid, attempt)
        log = for_steprun(sr).bind(attempt=attempt, key=key)
        try:
            store = await self._store(sr.namespace)
            chunks = self.kube.stream_log(
                sr.namespace,
                pod_name,
                STEP_CONTAINER,
                follow=follow,
                timeout_seconds=max(give_up_after, 1.0),
            )
            size = await asyncio.wait_for(store.put_stream(key, chunks), max(give_up_after, 1.0))
        except (
            TimeoutError,
            ArtifactProblem,
            StoreError,
            KubeError,
            OSError,
        ) as error:
            why = str(error) or type(error).__name__
            log.warning("log not archived", error=why)
            return f"log of attempt {attempt} not archived: {why}"
        log.info("log archived", bytes=size)
        return None


def message_with(message: str, note: str | None) -> str:
    return f"{message}; {note}" if note else message


__all__ = ["ArtifactProblem", "Artifacts", "message_with"]
