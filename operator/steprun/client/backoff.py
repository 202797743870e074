"""How long to wait between retries of a failing API call: the access layer's one policy."""

from steprun.kube.backoff import Backoff

__all__ = ["Backoff"]
