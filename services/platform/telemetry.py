"""OpenTelemetry for every service: traces and metrics over OTLP/gRPC, configured by the standard
`OTEL_*` environment variables, once, when `samhandling serve` starts a service.

- Off unless an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the signal-specific
  `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`); `OTEL_SDK_DISABLED=true` or
  `OTEL_TRACES_EXPORTER=none` / `OTEL_METRICS_EXPORTER=none` turn a signal off again. The protocol
  is OTLP/gRPC only (`OTEL_EXPORTER_OTLP_PROTOCOL` unset or `grpc`; anything else stops start-up).
  Off, the API's no-op providers stay in place and the tracing interceptors are not installed:
  nothing is recorded or exported, and a call costs only the metrics interceptor's no-op (~1.5 µs).
- The resource is `service.name` (`OTEL_SERVICE_NAME`, default `samhandling-<service>`),
  `service.version`, and whatever `OTEL_RESOURCE_ATTRIBUTES` adds. The sampler is the SDK's reading
  of `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parent-based, always on), the
  exporter's and batch processor's settings are the SDK's (`OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`).
- Spans: gRPC server and client spans (opentelemetry-instrumentation-grpc, added to our own server
  and peer channels, not patched in globally) and PostgreSQL spans (asyncpg instrumentation, never
  the statement parameters). Every span passes a redaction processor before export.
- Metrics: `rpc.server.duration` (ms) and `rpc.server.errors` per method and status code, recorded
  by an interceptor (services.platform.interceptors.RpcMetricsInterceptor).

The OpenTelemetry API keeps its providers process-global; `configure_telemetry` is the one place
that sets them, and the returned handle's `shutdown()` flushes what is buffered (the providers are
not shut down at interpreter exit on their own: that is the handle's job, bounded in time)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata as package_metadata

from grpc import aio
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, Status

from services.platform.redaction import redact_text, redact_value

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "samhandling"
# Health checks and reflection are probes and tools, not vendor calls: no spans, no metrics.
UNTRACED_SERVICE_PREFIX = "grpc."
SUBSCRIPTION_METHOD_PREFIX = "Watch"
# How long a stopping service waits for its last spans and metrics to be sent. Kubernetes and
# `samhandling up` allow the shutdown grace plus 5 s; the server's drain may use the grace.
FLUSH_SECONDS = 3.0


class TelemetryConfigError(ValueError):
    """An OTEL_* setting this build cannot honour; reported at start-up rather than silently ignored."""


@dataclass(frozen=True)
class TelemetrySettings:
    service_name: str
    traces: bool
    metrics: bool

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = os.environ if environ is None else environ
        if _true(env.get("OTEL_SDK_DISABLED")):
            return cls(service_name=_service_name(service, env), traces=False, metrics=False)
        settings = cls(
            service_name=_service_name(service, env),
            traces=_exporting(env, "TRACES"),
            metrics=_exporting(env, "METRICS"),
        )
        for signal, on in (("TRACES", settings.traces), ("METRICS", settings.metrics)):
            protocol = _protocol(env, signal)
            if on and protocol != "grpc":
                raise TelemetryConfigError(
                    f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: "
                    "only 'grpc' (OTLP/gRPC, port 4317) is supported"
                )
        return settings

    @property
    def enabled(self) -> bool:
        return self.traces or self.metrics


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _exporting(env: Mapping[str, str], signal: str) -> bool:
    endpoint = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    exporter = (env.get(f"OTEL_{signal}_EXPORTER") or "otlp").strip().lower()
    return bool(endpoint and endpoint.strip()) and exporter != "none"


def _protocol(env: Mapping[str, str], signal: str) -> str:
    value = env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    return value.strip().lower()


def _service_name(service: str, env: Mapping[str, str]) -> str:
    explicit = (env.get("OTEL_SERVICE_NAME") or "").strip()
    if explicit:
        return explicit
    for item in (env.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == SERVICE_NAME and value.strip():
            return value.strip()
    return f"samhandling-{service}"


def build_resource(settings: TelemetrySettings) -> Resource:
    """service.name and service.version, then OTEL_RESOURCE_ATTRIBUTES (which may override both)."""
    defaults: dict[str, str] = {SERVICE_NAME: settings.service_name}
    try:
        defaults[SERVICE_VERSION] = package_metadata.version("samhandling")
    except package_metadata.PackageNotFoundError:
        pass
    from_env = dict(OTELResourceDetector().detect().attributes)
    return Resource.create({**defaults, **from_env, SERVICE_NAME: settings.service_name})


class RedactingSpanProcessor(SpanProcessor):
    """Hands the next processor (the batch exporter) a copy of each span in which every name,
    attribute, event, link attribute and status text that looks like a person number or a credential
    is replaced (services.platform.redaction). Spans with nothing to redact pass as they are."""

    def __init__(self, delegate: SpanProcessor) -> None:
        self.delegate = delegate

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.delegate.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.delegate.on_end(redacted_span(span))

    def shutdown(self) -> None:
        self.delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.delegate.force_flush(timeout_millis)


def _redacted_attributes(attributes: object) -> dict | None:
    """A redacted copy, or None when nothing needed redacting."""
    if not attributes:
        return None
    changed = False
    result = {}
    for key, value in attributes.items():  # type: ignore[attr-defined]
        safe = redact_value(key, value)
        changed = changed or safe is not value
        result[key] = safe
    return result if changed else None


def _without_exception_text(event: Event):
    """An exception event keeps the exception's type only: database errors quote row values in their
    messages (`DETAIL: Failing row contains …`), which no pattern can reliably recognise."""
    attributes = event.attributes or {}
    if event.name != "exception" or not ({"exception.message", "exception.stacktrace"} & set(attributes)):
        return event.attributes
    kept = {key: value for key, value in attributes.items() if key not in ("exception.message", "exception.stacktrace")}
    kept["exception.message"] = str(attributes.get("exception.type", "error"))
    return kept


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """`span` itself when nothing in it needs redacting, else a redacted copy."""
    name = redact_text(span.name)
    attributes = _redacted_attributes(span.attributes)
    events = []
    events_changed = False
    for event in span.events:
        event_name = redact_text(event.name)
        source = _without_exception_text(event)
        redacted = _redacted_attributes(source)
        event_attributes = redacted if redacted is not None else source
        if event_attributes is event.attributes and event_name is event.name:
            events.append(event)
            continue
        events_changed = True
        events.append(Event(event_name, event_attributes, timestamp=event.timestamp))
    links = []
    links_changed = False
    for link in span.links:
        link_attributes = _redacted_attributes(link.attributes)
        links_changed = links_changed or link_attributes is not None
        links.append(link if link_attributes is None else Link(link.context, link_attributes))
    status = span.status
    if status.description:
        description = redact_text(status.description)
        if description is not status.description:
            status = Status(status.status_code, description)
    if name is span.name and attributes is None and not events_changed and not links_changed and status is span.status:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def build_tracer_provider(settings: TelemetrySettings, exporter: SpanExporter) -> TracerProvider:
    """The sampler comes from OTEL_TRACES_SAMPLER(_ARG) as the SDK reads it (parent-based by default);
    the batch processor's delay and sizes from OTEL_BSP_*."""
    provider = TracerProvider(resource=build_resource(settings), shutdown_on_exit=False)
    provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(exporter)))
    return provider


