"""The engine's OpenTelemetry context, carried into ``spec.context.trace`` (W3C Trace Context).

opentelemetry-api is optional (``pip install steprun[otel]``): without it, or outside any span,
nothing is added. The W3C propagator is used whatever the engine's global propagator is, because
TRACEPARENT/TRACESTATE are W3C by definition.
"""

from __future__ import annotations

from typing import Any

from steprun.api.models import StepRunSpec, TraceContext


def trace_context_of(context: Any = None) -> TraceContext | None:
    """The W3C trace context of an OpenTelemetry ``Context`` (default: the current one), or
    None when opentelemetry-api is not installed or no valid span is active."""
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)
    traceparent = carrier.get("traceparent")
    if not traceparent:
        return None
    return TraceContext(traceparent=traceparent, tracestate=carrier.get("tracestate") or None)


def with_current_trace(spec: StepRunSpec) -> StepRunSpec:
    """``spec`` with the current trace context, unless it already names one."""
    if spec.context.trace is not None:
        return spec
    trace = trace_context_of()
    if trace is None:
        return spec
    context = spec.context.model_copy(update={"trace": trace})
    return spec.model_copy(update={"context": context})
