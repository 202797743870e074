"""structlog JSON logging for the operator, kopf's own lines included.

Every line about a StepRun carries its namespace, name and uid (``for_steprun``); values of
secrets never reach a log line because no code path logs rendered Secrets or Pod env values.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from steprun.api.models import StepRun


def configure(level: str = "INFO") -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kopf narrates every watch event at DEBUG/INFO; its warnings and errors are what matter,
    # except peering, whose pause/resume lines tell which HA replica is active.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("kopf._core.engines.peering").setLevel(root.level)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


def get_logger(name: str = "steprun") -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


def for_steprun(sr: StepRun) -> structlog.stdlib.BoundLogger:
    return get_logger("steprun.reconcile").bind(
        namespace=sr.namespace, name=sr.name, uid=sr.uid, attempt=sr.status.attempt
    )
