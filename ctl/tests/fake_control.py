#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A fake crgw control API on a unix socket, for cli.sh: one copy-mode netns sandbox "keep".

usage: fake_control.py SOCKET LOG LOWER DATA
Every request's method and path go to LOG, one line each. GET /v1/sandboxes/keep answers a record whose
workspace is LOWER and data directory DATA (its changes in DATA/upper); DELETE /v1/sandboxes/keep answers
200; GET /v1/audit?...follow=1 answers 503 rate_limited as a gateway with too many followers does.
"""
import http.server
import json
import os
import socketserver
import sys

SOCK, LOG, LOWER, DATA = sys.argv[1:5]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def address_string(self):
        return "unix"

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        with open(LOG, "a") as log:
            log.write(f"{self.command} {self.path}\n")
        path = self.path
        if path.startswith("/v1/audit") and "follow=1" in path:
            return self.answer(503, {"code": "rate_limited", "message": "too many audit followers"})
        if path == "/v1/sandboxes/keep" and self.command == "GET":
            return self.answer(200, {"id": "sbx-0123456789", "name": "keep", "backend": "netns",
                                     "workspace": {"mode": "copy", "dir": LOWER}, "data_dir": DATA})
        if path == "/v1/sandboxes/keep" and self.command == "DELETE":
            return self.answer(200, {"released": "sbx-0123456789", "teardown": "done"})
        return self.answer(404, {"code": "not_found", "message": "no such sandbox"})

    do_GET = do_DELETE = do_POST = handle_any


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if os.path.exists(SOCK):
    os.unlink(SOCK)
Server(SOCK, Handler).serve_forever()
