"""The S3-compatible store, through obstore (Rust's object_store): the only code that talks to it.

Everything streams: an upload sends parts of ``PART_SIZE`` as they fill, a download yields the
store's chunks, so memory stays bounded by a part or two whatever the object's size.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from urllib.parse import urlparse

import obstore
from obstore.store import S3Store

from steprun.artifacts.names import REPOSITORY_ACCESS_KEY, REPOSITORY_SECRET_KEY

# S3's smallest multipart part; a smaller object goes up in one request.
PART_SIZE = 5 * 1024 * 1024
# Downloads are read in chunks of at least this size.
READ_CHUNK = 64 * 1024


class StoreError(Exception):
    """The store refused or could not be reached; the message carries its answer."""


class StoreNotConfigured(StoreError):
    """No artifact repository is known to this process; the message says how to set one."""


@dataclass(frozen=True)
class Repository:
    """Where artifacts live and how to reach them. ``prefix`` is empty or ends with ``/``."""

    endpoint: str
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Repository | None:
        """From STEPRUN_ARTIFACTS_ENDPOINT, _BUCKET, _KEY_PREFIX and _REGION (None if unset)."""
        env = os.environ if env is None else env
        endpoint = env.get("STEPRUN_ARTIFACTS_ENDPOINT", "")
        bucket = env.get("STEPRUN_ARTIFACTS_BUCKET", "")
        if not endpoint or not bucket:
            return None
        prefix = env.get("STEPRUN_ARTIFACTS_KEY_PREFIX", "").strip("/")
        return cls(
            endpoint=endpoint,
            bucket=bucket,
            prefix=f"{prefix}/" if prefix else "",
            region=env.get("STEPRUN_ARTIFACTS_REGION", "us-east-1"),
        )


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str], where: str) -> Credentials:
        """From a Secret's ``data`` (base64); the error names the Secret and keys, no value."""
        missing = [k for k in (REPOSITORY_ACCESS_KEY, REPOSITORY_SECRET_KEY) if k not in data]
        if missing:
            raise StoreError(f"Secret {where} has no key {', '.join(missing)}")
        return cls(
            base64.b64decode(data[REPOSITORY_ACCESS_KEY]).decode(),
            base64.b64decode(data[REPOSITORY_SECRET_KEY]).decode(),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials | None:
        """STEPRUN_ARTIFACTS_ACCESS_KEY/_SECRET_KEY, else AWS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY."""
        env = os.environ if env is None else env
        for access, secret in (
            ("STEPRUN_ARTIFACTS_ACCESS_KEY", "STEPRUN_ARTIFACTS_SECRET_KEY"),
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ):
            if env.get(access) and env.get(secret):
                return cls(env[access], env[secret])
        return None


def _answer(error: BaseException) -> str:
    """The store's answer in one line: obstore's summary, plus the innermost OS error or the
    store's error code from its debug chain (which is long and spread over many lines)."""
    text = str(error)
    summary = text.split("\n\nDebug source:", 1)[0].strip().replace("\n", " ")
    detail = re.search(r'message: "([^"]+)"', text) or re.search(r"<Code>([^<]+)</Code>", text)
    if detail and detail.group(1) not in summary:
        summary = f"{summary}: {detail.group(1)}"
    return summary[:600] or type(error).__name__


class ArtifactStore:
    """One bucket of an S3-compatible store."""

    def __init__(self, repository: Repository, credentials: Credentials):
        self.repository = repository
        parsed = urlparse(repository.endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StoreError(f"artifact endpoint {repository.endpoint!r} is not an http(s) URL")
        self._store = S3Store(
            repository.bucket,
            endpoint=repository.endpoint.rstrip("/"),
            access_key_id=credentials.access_key,
            secret_access_key=credentials.secret_key,
            region=repository.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": parsed.scheme == "http", "timeout": "120s"},
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=30)},
        )

    @property
    def prefix(self) -> str:
        return self.repository.prefix

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Upload ``chunks`` to ``key``; returns the byte count. Multipart when over a part."""
        iterator = aiter(chunks)
        head = bytearray()
        async for chunk in iterator:
            head += chunk
            if len(head) >= PART_SIZE:
                break
        else:
            with _answers():
                await obstore.put_async(self._store, key, bytes(head), use_multipart=False)
            return len(head)
        total = 0

        async def rest() -> AsyncIterator[bytes]:
            nonlocal total
            total += len(head)
            yield bytes(head)
            head.clear()
            async for chunk in iterator:
                total += len(chunk)
                yield chunk

        with _answers():
            await obstore.put_async(
                self._store, key, rest(), chunk_size=PART_SIZE, max_concurrency=2
            )
        return total

    async def presign(
        self, method: Literal["GET", "PUT"], keys: list[str], lifetime_seconds: int
    ) -> list[str]:
        """SigV4 query-presigned URLs (obstore's signer) for exactly ``keys``: each opens one
        object, for ``method`` only, until it expires; no credential can be read back from it."""
        if not keys:
            return []
        expires = timedelta(seconds=lifetime_seconds)
        with _answers():
            return list(await obstore.sign_async(self._store, method, keys, expires))

    async def get_stream(self, key: str) -> AsyncIterator[bytes]:
        with _answers(missing=self._missing(key)):
            result = await obstore.get_async(self._store, key)
            async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)

    def _missing(self, key: str) -> str:
        return f"no object {key} in bucket {self.repository.bucket}"

    # ---------------------------------------------------------------- blocking, for the client

    def read(self, key: str) -> Iterator[bytes]:
        with _answers(missing=self._missing(key)):
            result = obstore.get(self._store, key)
            for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)

    def keys(self, prefix: str) -> list[str]:
        with _answers():
            found: list[str] = []
            for batch in obstore.list(self._store, prefix):
                found.extend(str(item["path"]) for item in batch)
            return sorted(found)

    def exists(self, key: str) -> bool:
        with _answers():
            try:
                obstore.head(self._store, key)
            except FileNotFoundError:
                return False
        return True


@contextlib.contextmanager
def _answers(missing: str | None = None) -> Iterator[None]:
    """Whatever the store answers or fails with, raised as StoreError with its answer;
    ``missing`` is the message when the object is not there (else the store's answer)."""
    try:
        yield
    except FileNotFoundError as error:
        raise StoreError(missing or _answer(error)) from error
    except Exception as error:
        raise StoreError(_answer(error)) from error


def store_from_env(env: Mapping[str, str] | None = None) -> ArtifactStore:
    """The store described by the environment, or StoreNotConfigured saying what to set."""
    repository = Repository.from_env(env)
    credentials = Credentials.from_env(env)
    if repository is None or credentials is None:
        raise StoreNotConfigured(
            "no artifact store configured: set STEPRUN_ARTIFACTS_ENDPOINT, "
            "STEPRUN_ARTIFACTS_BUCKET (and STEPRUN_ARTIFACTS_KEY_PREFIX if the repository has "
            "one) and credentials allowed to read it (STEPRUN_ARTIFACTS_ACCESS_KEY and "
            "STEPRUN_ARTIFACTS_SECRET_KEY, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    return ArtifactStore(repository, credentials)