def build_meter_provider(settings: TelemetrySettings, reader: MetricReader) -> MeterProvider:
    return MeterProvider(resource=build_resource(settings), metric_readers=[reader], shutdown_on_exit=False)


@dataclass
class Telemetry:
    """What `configure_telemetry` set up, to be shut down (flushed) when the service stops."""

    settings: TelemetrySettings
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None

    def shutdown(self, timeout_seconds: float = FLUSH_SECONDS) -> None:
        """Sends what is buffered and stops both providers, in parallel, giving up after
        `timeout_seconds`: an unreachable collector must not hold up the exit (the exporter alone
        would retry for ~10 s, past the pod's termination grace)."""
        jobs = [provider.shutdown for provider in (self.tracer_provider, self.meter_provider) if provider]
        threads = [threading.Thread(target=job, name="telemetry-shutdown", daemon=True) for job in jobs]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            log.warning("telemetry: not everything was sent within %.0fs; the rest is lost", timeout_seconds)


def configure_telemetry(service: str, *, database: bool) -> Telemetry:
    """Reads the OTEL_* variables and, when an endpoint is set, installs the exporting providers as
    the process's global ones. Call once, at start-up, before the server starts."""
    try:
        settings = TelemetrySettings.from_env(service)
    except TelemetryConfigError as error:
        raise SystemExit(f"samhandling: invalid telemetry configuration: {error}") from None
    telemetry = Telemetry(settings)
    if settings.traces:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        telemetry.tracer_provider = build_tracer_provider(settings, OTLPSpanExporter())
        trace.set_tracer_provider(telemetry.tracer_provider)
        if database:
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

            # Never the parameters: they are patient ids and clinical values. db.statement is the
            # SQL text with $n placeholders.
            AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=telemetry.tracer_provider)
    if settings.metrics:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        # The export interval is OTEL_METRIC_EXPORT_INTERVAL (ms, default 60000).
        telemetry.meter_provider = build_meter_provider(settings, PeriodicExportingMetricReader(OTLPMetricExporter()))
        metrics.set_meter_provider(telemetry.meter_provider)
    if settings.enabled:
        log.info(
            "telemetry: exporting %s over OTLP as %s",
            " and ".join(name for name, on in (("traces", settings.traces), ("metrics", settings.metrics)) if on),
            settings.service_name,
        )
    return telemetry


