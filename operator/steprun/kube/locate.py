"""Where the kubeconfig is, as kubectl finds it; standard library only.

Kept apart from ``steprun.kube.config`` so that a command can tell there is no cluster
configuration at all before it loads the client library.
"""

from __future__ import annotations

import os
from pathlib import Path


def kubeconfig_path(explicit: str | None = None) -> str | None:
    """The kubeconfig to load, or None to use the in-cluster service account."""
    if explicit:
        return explicit
    from_env = os.environ.get("KUBECONFIG")
    if from_env:
        return from_env
    default = Path("~/.kube/config").expanduser()
    return str(default) if default.exists() else None
