"""Tracing over the real mesh: `samhandling up` with an OTLP endpoint set exports to a small OTLP/gRPC
receiver started here (TraceService and MetricsService, as a collector would run them). One vendor
call is one trace across the called service, access, storage and PostgreSQL, linked parent to child
across the process boundaries; and nothing a vendor sent about the patient appears in any span.

The batch delay and metric interval are long on purpose: what the receiver holds was sent when the
services flushed on SIGTERM, so the assertions run on a stopped mesh and prove that flush too."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from samhandling.news2.v1 import news2_pb2, news2_pb2_grpc
from samhandling.overview.v1 import overview_pb2, overview_pb2_grpc

from services.platform.settings import SERVICES
from tests.e2e.processes import clean_env, free_port, start, wait_serving
from tests.e2e.test_vendor_journeys import NURSE_HPR, Mesh
from tests.support import person_number

pytestmark = pytest.mark.e2e

NEWS2_METHOD = "/samhandling.news2.v1.News2Service/RecordVitalSigns"
OVERVIEW_METHOD = "/samhandling.overview.v1.OverviewService/GetOverview"
# Unusual but valid vital signs, so that a leak of any of them would be recognisable.
VITAL_SIGNS = {"respiratory_rate": 23, "spo2": 93, "systolic_bp": 103, "pulse": 137, "temperature": 38.7}


# --- the receiver -------------------------------------------------------------------------------


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(attributes) -> dict[str, object]:
    return {item.key: _value(item.value) for item in attributes}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, object]
    # Everything else a span carries that could hold text: events, links, status message.
    texts: tuple[object, ...]

    @property
    def is_db(self) -> bool:
        return self.attributes.get("db.system") == "postgresql"


@dataclass
class Receiver:
    """Keeps every span and metric data point it is sent."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    resources: list[dict[str, object]] = field(default_factory=list)
    # (service, metric name, data point attributes, count or value)
    points: list[tuple[str, str, dict[str, object], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_spans(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            service = str(resource.get("service.name"))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    texts = (
                        span.status.message,
                        *[(event.name, _attributes(event.attributes)) for event in span.events],
                        *[_attributes(link.attributes) for link in span.links],
                    )
                    received.append(
                        ReceivedSpan(
                            service=service,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            texts=texts,
                        )
                    )
            with self.lock:
                self.resources.append(resource)
        with self.lock:
            self.spans.extend(received)

    def take_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        received = []
        for resource_metrics in request.resource_metrics:
            service = str(_attributes(resource_metrics.resource.attributes).get("service.name"))
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.HasField("histogram"):
                        for point in metric.histogram.data_points:
                            received.append((service, metric.name, _attributes(point.attributes), point.count))
                    elif metric.HasField("sum"):
                        for point in metric.sum.data_points:
                            value = point.as_int if point.HasField("as_int") else point.as_double
                            received.append((service, metric.name, _attributes(point.attributes), value))
        with self.lock:
            self.points.extend(received)

    def snapshot(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request, context):
        self.receiver.take_spans(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request, context):
        self.receiver.take_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, int]]:
    received = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(received), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, port
    server.stop(0)


# --- the mesh and one scenario -----------------------------------------------------------------


@dataclass
class Scenario:
    receiver: Receiver
    log: Path
    patients: list[str]
    tokens: list[str]


def _traced_env(port: int) -> dict[str, str]:
    env = {key: value for key, value in clean_env().items() if not key.startswith("OTEL_")}
    return env | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e",
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, receiver: tuple[Receiver, int]) -> Scenario:
    """Starts the mesh, makes the calls, and stops the mesh (which flushes every service's telemetry)."""
    received, receiver_port = receiver
    data_dir = tmp_path_factory.mktemp("tracing")
    ports = {name: free_port() for name in SERVICES}
    args = ["up", "--data-dir", str(data_dir)]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    log = data_dir / "up.log"
    process = start(args, _traced_env(receiver_port), log)
    try:
        for port in ports.values():
            wait_serving(f"127.0.0.1:{port}", 90)
        mesh = Mesh(data_dir, ports)
        patients, tokens = _run_calls(mesh)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0
    return Scenario(received, log, patients, tokens)


