"""The access layer: the only code that talks to the API server.

Its client library's heavy package initialisers are deferred before any module of the layer
imports it (``steprun.kube.lean``): a CLI command loads only what it uses.
"""

from steprun.kube.lean import defer_all

defer_all()
