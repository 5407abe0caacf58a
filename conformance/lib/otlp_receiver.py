#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A small OTLP/HTTP JSON logs receiver for the tests (the OpenTelemetry collector is not packaged).

POST /v1/logs with a body in the OTLP JSON encoding of ExportLogsServiceRequest: every request is checked
against the parts of the schema the gateway uses (resourceLogs[].resource.attributes,
scopeLogs[].scope, logRecords[] with timeUnixNano as a decimal string, severityNumber 1-24,
severityText, body.stringValue, attributes[] of {key, value: {stringValue}}). A valid request is answered
200 {} and each record's body appended to OUT, one per line; an invalid one 400 and a line in OUT.errors.
The first FAIL_FIRST requests are answered 503 (a receiver that is down for a while).
usage: otlp_receiver.py ADDR PORT OUT [FAIL_FIRST]
"""
import http.server
import json
import sys

ADDR, PORT, OUT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
FAIL_FIRST = int(sys.argv[4]) if len(sys.argv) > 4 else 0
seen = 0


def check(doc):
    assert isinstance(doc, dict) and isinstance(doc.get("resourceLogs"), list) and doc["resourceLogs"]
    bodies = []
    for rl in doc["resourceLogs"]:
        for a in rl.get("resource", {}).get("attributes", []):
            assert isinstance(a["key"], str) and isinstance(a["value"]["stringValue"], str)
        for sl in rl["scopeLogs"]:
            assert isinstance(sl.get("scope", {}).get("name", ""), str)
            for r in sl["logRecords"]:
                assert isinstance(r["timeUnixNano"], str) and r["timeUnixNano"].isdigit()
                assert isinstance(r["severityNumber"], int) and 1 <= r["severityNumber"] <= 24
                assert isinstance(r["severityText"], str)
                assert isinstance(r["body"]["stringValue"], str)
                for a in r.get("attributes", []):
                    assert isinstance(a["key"], str) and isinstance(a["value"]["stringValue"], str)
                bodies.append(r["body"]["stringValue"])
    return bodies


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global seen
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        seen += 1
        if self.path != "/v1/logs" or self.headers.get("Content-Type") != "application/json":
            self.answer(404)
            return
        if seen <= FAIL_FIRST:
            self.answer(503)
            return
        try:
            bodies = check(json.loads(data))
        except (AssertionError, KeyError, TypeError, ValueError) as e:
            with open(OUT + ".errors", "a") as f:
                f.write(f"invalid request: {e!r}\n")
            self.answer(400)
            return
        with open(OUT, "a") as f:
            for b in bodies:
                f.write(b + "\n")
        self.answer(200)


http.server.ThreadingHTTPServer((ADDR, PORT), Handler).serve_forever()
