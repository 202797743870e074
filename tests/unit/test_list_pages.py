"""The operator lists in pages: an unpaginated list parses a whole namespace at once."""

from __future__ import annotations

from typing import Any, cast

import kopf
from kopf._core.intents.causes import Activity

from steprun.config import OperatorConfig
from steprun.handlers.kopf_handlers import LIST_PAGE_SIZE, register
from steprun.reconcile.reconciler import Reconciler


def test_startup_sets_a_list_page_size() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, cast(Reconciler, object()), OperatorConfig())
    settings = kopf.OperatorSettings()
    assert settings.watching.chunk_size is None  # kopf's default: one request for everything
    for handler in registry._activities.get_handlers(activity=Activity.STARTUP):
        fn: Any = handler.fn
        fn(settings=settings)
    assert settings.watching.chunk_size == LIST_PAGE_SIZE == 500
