#!/usr/bin/env python3
"""A minimal OTLP/HTTP traces receiver for tests: decodes what an exporter sends and writes the spans as JSON lines.

Usage: otlp_receiver.py OUTPUT_FILE
Listens on 127.0.0.1 on a free port and prints the port on standard output (one line), then serves
POST /v1/traces (protobuf ExportTraceServiceRequest, optionally gzip) until killed. Each span becomes one line of
OUTPUT_FILE: {"service", "name", "kind", "trace_id", "span_id", "parent_span_id", "attributes"} with the ids in
lower-case hex, as W3C traceparent writes them. Anything else is answered 404; an undecodable body 400.
Needs PyPI's opentelemetry-proto (scripts/install-deps.sh installs it).
"""
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

lock = threading.Lock()


def any_value(value):
    kind = value.WhichOneof("value")
    return None if kind is None else str(getattr(value, kind))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding", "") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception as error:  # noqa: BLE001 - any decoding failure is the sender's
            self.send_error(400, str(error))
            return
        lines = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: any_value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(json.dumps({
                        "service": attributes.get("service.name"),
                        "name": span.name,
                        "kind": span.kind,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "attributes": {a.key: any_value(a.value) for a in span.attributes},
                    }))
        with lock, open(sys.argv[1], "a", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):  # noqa: A002 - quiet: the test reads the output file
        pass


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: otlp_receiver.py OUTPUT_FILE")
    open(sys.argv[1], "a").close()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