def _run_calls(mesh: Mesh) -> tuple[list[str], list[str]]:
    """One RecordVitalSigns, one GetOverview, and one GetOverview that access denies."""
    vital_patient, overview_patient, denied_patient = person_number(), person_number(), person_number()
    nurse = mesh.token(
        client_id="legevakt-ehr",
        hpr_number=NURSE_HPR,
        purpose_of_use="ETREAT",
        patient_ids=(vital_patient, overview_patient),
    )
    measured = Timestamp()
    measured.GetCurrentTime()
    vital_signs = news2_pb2.VitalSigns(
        on_oxygen=False, consciousness=news2_pb2.CONSCIOUSNESS_ALERT, measured_at=measured, **VITAL_SIGNS
    )
    with (
        grpc.insecure_channel(mesh.target("news2")) as news2_channel,
        grpc.insecure_channel(mesh.target("overview")) as overview_channel,
    ):
        news2 = news2_pb2_grpc.News2ServiceStub(news2_channel)
        overview = overview_pb2_grpc.OverviewServiceStub(overview_channel)
        news2.RecordVitalSigns(
            news2_pb2.RecordVitalSignsRequest(
                patient_id=vital_patient, vital_signs=vital_signs, idempotency_key=str(uuid.uuid4())
            ),
            metadata=nurse,
            timeout=10,
        )
        overview.GetOverview(overview_pb2.GetOverviewRequest(patient_id=overview_patient), metadata=nurse, timeout=10)
        with pytest.raises(grpc.RpcError) as denied:
            overview.GetOverview(overview_pb2.GetOverviewRequest(patient_id=denied_patient), metadata=nurse, timeout=10)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    token = nurse[0][1].removeprefix("Bearer ")
    return [vital_patient, overview_patient, denied_patient], [token]


# --- assertions --------------------------------------------------------------------------------


def _received(result: object, what: str) -> object:
    assert result, f"not received (flushed at shutdown): {what}"
    return result


def _roots(spans: list[ReceivedSpan], service: str, method: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == service and s.name == method and s.kind == SpanProto.SPAN_KIND_SERVER]


def _complete_trace(received: Receiver, service: str, method: str) -> list[ReceivedSpan] | None:
    """The spans of the trace of the one successful call to `method`, if it reaches access, storage
    and the database and every parent in it arrived."""
    spans = received.snapshot()
    [root] = [r for r in _roots(spans, service, method) if r.attributes.get("rpc.grpc.status_code") == 0]
    in_trace = [s for s in spans if s.trace_id == root.trace_id]
    ids = {s.span_id for s in in_trace}
    services = {s.service for s in in_trace}
    complete = (
        {service, "samhandling-access", "samhandling-storage"} <= services
        and {s.service for s in in_trace if s.is_db} >= {"samhandling-access", "samhandling-storage"}
        and all(not s.parent_span_id or s.parent_span_id in ids for s in in_trace)
    )
    return in_trace if complete else None


def _assert_one_linked_trace(in_trace: list[ReceivedSpan], service: str, method: str) -> None:
    by_id = {s.span_id: s for s in in_trace}
    assert len(by_id) == len(in_trace), "span ids are unique"
    [root] = [s for s in in_trace if not s.parent_span_id]
    assert (root.service, root.name, root.kind) == (service, method, SpanProto.SPAN_KIND_SERVER)
    # Every server span in a peer is the child of a client span in the process that called it.
    peer_servers = [s for s in in_trace if s.kind == SpanProto.SPAN_KIND_SERVER and s is not root]
    assert {s.service for s in peer_servers} >= {"samhandling-access", "samhandling-storage"}
    for server in peer_servers:
        caller = by_id[server.parent_span_id]
        assert caller.kind == SpanProto.SPAN_KIND_CLIENT and caller.service != server.service
        assert caller.name == server.name
    assert any(s.name == "/samhandling.access.v1.AccessService/Authorize" for s in peer_servers)
    # Database spans hang below the server span of their own service, without parameters.
    for db in (s for s in in_trace if s.is_db):
        assert db.kind == SpanProto.SPAN_KIND_CLIENT
        assert not any(key.startswith("db.statement.parameters") for key in db.attributes)
        ancestor = db
        while ancestor.kind != SpanProto.SPAN_KIND_SERVER:
            ancestor = by_id[ancestor.parent_span_id]
        assert ancestor.service == db.service