def traced_method(method: str | bytes | None) -> bool:
    """Whether calls to this full method name (`/package.Service/Method`) get spans and metrics."""
    if isinstance(method, bytes):
        method = method.decode()
    full_name = (method or "").lstrip("/")
    if full_name.startswith(UNTRACED_SERVICE_PREFIX):
        return False
    # A subscription (Watch…) lives for hours: one span for all of it would gather every delivered
    # change into one endless trace. Each change's own calls start their own traces instead.
    return not full_name.rpartition("/")[2].startswith(SUBSCRIPTION_METHOD_PREFIX)


def _traced(details: object) -> bool:
    return traced_method(getattr(details, "method", None))


def tracing_active() -> bool:
    """Whether `configure_telemetry` installed an exporting tracer provider in this process. Without
    one the tracing interceptors would only make no-op spans (~15-20 µs a call each side), so they
    are left out altogether."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def server_tracing_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[aio.ServerInterceptor]:
    """Server spans named by the full method, with the caller's trace context from `traceparent`.
    Records method, service, status code, peer address and user agent; no metadata values, no
    request or response bodies. Empty when tracing is off and no provider is given."""
    if tracer_provider is None and not tracing_active():
        return []
    return [aio_server_interceptor(tracer_provider=tracer_provider, filter_=_traced)]


def client_tracing_interceptors(tracer_provider: trace.TracerProvider | None = None) -> list[object]:
    """Client spans for calls to peers, and `traceparent` injected into their metadata. No request
    hook: request bodies are never recorded. Empty when tracing is off and no provider is given."""
    if tracer_provider is None and not tracing_active():
        return []
    return list(aio_client_interceptors(tracer_provider=tracer_provider))


def rpc_meter(meter_provider: metrics.MeterProvider | None = None) -> metrics.Meter:
    return metrics.get_meter(INSTRUMENTATION_NAME, meter_provider=meter_provider)
