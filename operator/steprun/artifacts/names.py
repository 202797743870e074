"""Object keys, container names and paths of artifacts: one contract for operator and client.

Keys are derived from (namespace, StepRun name, StepRun uid, attempt, name) only, so a retry
writes next to the first attempt instead of over it and a restarted operator writes the same key
again. The uid is there because a name is not an identity: a StepRun deleted and created again
under the same name is another object, and must never overwrite (or be read as) its namesake's
archived log and artifacts. A client finds a deleted StepRun's logs by listing its name's prefix,
where each uid is one StepRun that had that name.
"""

from __future__ import annotations

# The helper's containers in a step's Pod. The step's own container stays first.
INIT_CONTAINER = "steprun-artifacts-in"
UPLOAD_CONTAINER = "steprun-artifacts-out"
HELPER_CONTAINERS = frozenset({INIT_CONTAINER, UPLOAD_CONTAINER})

# Keys of the admin's credentials Secret, read by the operator alone.
REPOSITORY_ACCESS_KEY = "accessKey"
REPOSITORY_SECRET_KEY = "secretKey"

LOG_OBJECT = "step.log"
ARCHIVE_SUFFIX = ".tgz"


def name_prefix(prefix: str, namespace: str, steprun: str) -> str:
    """Where every StepRun that ever had this name keeps its objects: ``<prefix><ns>/<name>/``."""
    return f"{prefix}{namespace}/{steprun}/"


def steprun_prefix(prefix: str, namespace: str, steprun: str, uid: str) -> str:
    """Where everything of one StepRun lives: ``<prefix><namespace>/<name>/<uid>/``."""
    if not uid or "/" in uid:
        # Without its uid a key would be shared with every namesake: never write one.
        raise ValueError(f"StepRun {namespace}/{steprun} has no usable uid ({uid!r})")
    return f"{name_prefix(prefix, namespace, steprun)}{uid}/"


def artifact_key(
    prefix: str, namespace: str, steprun: str, uid: str, attempt: int, name: str
) -> str:
    """e.g. ``steprun/ci/build-42/<uid>/1/dist.tgz``."""
    return f"{steprun_prefix(prefix, namespace, steprun, uid)}{attempt}/{name}{ARCHIVE_SUFFIX}"


def log_key(prefix: str, namespace: str, steprun: str, uid: str, attempt: int) -> str:
    """e.g. ``steprun/ci/build-42/<uid>/1/step.log``; artifact names are DNS labels, so no
    artifact can be named like it."""
    return f"{steprun_prefix(prefix, namespace, steprun, uid)}{attempt}/{LOG_OBJECT}"


def archived_log_of(prefix: str, namespace: str, steprun: str, key: str) -> tuple[str, int] | None:
    """(uid, attempt) of an archived log's key under the name's prefix, None for any other key."""
    head = name_prefix(prefix, namespace, steprun)
    if not key.startswith(head) or not key.endswith(f"/{LOG_OBJECT}"):
        return None
    parts = key[len(head) : -len(LOG_OBJECT) - 1].split("/")
    if len(parts) != 2 or not parts[0] or not parts[1].isdigit() or int(parts[1]) < 1:
        return None
    return parts[0], int(parts[1])
