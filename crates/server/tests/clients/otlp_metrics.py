"""OpenTelemetry Python SDK -> Ocelli's OTLP/HTTP metrics endpoint (run by clients_real.rs).

usage: otlp_metrics.py <url of /v1/metrics> proto|proto-gzip|json|bad-json

Records a counter, an up-down counter, a histogram (bounds 0.1, 1, 5) and an observable gauge
into an in-memory reader (cumulative temporality, the SDK's default), then:
  proto     exports them with the SDK's OTLPMetricExporter (protobuf); exits 1 unless the
            exporter reports success (proto-gzip: the same, gzip-compressed);
  json      encodes the same data with the SDK's own encoder and protobuf's JSON mapping and
            POSTs it with Content-Type: application/json, once with enums as integers (what the
            OTLP/JSON spec asks) and once with enum names (what protobuf's parser also accepts);
  bad-json  POSTs a truncated JSON body.
json and bad-json print one JSON line per request: {"what", "status", "content_type", "body"}.
"""

import json
import sys
import urllib.error
import urllib.request

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource


def record():
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create(
            {
                "service.name": "clients-real",
                "service.instance.id": "i-1",
                "deployment.environment": "test",
            }
        ),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="ocelli.test.latency",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=[0.1, 1.0, 5.0]),
            )
        ],
    )
    meter = provider.get_meter("clients_real")
    requests = meter.create_counter("ocelli.test.requests", unit="{request}")
    requests.add(5, {"route": "/a"})
    requests.add(2, {"route": "/a"})
    requests.add(1, {"route": "/b"})
    queue = meter.create_up_down_counter("ocelli.test.queue", unit="{item}")
    queue.add(10)
    queue.add(-3)
    latency = meter.create_histogram("ocelli.test.latency", unit="s")
    for v in (0.05, 0.2, 3.0):
        latency.record(v, {"route": "/a"})
    meter.create_observable_gauge(
        "ocelli.test.temperature",
        callbacks=[lambda _options: [Observation(21.5, {"room": "lab"})]],
        unit="Cel",
    )
    return reader.get_metrics_data()


def post(url, what, body):
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, ctype, text = resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as e:
        status, ctype, text = e.code, e.headers.get("Content-Type"), e.read()
    print(
        json.dumps(
            {
                "what": what,
                "status": status,
                "content_type": ctype,
                "body": text.decode("utf-8", "replace"),
            }
        ),
        flush=True,
    )


def main():
    url, mode = sys.argv[1], sys.argv[2]
    if mode == "bad-json":
        post(url, "truncated", b'{"resourceMetrics": [{"resource": ')
        return
    data = record()
    if mode in ("proto", "proto-gzip"):
        compression = Compression.Gzip if mode == "proto-gzip" else Compression.NoCompression
        exporter = OTLPMetricExporter(endpoint=url, timeout=10, compression=compression)
        result = exporter.export(data)
        print(result.name)
        sys.exit(0 if result == MetricExportResult.SUCCESS else 1)
    try:
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    except ImportError:
        from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import (
            encode_metrics,
        )
    from google.protobuf.json_format import MessageToJson

    request = encode_metrics(data)
    post(url, "enums as integers", MessageToJson(request, use_integers_for_enums=True).encode())
    post(url, "enums as names", MessageToJson(request).encode())


if __name__ == "__main__":
    main()
