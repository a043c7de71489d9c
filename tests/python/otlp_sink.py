"""An OTLP/HTTP receiver for the tests: oteltest's HttpSink on the port given
as the only argument, printing every span it receives as one JSON line."""

import json
import logging
import sys

from oteltest.sink import HttpSink
from oteltest.sink.handler import RequestHandler


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class PrintSpans(RequestHandler):
    def handle_logs(self, request, headers):
        pass

    def handle_metrics(self, request, headers):
        pass

    def handle_trace(self, request, headers):
        for resource_spans in request.resource_spans:
            resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    print(json.dumps({
                        "service": resource.get("service.name"),
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                        "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()} for l in span.links],
                        "events": [e.name for e in span.events],
                    }), flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sink = HttpSink(PrintSpans(), logging.getLogger("otlp_sink"), port=int(sys.argv[1]), daemon=False)
    sink.start()
