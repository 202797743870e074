"""The engine's Python client for StepRuns.

``StepRunClient`` is blocking; ``steprun.client.aio.AsyncStepRunClient`` is the same client for
asyncio, and the one implementation: the blocking client runs it on a background event loop.
Both reach the API server through the operator's access layer (``steprun.kube``). See
docs/engine-guide.md.
"""

from steprun.client.artifacts import (
    ArtifactIntegrityError,
    ArtifactNotFound,
    ArtifactStoreError,
)
from steprun.client.errors import (
    ApiError,
    ApiUnreachable,
    FieldCause,
    InvalidStepRun,
    StepRunConflict,
    StepRunError,
    StepRunNotFound,
    StepRunRejected,
    WaitTimeout,
)
from steprun.client.logs import AttemptStarted, LogEvent, LogLine, PodWaiting
from steprun.client.result import StepResult
from steprun.client.sync import StepRunClient, StepRunHandle

__all__ = [
    "ApiError",
    "ApiUnreachable",
    "ArtifactIntegrityError",
    "ArtifactNotFound",
    "ArtifactStoreError",
    "AttemptStarted",
    "FieldCause",
    "InvalidStepRun",
    "LogEvent",
    "LogLine",
    "PodWaiting",
    "StepResult",
    "StepRunClient",
    "StepRunConflict",
    "StepRunError",
    "StepRunHandle",
    "StepRunNotFound",
    "StepRunRejected",
    "WaitTimeout",
]
