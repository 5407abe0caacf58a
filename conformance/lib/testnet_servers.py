#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Small upstream servers for the test network (testnet.sh): static HTTP and HTTPS with an echo endpoint,
# and a TCP banner/echo service.
#
#   testnet_servers.py http   ADDR PORT DIR            serve DIR over HTTP/1.1 on ADDR:PORT
#   testnet_servers.py https  ADDR PORT DIR CERT KEY   the same over TLS (CERT: PEM chain, KEY: its key)
#   testnet_servers.py banner ADDR PORT                send "SSH-2.0-crgw-testnet ADDR\r\n", then echo
#                                                      what arrives
#
# HTTP and HTTPS speak HTTP/1.1 with keep-alive: files carry Content-Length, so one connection serves
# request after request, pipelined or not. An error (404, 501, 400) closes the connection. Large files go
# out with sendfile(2) over plain TCP and in 256 KiB writes over TLS.
#
# /echo (any method, any query string; also when the target is in absolute form) answers 200 with one
# line of JSON describing the request as it arrived, so a test can see what a proxy forwarded:
#   method       the method
#   target       the request target exactly as received ("/echo?a=1", "http://allowed.test/echo")
#   version      "HTTP/1.1" or "HTTP/1.0"
#   headers      [[name, value], ...] in arrival order, names as sent
#   body_length  bytes of body after removing the chunked coding; body_sha256: their sha256 (hex)
#   trailers     [[name, value], ...] of a chunked body (empty otherwise)
#   client       "ADDR:PORT" of the connection; request: 1 for its first request, 2 for the next...
# GET /chunked/NAME sends the served file NAME with the chunked transfer coding (256 KiB chunks).
# GET /hangup closes the connection without answering; GET /truncated announces 100,000 bytes, sends 1,000
# and closes: upstream failures for the proxies' tests.
# The body is read by Content-Length or the chunked transfer coding; anything else is a 400 that closes
# the connection. A HEAD gets the headers of that answer and no body.
#
# Why not `python3 -m http.server`: its HTTPServer.server_bind() calls socket.getfqdn() on the bind address,
# a reverse lookup through the machine's resolver. The test network must never use that resolver, so this
# server keeps the numeric address as its name. Nothing here resolves a name: addresses must be numeric.
# All servers run until SIGTERM (the default action is fine: they hold no state worth flushing).

import hashlib
import http.server
import ipaddress
import json
import os
import re
import socket
import socketserver
import ssl
import sys
import urllib.parse

# A client that connects to the TLS port and never finishes its handshake is given up on after this.
HANDSHAKE_TIMEOUT = 10
# Bytes per read or write when copying a body or a file over TLS.
COPY_CHUNK = 256 << 10
# Longest chunk-size or trailer line accepted in a chunked body.
MAX_LINE = 8192
HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
DIGITS = re.compile(r"[0-9]{1,19}")


class BodyError(Exception):
    pass


class NumericHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # An ssl.SSLContext for HTTPS, None for plain HTTP.
    tls = None

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        # The handshake runs here, in the connection's own thread: in the accept loop, one client that
        # never sends its hello would stall every other one.
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except OSError as e:  # ssl.SSLError included; wrap_socket has closed the socket
            sys.stderr.write(f"{client_address[0]}: TLS handshake failed: {e}\n")
            return None
        try:
            conn.settimeout(None)
            return super().finish_request(conn, client_address)
        finally:
            # The plain socket was detached into conn: the caller's shutdown_request cannot close it.
            self.shutdown_request(conn)


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.seen = 0

    # One line per request on stderr (the caller sends it to a log file); no reverse lookups.
    def address_string(self):
        return self.client_address[0]

    # Requests for /echo go to do_ECHO whatever their method; the method is kept in echo_method.
    def parse_request(self):
        self.echo_method = None
        if not super().parse_request():
            return False
        self.seen += 1
        # self.path may have been tidied ("//x" becomes "/x"); the request line has the target as sent.
        words = self.requestline.split()
        self.target = words[1] if len(words) > 1 else ""
        if self.target.startswith("/"):
            path = self.target.split("?", 1)[0]  # origin form ("//echo" is not /echo)
        else:
            try:
                path = urllib.parse.urlsplit(self.target).path  # absolute form
            except ValueError:
                path = None
        if path == "/echo":
            self.echo_method, self.command = self.command, "ECHO"
        return True

    def do_ECHO(self):
        if self.echo_method is None:  # a request whose method is "ECHO", for another path
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        self.command = self.echo_method  # send_error and logging see the real method again
        try:
            length, digest, trailers = self.read_body()
        except BodyError as e:
            self.send_error(400, f"echo: {e}")  # closes the connection: the framing is lost
            return
        info = {
            "method": self.echo_method,
            "target": self.target,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_length": length,
            "body_sha256": digest,
            "trailers": trailers,
            "client": f"{self.client_address[0]}:{self.client_address[1]}",
            "request": self.seen,
        }
        body = (json.dumps(info) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.echo_method != "HEAD":
            self.wfile.write(body)

    # Returns (length, sha256 hex, trailers) of the request body, read by its framing; BodyError if the
    # framing is invalid or the body ends early.
    def read_body(self):
        h = hashlib.sha256()
        trailers = []
        te = [c.strip().lower() for v in self.headers.get_all("Transfer-Encoding", []) for c in v.split(",")]
        te = [c for c in te if c]
        cl = {v.strip() for v in self.headers.get_all("Content-Length", [])}
        if te:
            # Transfer-Encoding wins over Content-Length (RFC 9112 6.3); only chunked ends a request body.
            if te[-1] != "chunked":
                raise BodyError(f"transfer coding {te[-1]!r} is not chunked")
            length = 0
            while True:
                size = self.read_line().split(b";", 1)[0].strip(b" \t\r\n")
                if not HEX.fullmatch(size):
                    raise BodyError(f"bad chunk size {size[:40]!r}")
                size = int(size, 16)
                if size == 0:
                    break
                length += self.copy_body(size, h)
                if self.read_line() not in (b"\r\n", b"\n"):
                    raise BodyError("chunk data not followed by CRLF")
            while True:
                line = self.read_line()
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                trailers.append([name, value.strip()])
            return length, h.hexdigest(), trailers
        if not cl:
            return 0, h.hexdigest(), trailers
        if len(cl) != 1 or not DIGITS.fullmatch(next(iter(cl))):
            raise BodyError(f"bad Content-Length {sorted(cl)!r}")
        return self.copy_body(int(next(iter(cl))), h), h.hexdigest(), trailers

    def read_line(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise BodyError("chunked body: line too long or connection closed")
        return line

    # Reads exactly n body bytes into the hash; returns n.
    def copy_body(self, n, h):
        buf = memoryview(bytearray(min(n, COPY_CHUNK)))
        left = n
        while left:
            got = self.rfile.readinto(buf[: min(left, len(buf))])
            if not got:
                raise BodyError(f"body ended {left} bytes early")
            h.update(buf[:got])
            left -= got
        return n

    # GET /chunked/NAME: the file NAME of the served directory with the chunked transfer coding, so tests
    # can check a proxy that has to parse a response body to find its end.
    def do_GET(self):
        path = self.target.split("?", 1)[0] if self.target.startswith("/") else None
        if path == "/hangup":
            self.close_connection = True  # no answer at all
            return
        if path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.close_connection = True  # 99,000 bytes short
            return
        if path is None or not path.startswith("/chunked/"):
            super().do_GET()
            return
        name = path[len("/chunked/"):]
        if not name or "/" in name or name.startswith("."):
            self.send_error(404)
            return
        try:
            f = open(os.path.join(self.directory, name), "rb")
        except OSError:
            self.send_error(404)
            return
        with f:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            buf = memoryview(bytearray(COPY_CHUNK))
            while True:
                got = f.readinto(buf)
                if not got:
                    break
                self.wfile.write(b"%x\r\n" % got + bytes(buf[:got]) + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    def copyfile(self, source, outputfile):
        if not isinstance(self.connection, ssl.SSLSocket):
            # The headers went out unbuffered (wbufsize 0), so the file follows them in order.
            self.connection.sendfile(source)
            return
        buf = memoryview(bytearray(COPY_CHUNK))
        while True:
            got = source.readinto(buf)
            if not got:
                return
            outputfile.write(buf[:got])


class BannerServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class BannerHandler(socketserver.BaseRequestHandler):
    def handle(self):
        addr = self.server.server_address[0]
        self.request.sendall(f"SSH-2.0-crgw-testnet {addr}\r\n".encode())
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


def numeric(addr):
    # Refuse names: a name here would mean a resolver lookup.
    return str(ipaddress.ip_address(addr))


def serve_http(addr, port, root, tls=None):
    def handler(*args, **kwargs):
        return Handler(*args, directory=root, **kwargs)

    server = NumericHTTPServer
    if ":" in addr:
        server = type("NumericHTTPServer6", (NumericHTTPServer,), {"address_family": socket.AF_INET6})
    with server((addr, port), handler) as srv:
        srv.tls = tls
        srv.serve_forever()


def main(argv):
    if len(argv) == 5 and argv[1] == "http":
        serve_http(numeric(argv[2]), int(argv[3]), argv[4])
    elif len(argv) == 7 and argv[1] == "https":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(argv[5], argv[6])
        tls.set_alpn_protocols(["http/1.1"])
        serve_http(numeric(argv[2]), int(argv[3]), argv[4], tls)
    elif len(argv) == 4 and argv[1] == "banner":
        addr, port = numeric(argv[2]), int(argv[3])
        with BannerServer((addr, port), BannerHandler) as srv:
            srv.serve_forever()
    else:
        sys.stderr.write(
            "usage: testnet_servers.py http ADDR PORT DIR | https ADDR PORT DIR CERT KEY | banner ADDR PORT\n"
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
