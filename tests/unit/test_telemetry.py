"""Telemetry without a network: the redaction in front of the exporter, the JSON log lines with trace
ids, configuration from the OTEL_* variables, the RPC metrics interceptor, and the collector
configuration we hand the platform team. Providers are local to each test (never the global ones)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from grpc import aio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, Status, StatusCode

from services.platform import request_context
from services.platform.interceptors import RpcMetricsInterceptor
from services.platform.logs import JsonFormatter
from services.platform.redaction import REDACTED, redact_text, redact_value
from services.platform.telemetry import (
    RedactingSpanProcessor,
    Telemetry,
    TelemetryConfigError,
    TelemetrySettings,
    build_resource,
    build_tracer_provider,
    client_tracing_interceptors,
    configure_telemetry,
    redacted_span,
    server_tracing_interceptors,
    traced_method,
)
from tests.support import person_number

ROOT = Path(__file__).resolve().parents[2]
LEADING_ZERO_PATIENT = next(p for p in iter(person_number, None) if p.startswith("0"))
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"


@pytest.fixture
def exported() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(RedactingSpanProcessor(SimpleSpanProcessor(exporter)))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("patient 01018012345 not found", f"patient {REDACTED} not found"),
        ("010180 12345", REDACTED),
        ("ids 01018012345,02028023456", f"ids {REDACTED},{REDACTED}"),
        ("Bearer abc.def-ghi", REDACTED),
        (f"token {JWT} rejected", f"token {REDACTED} rejected"),
        # Not person numbers: shorter or longer digit runs, hex trace ids, decimals.
        ("port 50051, 1234567890 and 123456789012", "port 50051, 1234567890 and 123456789012"),
        ("SELECT $1, $2 LIMIT 200", "SELECT $1, $2 LIMIT 200"),
        ("38.7", "38.7"),
    ],
)
def test_text_is_redacted_only_where_it_looks_like_a_person_number_or_credential(text: str, expected: str):
    assert redact_text(text) == expected


def test_values_are_redacted_by_key_and_by_content_of_every_type():
    patient = person_number()
    assert redact_value("rpc.request.metadata.authorization", "anything") == REDACTED
    assert redact_value("session.token", "x") == REDACTED
    assert redact_value("patient", int(patient)) == REDACTED
    # As an integer, a person number born on the 1st to 9th of a month has lost its leading zero.
    assert redact_value("patient", int(LEADING_ZERO_PATIENT)) == REDACTED
    assert redact_value("timestamp", 1_767_225_600) == 1_767_225_600
    assert redact_value("count", 42) == 42
    assert redact_value("flag", True) is True
    assert redact_value("ids", [patient, "ok"]) == (REDACTED, "ok")
    assert redact_value("numbers", [int(patient), 7]) == (REDACTED, "7")
    unchanged = ["a", "b"]
    assert redact_value("list", unchanged) is unchanged


@pytest.mark.parametrize("patient", [person_number(), LEADING_ZERO_PATIENT])
def test_the_exporter_receives_spans_without_person_numbers_or_credentials(exported, patient: str):
    tracer, exporter = exported
    with tracer.start_as_current_span(f"lookup {patient}", links=[Link(_context(), {"why": patient})]) as span:
        span.set_attributes(
            {
                "patient.id": patient,
                "patient.number": int(patient),
                "rpc.request.metadata.authorization": "Bearer abc",
                "error.text": f"bad token {JWT}",
                "db.statement": "SELECT * FROM records WHERE patient_id = $1",
                "rpc.grpc.status_code": 7,
            }
        )
        span.add_event("exception", {"exception.message": f"no such patient {patient}"})
        span.set_status(Status(StatusCode.ERROR, f"failed for {patient}"))
    [finished] = exporter.get_finished_spans()
    assert finished.name == f"lookup {REDACTED}"
    assert finished.attributes == {
        "patient.id": REDACTED,
        "patient.number": REDACTED,
        "rpc.request.metadata.authorization": REDACTED,
        "error.text": f"bad token {REDACTED}",
        "db.statement": "SELECT * FROM records WHERE patient_id = $1",
        "rpc.grpc.status_code": 7,
    }
    # An exception event keeps the exception's type only (no type given here).
    assert finished.events[0].attributes == {"exception.message": "error"}
    assert finished.links[0].attributes == {"why": REDACTED}
    assert finished.status.description == f"failed for {REDACTED}"
    assert finished.context == span.get_span_context() and finished.parent is None


def test_a_span_with_nothing_to_redact_is_passed_on_as_it_is(exported):
    tracer, _ = exported
    with tracer.start_as_current_span("/samhandling.news2.v1.News2Service/RecordVitalSigns") as span:
        span.set_attributes({"rpc.method": "RecordVitalSigns", "rpc.grpc.status_code": 0})
        span.add_event("done", {"n": 1})
    assert redacted_span(span) is span


def _context() -> trace.SpanContext:
    return trace.SpanContext(trace_id=1, span_id=2, is_remote=True, trace_flags=trace.TraceFlags(1))


# --- logs --------------------------------------------------------------------------------------


def _log_line(emit) -> dict[str, str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("news2"))
    logger = logging.getLogger("tests.telemetry")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        emit(logger)
    finally:
        logger.handlers.clear()
    [line] = stream.getvalue().splitlines()
    return json.loads(line)


def test_log_lines_are_json_with_request_trace_and_span_ids(exported):
    tracer, _ = exported
    token = request_context.request_id.set("req-1")
    try:
        with tracer.start_as_current_span("call") as span:
            entry = _log_line(lambda logger: logger.warning("store slow: %d ms", 1200))
    finally:
        request_context.request_id.reset(token)
    context = span.get_span_context()
    assert entry == {
        "timestamp": entry["timestamp"],
        "level": "WARNING",
        "service": "news2",
        "logger": "tests.telemetry",
        "message": "store slow: 1200 ms",
        "request_id": "req-1",
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }
    assert entry["timestamp"].endswith("+00:00") and "T" in entry["timestamp"]


def test_log_lines_outside_a_span_have_no_trace_ids_and_never_a_patient_or_an_error_message():
    patient = person_number()

    def emit(logger: logging.Logger) -> None:
        try:
            raise ValueError(f"patient {patient} is unknown")
        except ValueError:
            logger.exception("lookup failed for %s", patient)

    entry = _log_line(emit)
    assert "trace_id" not in entry and entry["request_id"] == "-"
    assert entry["message"] == f"lookup failed for {REDACTED}"
    assert entry["error"].startswith("builtins.ValueError at ")
    assert patient not in json.dumps(entry)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "traces", "metrics"),
    [
        ({}, False, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True, False),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4317"}, False, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_METRICS_EXPORTER": "none"}, True, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, False, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, False, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False, False),
    ],
)
def test_signals_are_exported_only_when_an_endpoint_is_set(environ, traces, metrics):
    settings = TelemetrySettings.from_env("news2", environ)
    assert (settings.traces, settings.metrics) == (traces, metrics)


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json"},
    ],
)
def test_a_protocol_other_than_grpc_is_refused_at_start_up(environ):
    with pytest.raises(TelemetryConfigError, match="only 'grpc'"):
        TelemetrySettings.from_env("news2", environ)


def test_the_protocol_of_a_signal_that_is_off_does_not_matter():
    environ = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "x"}
    assert TelemetrySettings.from_env("news2", environ).traces


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({}, "samhandling-news2"),
        ({"OTEL_SERVICE_NAME": "news2-bodo"}, "news2-bodo"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=sre,service.name=vitals"}, "vitals"),
        ({"OTEL_SERVICE_NAME": "a", "OTEL_RESOURCE_ATTRIBUTES": "service.name=b"}, "a"),
    ],
)
def test_the_service_name_defaults_to_samhandling_and_the_service(environ, name):
    assert TelemetrySettings.from_env("news2", environ).service_name == name


def test_the_resource_carries_the_service_and_the_standard_resource_attributes(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,k8s.pod.name=news2-0")
    attributes = build_resource(TelemetrySettings.from_env("news2")).attributes
    assert attributes["service.name"] == "samhandling-news2"
    assert attributes["deployment.environment.name"] == "test"
    assert attributes["k8s.pod.name"] == "news2-0"
    assert attributes["service.version"]


def test_the_sampler_is_parent_based_unless_the_environment_says_otherwise(monkeypatch):
    settings = TelemetrySettings("samhandling-news2", traces=True, metrics=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    provider = build_tracer_provider(settings, InMemorySpanExporter())
    assert isinstance(provider.sampler, ParentBased)
    provider.shutdown()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = build_tracer_provider(settings, InMemorySpanExporter())
    assert isinstance(provider.sampler, TraceIdRatioBased) and provider.sampler.rate == 0.25
    provider.shutdown()


def test_without_an_endpoint_nothing_is_set_up(monkeypatch):
    for signal in ("", "TRACES_", "METRICS_"):
        monkeypatch.delenv(f"OTEL_EXPORTER_OTLP_{signal}ENDPOINT", raising=False)
    telemetry = configure_telemetry("storage", database=True)
    assert telemetry.tracer_provider is None and telemetry.meter_provider is None
    telemetry.shutdown()


def test_the_tracing_interceptors_are_left_out_unless_tracing_is_configured():
    # No test sets the process's global tracer provider: it is still the API's no-op proxy here.
    assert server_tracing_interceptors() == [] and client_tracing_interceptors() == []
    provider = TracerProvider()
    assert len(server_tracing_interceptors(provider)) == 1
    assert len(client_tracing_interceptors(provider)) == 4


def test_shutdown_sends_what_is_buffered_but_gives_up_on_a_collector_that_does_not_answer():
    class Collector(SpanExporter):
        def __init__(self, stall: float) -> None:
            self.stall, self.received = stall, 0

        def export(self, spans):
            time.sleep(self.stall)
            self.received += len(spans)
            return SpanExportResult.SUCCESS

    settings = TelemetrySettings("samhandling-news2", traces=True, metrics=False)
    for collector, expected in ((Collector(0.0), 1), (Collector(5.0), 0)):
        telemetry = Telemetry(settings, tracer_provider=build_tracer_provider(settings, collector))
        with telemetry.tracer_provider.get_tracer("test").start_as_current_span("call"):
            pass
        began = time.monotonic()
        telemetry.shutdown(timeout_seconds=0.5)
        assert time.monotonic() - began < 1.5
        assert collector.received == expected


def test_health_and_reflection_are_not_traced():
    assert traced_method("/samhandling.news2.v1.News2Service/RecordVitalSigns")
    assert not traced_method("/grpc.health.v1.Health/Check")
    assert not traced_method(b"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")


# --- RPC metrics -------------------------------------------------------------------------------


class _Context:
    """The part of a servicer context the metrics interceptor reads."""

    def __init__(self, code: grpc.StatusCode | None = None) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code


@dataclass(frozen=True)
class _Details:
    method: str
    invocation_metadata: tuple = ()


def _points(reader: InMemoryMetricReader) -> dict[str, list]:
    data = reader.get_metrics_data()
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


async def test_latency_and_errors_are_recorded_per_method_and_code_and_the_span_gets_the_code(exported):
    tracer, exporter = exported
    reader = InMemoryMetricReader()
    interceptor = RpcMetricsInterceptor(MeterProvider(metric_readers=[reader]).get_meter("test"))
    method = "/samhandling.overview.v1.OverviewService/GetOverview"

    async def answer(request, context):
        return "ok"

    async def deny(request, context):
        raise aio.AbortError()

    await interceptor.decorate(answer, False, _Details(method))(None, _Context())
    with tracer.start_as_current_span(method, kind=trace.SpanKind.SERVER):
        with pytest.raises(aio.AbortError):
            await interceptor.decorate(deny, False, _Details(method))(None, _Context(grpc.StatusCode.PERMISSION_DENIED))
    with tracer.start_as_current_span(method, kind=trace.SpanKind.SERVER):
        with pytest.raises(aio.AbortError):
            await interceptor.decorate(deny, False, _Details(method))(None, _Context(grpc.StatusCode.UNAVAILABLE))

    points = _points(reader)
    durations = {point.attributes["rpc.grpc.status_code"]: point for point in points["rpc.server.duration"]}
    assert set(durations) == {0, 7, 14}
    assert durations[0].attributes == {
        "rpc.service": "samhandling.overview.v1.OverviewService",
        "rpc.method": "GetOverview",
        "rpc.grpc.status_code": 0,
    }
    assert all(point.count == 1 for point in durations.values())
    errors = {point.attributes["rpc.grpc.status_code"]: point.value for point in points["rpc.server.errors"]}
    assert errors == {7: 1, 14: 1}
    denied, unavailable = exporter.get_finished_spans()
    assert denied.attributes["rpc.grpc.status_code"] == 7 and denied.status.status_code == StatusCode.UNSET
    assert unavailable.attributes["rpc.grpc.status_code"] == 14 and unavailable.status.status_code == StatusCode.ERROR


# --- the collector configuration for the platform team ----------------------------------------


def test_the_documented_collector_configuration_is_a_complete_pipeline():
    config = yaml.safe_load((ROOT / "docs" / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    pipelines = config["service"]["pipelines"]
    assert {"traces", "metrics"} <= pipelines.keys()
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            assert pipeline[kind], kind
            assert all(name in config[kind] for name in pipeline[kind]), (kind, pipeline[kind])
        assert pipeline["processors"][0] == "memory_limiter" and pipeline["processors"][-1] == "batch"
        assert "redaction" in pipeline["processors"]
    assert "attributes/drop-sensitive" in pipelines["traces"]["processors"]
    redaction = config["processors"]["redaction"]
    assert redaction["allow_all_keys"] and redaction["blocked_values"]
    assert all(name in config["extensions"] for name in config["service"]["extensions"])


def test_exception_events_keep_only_the_exception_type():
    from opentelemetry.sdk.trace import TracerProvider as _Provider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.platform.telemetry import RedactingSpanProcessor

    exporter = InMemorySpanExporter()
    provider = _Provider()
    provider.add_span_processor(RedactingSpanProcessor(SimpleSpanProcessor(exporter)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("insert") as span:
        span.record_exception(ValueError('DETAIL: Failing row contains (1804, {"pulse": 137, "spo2": 93})'))
    [exported] = exporter.get_finished_spans()
    [event] = exported.events
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "ValueError"
    assert "exception.stacktrace" not in event.attributes
    assert "137" not in str(dict(event.attributes))


def test_subscriptions_are_not_traced_as_one_endless_span():
    from services.platform.telemetry import traced_method

    assert traced_method("/samhandling.news2.v1.News2Service/RecordVitalSigns")
    assert not traced_method("/samhandling.news2.v1.News2Service/WatchAlerts")
    assert not traced_method("/samhandling.storage.v1.StorageService/Watch")
    assert not traced_method("/grpc.health.v1.Health/Check")