def test_record_vital_signs_is_one_trace_from_news2_to_the_database(scenario: Scenario):
    in_trace = _received(
        _complete_trace(scenario.receiver, "samhandling-news2", NEWS2_METHOD), "the RecordVitalSigns trace"
    )
    _assert_one_linked_trace(in_trace, "samhandling-news2", NEWS2_METHOD)
    assert any(s.name == "/samhandling.storage.v1.StorageService/PutRecord" for s in in_trace)
    assert len(_roots(scenario.receiver.snapshot(), "samhandling-news2", NEWS2_METHOD)) == 1


def test_get_overview_is_one_trace_from_overview_to_the_database(scenario: Scenario):
    in_trace = _received(
        _complete_trace(scenario.receiver, "samhandling-overview", OVERVIEW_METHOD), "the GetOverview trace"
    )
    _assert_one_linked_trace(in_trace, "samhandling-overview", OVERVIEW_METHOD)
    root = next(s for s in in_trace if not s.parent_span_id)
    assert root.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]


def test_a_denied_call_carries_its_status_code_on_every_hop(scenario: Scenario):
    def denied_trace() -> list[ReceivedSpan] | None:
        spans = scenario.receiver.snapshot()
        roots = _roots(spans, "samhandling-overview", OVERVIEW_METHOD)
        denied = [r for r in roots if r.attributes.get("rpc.grpc.status_code") == 7]
        if not denied:
            return None
        in_trace = [s for s in spans if s.trace_id == denied[0].trace_id]
        return in_trace if any(s.service == "samhandling-access" for s in in_trace) else None

    in_trace = _received(denied_trace(), "the denied GetOverview trace")
    authorize = [s for s in in_trace if s.service == "samhandling-access" and s.kind == SpanProto.SPAN_KIND_SERVER]
    assert [s.attributes["rpc.grpc.status_code"] for s in authorize] == [grpc.StatusCode.PERMISSION_DENIED.value[0]]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def test_no_span_carries_a_patient_identifier_a_credential_or_a_clinical_value(scenario: Scenario):
    spans = scenario.receiver.snapshot()
    assert len(spans) > 20
    forbidden = [*scenario.patients, *scenario.tokens, "Bearer", "authorization"]
    clinical = {str(value) for value in VITAL_SIGNS.values()}
    for span in spans:
        for text in _strings((span.name, span.attributes, span.texts)):
            assert not any(secret in text for secret in forbidden), (span.name, text)
            assert not re.search(r"(?<![0-9])[0-9]{11}(?![0-9])", text), (span.name, text)
            # Statement placeholders ($1 … $23) are not values.
            numbers = set(re.findall(r"(?<![0-9.$])[0-9]+(?:\.[0-9]+)?(?![0-9.])", text))
            assert not numbers & clinical, (span.name, text, numbers & clinical)
    for resource in scenario.receiver.resources:
        assert resource["deployment.environment.name"] == "e2e"
    with scenario.receiver.lock:
        metric_texts = [text for point in scenario.receiver.points for text in _strings(point[2])]
    assert metric_texts and not any(secret in text for text in metric_texts for secret in forbidden)


def test_rpc_latency_and_errors_are_exported_per_method(scenario: Scenario):
    def points(service: str, name: str, method: str, code: int) -> float:
        with scenario.receiver.lock:
            matching = [
                value
                for (point_service, point_name, attributes, value) in scenario.receiver.points
                if (point_service, point_name) == (service, name)
                and attributes.get("rpc.method") == method
                and attributes.get("rpc.grpc.status_code") == code
            ]
        return max(matching, default=0)

    assert points("samhandling-news2", "rpc.server.duration", "RecordVitalSigns", 0) == 1
    assert points("samhandling-overview", "rpc.server.duration", "GetOverview", 0) == 1
    assert points("samhandling-overview", "rpc.server.errors", "GetOverview", 7) == 1
    assert points("samhandling-access", "rpc.server.errors", "Authorize", 7) == 1


def test_service_logs_are_json_lines_without_patient_data(scenario: Scenario):
    lines = [line for line in scenario.log.read_text().splitlines() if line.startswith("{")]
    entries = [json.loads(line) for line in lines]
    started = {e["service"] for e in entries if e["message"].startswith("telemetry: exporting traces and metrics")}
    assert started == set(SERVICES)
    for entry in entries:
        assert {"timestamp", "level", "service", "logger", "message", "request_id"} <= entry.keys()
    text = "\n".join(lines)
    assert not any(secret in text for secret in [*scenario.patients, *scenario.tokens])
