"""Artifacts and archived logs for the engine's client: listing, streaming downloads, old logs.

Listing needs only the StepRun (``status.artifacts``). Downloads and archived logs read the
store with the client's own credentials (environment, or an ``ArtifactStore`` passed in): the
cluster never hands store credentials to readers of StepRuns (docs/artifacts.md says why).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncGenerator
from pathlib import Path

from steprun.api.models import ArtifactStatus, StepRun
from steprun.artifacts.names import archived_log_of, log_key, name_prefix
from steprun.artifacts.store import ArtifactStore, StoreError
from steprun.client.errors import StepRunError
from steprun.client.logs import LineSplitter


class ArtifactNotFound(StepRunError):
    """The StepRun has no uploaded artifact of that name (and attempt)."""


class ArtifactStoreError(StepRunError):
    """The store could not be reached, refused, or is not configured; the message says which."""


class ArtifactIntegrityError(StepRunError):
    """The downloaded bytes do not match the sha256 the step reported: nothing was kept."""


def uploads(steprun: StepRun) -> list[ArtifactStatus]:
    """Every artifact the StepRun uploaded, oldest attempt first."""
    return sorted(steprun.status.artifacts or [], key=lambda a: (a.attempt, a.name))


def pick(steprun: StepRun, artifact: str, attempt: int | None = None) -> ArtifactStatus:
    """The upload of ``artifact`` by ``attempt`` (default: the latest attempt that uploaded it)."""
    matching = [a for a in steprun.status.artifacts or [] if a.name == artifact]
    if attempt is not None:
        matching = [a for a in matching if a.attempt == attempt]
    if not matching:
        which = f" from attempt {attempt}" if attempt is not None else ""
        have = sorted({a.name for a in steprun.status.artifacts or []})
        listed = f"; it has: {', '.join(have)}" if have else "; it uploaded none"
        raise ArtifactNotFound(
            f'StepRun "{steprun.name}" has no artifact "{artifact}"{which}{listed}',
            steprun=steprun,
        )
    return max(matching, key=lambda a: a.attempt)


async def download(store: ArtifactStore, entry: ArtifactStatus, dest: Path) -> Path:
    """Streams the object to ``dest`` (a .tgz), checking its sha256; returns ``dest``.

    The bytes go to a temporary file beside ``dest``, renamed only once the hash matches, so
    ``dest`` never holds a partial or corrupt download. The file is written off the event loop.
    """
    partial = dest.with_name(f".{dest.name}.partial")
    digest = hashlib.sha256()
    size = 0
    out = await asyncio.to_thread(partial.open, "wb")
    try:
        async for chunk in store.get_stream(entry.key):
            digest.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(out.write, chunk)
    except StoreError as error:
        out.close()
        partial.unlink(missing_ok=True)
        raise ArtifactStoreError(f"downloading {entry.key}: {error}") from error
    except BaseException:
        out.close()
        partial.unlink(missing_ok=True)
        raise
    out.close()
    if digest.hexdigest() != entry.sha256 or size != entry.size:
        partial.unlink(missing_ok=True)
        raise ArtifactIntegrityError(
            f"{entry.key}: got {size} bytes with sha256 {digest.hexdigest()}, but the step "
            f"uploaded {entry.size} bytes with sha256 {entry.sha256}"
        )
    os.replace(partial, dest)
    return dest


def archived_attempts(store: ArtifactStore, namespace: str, name: str) -> dict[str, list[int]]:
    """Per uid of each StepRun that had this name, the attempts whose log is archived, in
    order. Several uids: the name was deleted and used again; each keeps its own logs."""
    try:
        keys = store.keys(name_prefix(store.prefix, namespace, name))
    except StoreError as error:
        raise ArtifactStoreError(f"listing archived logs of {name}: {error}") from error
    found: dict[str, set[int]] = {}
    for key in keys:
        if (log := archived_log_of(store.prefix, namespace, name, key)) is not None:
            found.setdefault(log[0], set()).add(log[1])
    return {uid: sorted(attempts) for uid, attempts in sorted(found.items())}


async def archived_lines(
    store: ArtifactStore, namespace: str, name: str, uid: str, attempt: int
) -> AsyncGenerator[str, None]:
    """One attempt's archived log (of the StepRun with this uid), line by line, streamed."""
    splitter = LineSplitter()
    key = log_key(store.prefix, namespace, name, uid, attempt)
    try:
        async for chunk in store.get_stream(key):
            for line in splitter.feed(chunk):
                yield line
    except StoreError as error:
        raise ArtifactStoreError(f"reading the archived log of {name}: {error}") from error
    for line in splitter.flush():
        yield line
