"""The operator's side of artifacts: inputs, each attempt's presigned URLs, archived logs.

Kept apart from the reconciler so its hooks stay one line each. The repository's credentials
never leave the operator: a step's helpers get presigned URLs for exactly the objects of their
attempt, in a Secret of that attempt. Archiving a log is best effort by design: a store that is
down must not keep a finished step from being reported, so a failed archive is logged (and said
in the status message) instead of retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from steprun.api.models import StepRun
from steprun.artifacts.names import log_key
from steprun.artifacts.store import ArtifactStore, Credentials, Repository, StoreError
from steprun.config import OperatorConfig
from steprun.kube.client import Kube, KubeError
from steprun.kube.errors import AlreadyExists, Conflict
from steprun.log import for_steprun
from steprun.observe.pod import STEP_CONTAINER
from steprun.render.artifacts import (
    ResolvedInput,
    attempt_objects,
    input_sources,
    needs_artifacts,
    render_urls_secret,
    resolve_inputs,
    url_lifetime_seconds,
)
from steprun.render.names import artifact_urls_name

# The repository Secret is read at most this often (it rarely changes; each step needs it).
CREDENTIALS_TTL_SECONDS = 60.0
# How long a log archive may take before it is given up.
ARCHIVE_TIMEOUT_SECONDS = 300.0
# A cancelled step's log is followed for its grace period and this much more: the kubelet kills
# the container at the end of the grace period, and its last lines still have to be copied.
ARCHIVE_MARGIN_SECONDS = 10.0


class ArtifactProblem(Exception):
    """The step's artifacts cannot be honoured; the message says what to fix."""


class UrlsSecretTaken(ArtifactProblem):
    """A Secret under the attempt's URL Secret name belongs to something else: left alone."""


class Artifacts:
    def __init__(self, kube: Kube, config: OperatorConfig):
        self.kube = kube
        self.config = config
        # Per credentials Secret ("NAMESPACE/NAME"): namespaces may have their own store.
        self._cached: dict[str, tuple[float, Credentials]] = {}

    def enabled(self, namespace: str) -> bool:
        return self.config.artifact_repository(namespace).enabled

    async def credentials(self, namespace: str) -> Credentials:
        """The credentials of the namespace's store, for the operator's own use only."""
        where = self.config.artifact_repository(namespace).secret
        now = time.monotonic()
        cached = self._cached.get(where)
        if cached is not None and now - cached[0] < CREDENTIALS_TTL_SECONDS:
            return cached[1]
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
        try:
            result = Credentials.from_secret_data(data, where)
        except (StoreError, ValueError) as error:
            raise ArtifactProblem(f"the artifact repository's Secret {where}: {error}") from None
        self._cached[where] = (now, result)
        return result

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

    async def ensure_urls(
        self, sr: StepRun, attempt: int, pod: Mapping[str, Any], inputs: list[ResolvedInput]
    ) -> None:
        """The attempt's Secret of presigned URLs, for its helper containers: GET for each
        input, PUT for each output, nothing else, valid as long as the Pod may live.

        A Secret of this name that this StepRun owns (a crash after creating it, before its
        Pod) is replaced, never trusted: its URLs might not be ours. Any URL set the operator
        signed for this attempt is as good as another, so a Pod that already read the old one
        is unaffected. The previous attempt's Secret goes: its Pod has ended."""
        if not needs_artifacts(sr):
            return
        objects = attempt_objects(sr, attempt, self.config, inputs)
        lifetime = url_lifetime_seconds(sr, pod, self.config)
        try:
            store = await self._store(sr.namespace)
            reads = await store.presign("GET", list(objects.reads.values()), lifetime)
            writes = await store.presign("PUT", list(objects.writes.values()), lifetime)
        except StoreError as error:
            raise ArtifactProblem(
                f"cannot sign the artifact URLs of this attempt: {error}"
            ) from None
        body = render_urls_secret(
            sr,
            attempt,
            dict(zip(objects.reads, reads, strict=True)),
            dict(zip(objects.writes, writes, strict=True)),
        )
        await self._create_replacing(sr, body)
        for_steprun(sr).info(
            "artifact URLs signed",
            attempt=attempt,
            reads=len(reads),
            writes=len(writes),
            lifetime_seconds=lifetime,
        )
        if attempt > 1:
            await self.forget_urls(sr, attempt - 1)

    async def _create_replacing(self, sr: StepRun, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        for _ in range(3):
            try:
                await self.kube.create(body)
                return
            except AlreadyExists:
                existing = await self.kube.get_or_none("Secret", sr.namespace, name)
            if existing is None:
                continue
            owners = existing["metadata"].get("ownerReferences") or []
            if not owners or not all(
                ref.get("kind") == "StepRun" and ref.get("name") == sr.name for ref in owners
            ):
                raise UrlsSecretTaken(
                    f"Secret {name} already exists and is not owned by this StepRun; delete it "
                    "or rename the StepRun"
                )
            # This StepRun's (or its namesake's, which the garbage collector takes anyway).
            with contextlib.suppress(Conflict):
                await self.kube.delete(
                    "Secret", sr.namespace, name, uid=existing["metadata"].get("uid")
                )
        raise ArtifactProblem(f"Secret {name} keeps coming back; delete it or rename the StepRun")

    async def forget_urls(self, sr: StepRun, *attempts: int) -> None:
        """Delete the URL Secrets of these attempts (default: every attempt so far, and the one
        that may have been about to start): they must not outlive the attempt they were signed
        for. Only Secrets this StepRun owns."""
        numbers = attempts or tuple(range(1, (sr.status.attempt or 0) + 2))
        for number in numbers:
            name = artifact_urls_name(sr.name, number)
            existing = await self.kube.get_or_none("Secret", sr.namespace, name)
            if existing is None:
                continue
            owners = existing["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == sr.uid for ref in owners):
                continue
            with contextlib.suppress(Conflict):
                await self.kube.delete(
                    "Secret", sr.namespace, name, uid=existing["metadata"].get("uid")
                )

    async def _store(self, namespace: str) -> ArtifactStore:
        credentials = await self.credentials(namespace)
        settings = self.config.artifact_repository(namespace)
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


__all__ = ["ArtifactProblem", "Artifacts", "UrlsSecretTaken"]
