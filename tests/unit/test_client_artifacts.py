"""The client's artifact helpers: choosing an upload, and a download that never keeps bad bytes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from steprun.api.models import ArtifactStatus, StepRun
from steprun.artifacts.store import ArtifactStore
from steprun.client import ArtifactIntegrityError, ArtifactNotFound
from steprun.client.artifacts import download, pick, uploads

DATA = b"x" * 200_000
SHA = hashlib.sha256(DATA).hexdigest()


class MemoryStore:
    """Objects in a dict, served in chunks like the real store's streams."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def read(self, key: str) -> Iterator[bytes]:
        data = self.objects[key]
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    async def get_stream(self, key: str) -> AsyncIterator[bytes]:
        for chunk in self.read(key):
            yield chunk


def entry(attempt: int, name: str = "dist", sha: str = SHA) -> dict[str, Any]:
    key = f"ci/build/{attempt}/{name}.tgz"
    return {"name": name, "attempt": attempt, "key": key, "size": len(DATA), "sha256": sha}


def steprun(artifacts: list[dict[str, Any]]) -> StepRun:
    return StepRun.from_body(
        {
            "metadata": {"name": "build", "namespace": "ci"},
            "spec": {"image": "x"},
            "status": {"artifacts": artifacts},
        }
    )


def test_pick_takes_the_latest_attempt_unless_told() -> None:
    sr = steprun([entry(2), entry(1), entry(1, "report")])
    assert pick(sr, "dist").attempt == 2
    assert pick(sr, "dist", attempt=1).attempt == 1
    assert [(a.attempt, a.name) for a in uploads(sr)] == [(1, "dist"), (1, "report"), (2, "dist")]
    with pytest.raises(ArtifactNotFound, match='no artifact "dist" from attempt 3; it has: dist'):
        pick(sr, "dist", attempt=3)
    with pytest.raises(ArtifactNotFound, match="it uploaded none"):
        pick(steprun([]), "dist")


def test_download_checks_the_sha256_and_keeps_nothing_on_a_mismatch(tmp_path: Path) -> None:
    store = cast(ArtifactStore, MemoryStore({"ci/build/1/dist.tgz": DATA}))

    def fetch(item: ArtifactStatus, dest: Path) -> Path:
        return asyncio.run(download(store, item, dest))

    good = fetch(ArtifactStatus.model_validate(entry(1)), tmp_path / "ok.tgz")
    assert good.read_bytes() == DATA
    bad = ArtifactStatus.model_validate(entry(1, sha="0" * 64))
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        fetch(bad, tmp_path / "bad.tgz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.tgz"], "no partial file is left"
