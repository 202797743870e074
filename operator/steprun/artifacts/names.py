"""Object keys, container names and paths of artifacts: one contract for operator and client.

Keys are derived from (namespace, StepRun, attempt, name) only, so a retry writes next to the
first attempt instead of over it, a restarted operator writes the same key again, and a client
finds a deleted StepRun's logs from its name alone.
"""

from __future__ import annotations

# The helper's containers in a step's Pod. The step's own container stays first.
INIT_CONTAINER = "steprun-artifacts-in"
UPLOAD_CONTAINER = "steprun-artifacts-out"
HELPER_CONTAINERS = frozenset({INIT_CONTAINER, UPLOAD_CONTAINER})

# Keys of the step's own Secret that carry the store's credentials to the helper containers.
# Dotted, so no secret projection (an environment variable name) can ever be named the same.
ACCESS_KEY_KEY = "steprun.artifacts.accessKey"
SECRET_KEY_KEY = "steprun.artifacts.secretKey"
# Keys of the admin's credentials Secret.
REPOSITORY_ACCESS_KEY = "accessKey"
REPOSITORY_SECRET_KEY = "secretKey"

LOG_OBJECT = "step.log"
ARCHIVE_SUFFIX = ".tgz"


def steprun_prefix(prefix: str, namespace: str, steprun: str) -> str:
    """Where everything of one StepRun lives: ``<prefix><namespace>/<name>/``."""
    return f"{prefix}{namespace}/{steprun}/"


def artifact_key(prefix: str, namespace: str, steprun: str, attempt: int, name: str) -> str:
    """e.g. ``steprun/ci/build-42/1/dist.tgz``."""
    return f"{steprun_prefix(prefix, namespace, steprun)}{attempt}/{name}{ARCHIVE_SUFFIX}"


def log_key(prefix: str, namespace: str, steprun: str, attempt: int) -> str:
    """e.g. ``steprun/ci/build-42/1/step.log``; artifact names are DNS labels, so no artifact
    can be named like it."""
    return f"{steprun_prefix(prefix, namespace, steprun)}{attempt}/{LOG_OBJECT}"


def attempt_of_log_key(prefix: str, namespace: str, steprun: str, key: str) -> int | None:
    """The attempt of an archived log's key, None for any other key."""
    head = steprun_prefix(prefix, namespace, steprun)
    if not key.startswith(head) or not key.endswith(f"/{LOG_OBJECT}"):
        return None
    middle = key[len(head) : -len(LOG_OBJECT) - 1]
    return int(middle) if middle.isdigit() and int(middle) > 0 else None
