#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Small upstream servers for the test network (testnet.sh): static HTTP and HTTPS with an echo endpoint,
# a TCP banner/echo service, a token-checking JSON API and a reverse proxy that resets connections.
#
#   testnet_servers.py http   ADDR PORT DIR            serve DIR over HTTP/1.1 on ADDR:PORT
#   testnet_servers.py https  ADDR PORT DIR CERT KEY   the same over TLS (CERT: PEM chain, KEY: its key)
#   testnet_servers.py banner ADDR PORT                send "SSH-2.0-crgw-testnet ADDR\r\n", then echo
#                                                      what arrives
#   testnet_servers.py api    ADDR PORT CERT KEY TOKEN_FILE
#                                                      the JSON API of api.test over TLS (below)
#   testnet_servers.py reset-proxy ADDR PORT CERT KEY UPSTREAM_ADDR UPSTREAM_NAME CA
#                                                      a TLS reverse proxy to https://UPSTREAM_NAME at
#                                                      UPSTREAM_ADDR:443 (verified with CA) that resets
#                                                      the client's connection mid-answer (below)
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
# The API (api.test, and badcert.test with a certificate no test CA issued) speaks HTTP/1.1 with keep-alive;
# every answer carries Content-Length. TOKEN_FILE holds the bearer token (read once, at start). Any method:
#   /whoami           200 {"token_ok": Authorization == "Bearer " + token, "authorization": the field or null}
#   /echo             200 {"method", "path" (the target as received, query included), "headers" ([name, value]
#                     in arrival order, names as sent), "body" (the body as text, undecodable bytes replaced)}
#   /slow?seconds=N   the status line and headers at once, then N seconds (0 to 120, fractions allowed) of
#                     nothing, then the body {"slept": N}
#   /reset            no answer: the connection is reset (RST, SO_LINGER 0)
#   /redirect?to=URL  302 with Location: URL
#   /badfields        200 with malformed field lines: a bare CR before "Set-Cookie: smuggled=1", a folded
#                     line (obs-fold) " Set-Cookie: folded=1", a name with a space; then X-Crgw-Good: 1
#   /reflect          200 with the request's body as the answer's body (same Content-Type)
#   /oci/token?service=S&scope=repository:NAME:ACTIONS
#                     the token endpoint of oci-auth.test (docker-registry with `auth: token`), made of files
#                     beside TOKEN_FILE that testnet_registries_up writes (503 until it has): it wants
#                     HTTP Basic as "crgw-oci" with the password in oci-token.password (401 otherwise), and
#                     answers {"token", "access_token", "expires_in": 300} with a JWT (RS256, signed with
#                     oci-token.key, kid as docker-registry names the key of oci-token.crt) granting at most
#                     "pull" on NAME. Each answer is appended to oci-token.log as one JSON line: service,
#                     scope as asked, the actions granted, the token (for tests that look for it), and
#                     whether it went without the credential ("anonymous"). While a file
#                     oci-token.anonymous lists NAME (one repository a line), a request without
#                     Authorization gets a pull token for it too, as public images get one.
#   /@hostile/...     a hostile npm registry (below)
#   anything else     404 {"error": "not found", "path": ...}
# Request bodies (Content-Length or chunked) are read whole, up to 64 MiB; beyond that 413 and the
# connection closes.
#
# The hostile npm registry of api.test: packages of the scope @hostile whose packuments and tarballs
# misbehave by name, for the registry mediation's tests. Every answer needs the bearer token (401 without,
# so a test sees that the gateway presented it); only GET and HEAD. The packument of @hostile/NAME is at
# /@hostile%2fNAME (npm's form) and /@hostile/NAME, its tarball of version V at
# /@hostile/NAME/-/NAME-V.tgz, with dist.integrity (sha512) and dist.shasum of the bytes a well-behaved
# registry would serve. Every byte is the same on every run: tarballs are built with fixed times, owners and
# modes, gzip without a timestamp, and each package's tarball is unique (its package.json names it), so no
# two share a digest. NAME (all at version 1.0.0 unless said):
#   plain           well behaved
#   big             a packument of 256 KiB (Content-Length), more than a gateway allows with a 64 KiB bound
#   big-chunked     the same, chunked (no Content-Length)
#   gzip            a packument sent with Content-Encoding: gzip, never asked for: 32 MiB of JSON
#                   (mostly spaces) in 32 KiB
#   imposter        the packument is @hostile/plain's
#   redirect-doc    the packument is a 302 to https://web1.test/...
#   stall-doc       the packument's head, then nothing for STALL seconds, then its body
#   offsite         1.0.0's dist.tarball is on web1.test (that tarball is 404 here); 1.1.0 is well behaved
#   noint           a packument without dist.integrity or dist.shasum; the tarball is well behaved
#   reset           the tarball (512 KiB and more) resets the connection (RST) after half its bytes
#   stall           the tarball sends half its bytes, then nothing for STALL seconds, then closes
#   short           the tarball announces 4096 bytes more than it sends (every real byte), then closes
#   tampered        the tarball's bytes differ from the packument's integrity in one byte; it pauses
#                   TAMPERED_PAUSE seconds halfway
#   gzbomb          the tarball is 64 MiB of zeros in 64 KiB of gzip, served as it is
#   traversal       the tarball holds a tar whose members climb out: package/../../../tmp/crgw-escaped,
#                   /tmp/crgw-absolute, and a symlink to /etc; served as it is
#   redirect-same   the tarball is a 302 to /@hostile/-/genuine/redirect-same-1.0.0.tgz (its own bytes)
#   redirect-npm    a 302 to https://npm.test/crgw-dep-39/-/crgw-dep-39-1.0.0.tgz (the packument gives no
#                   integrity: a lockfile names crgw-dep-39's)
#   redirect-out    a 302 to https://web1.test/... (a host a gateway's policy does not allow)
#   redirect-http   a 302 to http://api.test/... (not https)
#   redirect-loop   a 302 to itself, forever
# /@hostile/-/genuine/NAME-V.tgz serves the well-behaved bytes of any of these tarballs, whatever its own
# path does, so a test can compute the integrity a lockfile would have recorded.
#
# The reset proxy (reset.git.test) reads each request, forwards it with its headers (Authorization
# included; hop-by-hop fields dropped, Host set to UPSTREAM_NAME) over a fresh TLS connection whose
# certificate must verify against CA for UPSTREAM_NAME, and relays the answer: status, headers, and the
# body with the upstream's Content-Length or else re-chunked. After 1 MiB of body it stops and resets
# the client's connection (RST, SO_LINGER 0); an answer of at most 1 MiB passes whole. A target that
# starts with /reset-after/N/ is forwarded without that prefix and cut after N bytes instead. An upstream
# that cannot be reached or verified gets a 502.
#
# Why not `python3 -m http.server`: its HTTPServer.server_bind() calls socket.getfqdn() on the bind address,
# a reverse lookup through the machine's resolver. The test network must never use that resolver, so this
# server keeps the numeric address as its name. Nothing here resolves a name: addresses must be numeric.
# All servers run until SIGTERM (the default action is fine: they hold no state worth flushing).

import base64
import fcntl
import gzip
import hashlib
import http.client
import http.server
import io
import ipaddress
import json
import os
import re
import socket
import socketserver
import ssl
import struct
import sys
import tarfile
import termios
import threading
import time
import urllib.parse

# A client that connects to the TLS port and never finishes its handshake is given up on after this.
HANDSHAKE_TIMEOUT = 10
# Bytes per read or write when copying a body or a file over TLS.
COPY_CHUNK = 256 << 10
# Longest chunk-size or trailer line accepted in a chunked body.
MAX_LINE = 8192
# Largest request body the API and the reset proxy hold in memory.
MAX_BODY = 64 << 20
# The reset proxy cuts an answer after this many bytes of body, unless the target says otherwise.
RESET_AFTER = 1 << 20
# The longest a reset waits for the peer to acknowledge what was sent before it.
DRAIN_TIMEOUT = 5
# The longest /slow may stall.
MAX_SLOW = 120
# Upstream connections of the reset proxy give up after this long without progress.
UPSTREAM_TIMEOUT = 60
# Fields that describe one hop of a connection, not the message: never forwarded by the reset proxy.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "expect", "host", "content-length",
}
# The hostile registry (api.test): its scope, how long a stalling tarball stalls, the packuments' timestamp.
HOSTILE_SCOPE = "@hostile"
STALL = 20
# The tampered tarball pauses this long halfway (less than any idle timeout), so that concurrent clients overlap.
TAMPERED_PAUSE = 1
HOSTILE_TIME = "2020-01-01T00:00:00.000Z"
HOSTILE_NAMES = (
    "plain", "big", "big-chunked", "gzip", "offsite", "noint", "reset", "stall", "short", "tampered", "gzbomb",
    "traversal", "redirect-same", "redirect-npm", "redirect-out", "redirect-http", "redirect-loop",
    "imposter", "redirect-doc", "stall-doc",
)
# Tarballs that carry a large incompressible file, so that a cut comes mid-stream and not before the first byte.
HOSTILE_LARGE = {"reset", "stall", "short", "tampered"}
HOSTILE_TARBALL = re.compile(r"/@hostile/([a-z-]{1,40})/-/([a-z-]{1,40})-([0-9.]{1,20})\.tgz")
HOSTILE_GENUINE = re.compile(r"/@hostile/-/genuine/([a-z-]{1,40})-([0-9.]{1,20})\.tgz")
HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
RESET_PREFIX = re.compile(r"/reset-after/([0-9]{1,12})(/.*)")
DIGITS = re.compile(r"[0-9]{1,19}")


class BodyError(Exception):
    pass


# A body sink that keeps the bytes, up to MAX_BODY (BodyError beyond).
class Collect:
    def __init__(self):
        self.data = bytearray()

    def update(self, b):
        if len(self.data) + len(b) > MAX_BODY:
            raise BodyError(f"body larger than {MAX_BODY} bytes")
        self.data += b


# Resets the TCP connection under SOCK when it is closed: SO_LINGER with a zero timeout makes close(2)
# send RST instead of FIN, and TLS sends no close_notify on a plain close(). An RST also discards whatever
# the kernel still holds to send, so first wait (up to DRAIN_TIMEOUT) until the peer has acknowledged
# every byte written: what was relayed before the cut does arrive.
def arm_reset(sock):
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        if queued == 0:
            break
        time.sleep(0.01)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


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


# Reads a request body by its framing into a sink (anything with update(bytes)); shared by the handlers.
class BodyReader:
    # Returns (length, trailers) of the request body, read by its framing into SINK; BodyError if the
    # framing is invalid or the body ends early.
    def read_body(self, sink):
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
                length += self.copy_body(size, sink)
                if self.read_line() not in (b"\r\n", b"\n"):
                    raise BodyError("chunk data not followed by CRLF")
            while True:
                line = self.read_line()
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                trailers.append([name, value.strip()])
            return length, trailers
        if not cl:
            return 0, trailers
        if len(cl) != 1 or not DIGITS.fullmatch(next(iter(cl))):
            raise BodyError(f"bad Content-Length {sorted(cl)!r}")
        return self.copy_body(int(next(iter(cl))), sink), trailers

    def read_line(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise BodyError("chunked body: line too long or connection closed")
        return line

    # Reads exactly n body bytes into the sink; returns n.
    def copy_body(self, n, sink):
        buf = memoryview(bytearray(min(n, COPY_CHUNK)))
        left = n
        while left:
            got = self.rfile.readinto(buf[: min(left, len(buf))])
            if not got:
                raise BodyError(f"body ended {left} bytes early")
            sink.update(buf[:got])
            left -= got
        return n


class Handler(BodyReader, http.server.SimpleHTTPRequestHandler):
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
            h = hashlib.sha256()
            length, trailers = self.read_body(h)
            digest = h.hexdigest()
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


# The base of the API and the reset proxy: every method goes to do_ANY (self.method keeps it), every
# answer states its length or is chunked, and reset() ends the connection with RST once the handler is
# done with it.
class AnyMethodHandler(BodyReader, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.resetting = False
        self.method = None
        # Every write leaves at once: Nagle's algorithm would hold a small write back, and a reset would
        # then discard it.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def address_string(self):
        return self.client_address[0]

    def parse_request(self):
        self.method = None  # until the request line has been read (a 100 Continue goes out before)
        if not super().parse_request():
            return False
        words = self.requestline.split()
        self.target = words[1] if len(words) > 1 else ""
        self.method, self.command = self.command, "ANY"
        return True

    # send_error and the log must see the real method (a HEAD answer has no body).
    def send_response(self, code, message=None):
        if self.method:
            self.command = self.method
        super().send_response(code, message)

    def send_response_only(self, code, message=None):
        if self.method:
            self.command = self.method
        super().send_response_only(code, message)

    def send_body(self, code, body, content_type="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.method != "HEAD":
            self.wfile.write(body)

    def send_json(self, code, obj, extra=()):
        self.send_body(code, (json.dumps(obj) + "\n").encode(), extra=extra)

    # The whole request body, or None after answering 400/413 (which closes the connection).
    def read_whole_body(self):
        sink = Collect()
        try:
            self.read_body(sink)
        except BodyError as e:
            self.send_error(413 if "larger than" in str(e) else 400, str(e))
            return None
        return bytes(sink.data)

    def reset(self):
        self.close_connection = True
        self.resetting = True

    def finish(self):
        super().finish()  # flushes and closes rfile and wfile, the socket's last other references
        if self.resetting:
            try:
                arm_reset(self.connection)
            except OSError:
                pass
            self.connection.close()  # RST; the server's own shutdown and close then do nothing


# ---- the hostile npm registry (see the header) ----------------------------------------------------------

# Deterministic, incompressible bytes: sha256 in counter mode over SEED.
def noise(seed, size):
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(b"%s:%d" % (seed.encode(), n)).digest()
        n += 1
    return bytes(out[:size])


def tar_member(tar, name, data=b"", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = 499162500  # npm's own fixed time, 1985-10-26
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


_hostile_cache = {}
_hostile_lock = threading.RLock()  # a packument is made from its tarballs


def hostile_cached(key, make):
    with _hostile_lock:
        if key not in _hostile_cache:
            _hostile_cache[key] = make()
        return _hostile_cache[key]


# The well-behaved tarball of @hostile/NAME at VERSION: the same bytes on every run.
def hostile_tarball(name, version):
    def make():
        if name == "gzbomb":
            return gzip.compress(bytes(64 << 20), compresslevel=9, mtime=0)
        buf = io.BytesIO(b"")
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            pkg = {"name": f"{HOSTILE_SCOPE}/{name}", "version": version, "main": "index.js"}
            tar_member(tar, "package/package.json", (json.dumps(pkg, indent=2) + "\n").encode())
            tar_member(tar, "package/index.js", f"module.exports = {json.dumps(name)};\n".encode())
            if name in HOSTILE_LARGE:
                tar_member(tar, "package/noise.bin", noise(f"{name}@{version}", 512 << 10))
            if name == "traversal":
                tar_member(tar, "package/../../../tmp/crgw-escaped", b"escaped\n")
                tar_member(tar, "/tmp/crgw-absolute", b"absolute\n")
                tar_member(tar, "package/etc", kind=tarfile.SYMTYPE, linkname="/etc")
                tar_member(tar, "package/etc/crgw-through-link", b"through a link\n")
        return gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)

    return hostile_cached(("tgz", name, version), make)


def hostile_versions(name):
    return ["1.0.0", "1.1.0"] if name == "offsite" else ["1.0.0"]


# The packument of @hostile/NAME, as bytes.
def hostile_packument(name):
    def make():
        full = f"{HOSTILE_SCOPE}/{name}"
        versions = {}
        for v in hostile_versions(name):
            data = hostile_tarball(name, v)
            host = "web1.test" if name == "offsite" and v == "1.0.0" else "api.test"
            dist = {"tarball": f"https://{host}/{full}/-/{name}-{v}.tgz"}
            if name not in ("noint", "redirect-npm"):
                dist["integrity"] = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
                dist["shasum"] = hashlib.sha1(data).hexdigest()
            versions[v] = {"name": full, "version": v, "dist": dist}
        latest = hostile_versions(name)[-1]
        doc = {
            "name": full,
            "dist-tags": {"latest": latest},
            "versions": versions,
            "time": dict({"created": HOSTILE_TIME, "modified": HOSTILE_TIME},
                         **{v: HOSTILE_TIME for v in versions}),
        }
        if name in ("big", "big-chunked"):
            doc["readme"] = noise(name, 192 << 10).hex()[: 256 << 10]
        body = json.dumps(doc).encode()
        if name == "gzip":
            body = gzip.compress(body + b" " * (32 << 20), compresslevel=9, mtime=0)
        return body

    return hostile_cached(("doc", name), make)


class ApiHandler(AnyMethodHandler):
    # Set on the subclass main() makes: the bearer token the API accepts.
    token = None
    token_file = None

    def do_ANY(self):
        url = urllib.parse.urlsplit(self.target)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        if path == "/reset":
            self.reset()
            return
        if path.startswith("/" + HOSTILE_SCOPE):
            self.hostile(path)
            return
        body = self.read_whole_body()
        if body is None:
            return
        if path == "/whoami":
            auth = self.headers.get("Authorization")
            self.send_json(200, {"token_ok": auth == "Bearer " + self.token, "authorization": auth})
        elif path == "/echo":
            self.send_json(200, {
                "method": self.method,
                "path": self.target,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
            })
        elif path == "/slow":
            try:
                seconds = float(query.get("seconds", ["1"])[0])
            except ValueError:
                seconds = -1
            if not 0 <= seconds <= MAX_SLOW:
                self.send_json(400, {"error": f"seconds must be 0 to {MAX_SLOW}"})
                return
            out = (json.dumps({"slept": seconds}) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()  # unbuffered: the headers leave now
            time.sleep(seconds)
            if self.method != "HEAD":
                self.wfile.write(out)
        elif path == "/redirect":
            to = query.get("to", [""])[0]
            if not to or any(c in to for c in "\r\n"):
                self.send_json(400, {"error": "redirect needs ?to=URL"})
                return
            self.send_json(302, {"location": to}, extra=[("Location", to)])
        elif path == "/badfields":
            self.send_json(200, {"fields": "bad"},
                           extra=[("X-Crgw-Cr", "a\rSet-Cookie: smuggled=1"),
                                  ("X-Crgw-Fold", "a\r\n Set-Cookie: folded=1"), ("Bad Name", "x"),
                                  ("X-Crgw-Good", "1")])
        elif path == "/session":
            # A session cookie in answer to the right token, as many APIs and git servers set one.
            auth = self.headers.get("Authorization")
            if auth != "Bearer " + self.token:
                self.send_json(401, {"error": "wants the token"})
                return
            session = hashlib.sha256(("session:" + self.token).encode()).hexdigest()
            self.send_json(200, {"session": "set"},
                           extra=[("Set-Cookie", f"session={session}; Path=/; HttpOnly"),
                                  ("Set-Cookie2", f"session={session}")])
        elif path == "/reflect":
            self.send_body(200, body, self.headers.get("Content-Type", "application/octet-stream"))
        elif path == "/oci/token":
            self.oci_token(query)
        else:
            self.send_json(404, {"error": "not found", "path": path})


    def oci_token(self, query):
        base = os.path.dirname(os.path.abspath(self.token_file))
        try:
            with open(os.path.join(base, "oci-token.password"), encoding="utf-8") as f:
                password = f.read()
            with open(os.path.join(base, "oci-token.key"), "rb") as f:
                key_pem = f.read()
        except OSError:
            self.send_json(503, {"error": "the OCI token endpoint is not set up (testnet_registries_up)"})
            return
        want = "Basic " + base64.b64encode(("crgw-oci:" + password).encode()).decode()
        service = query.get("service", [""])[0]
        scope = query.get("scope", [""])[0]
        parts = scope.split(":")
        try:
            with open(os.path.join(base, "oci-token.anonymous"), encoding="utf-8") as f:
                public = f.read().split()
        except OSError:
            public = []
        anonymous = "Authorization" not in self.headers and len(parts) == 3 and parts[1] in public
        if self.headers.get("Authorization") != want and not anonymous:
            self.send_json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "wrong or no credential"}]},
                           extra=[("WWW-Authenticate", 'Basic realm="crgw-oci"')])
            return
        access = []
        if len(parts) == 3 and parts[0] == "repository" and parts[1]:
            actions = [a for a in parts[2].split(",") if a == "pull"]
            access.append({"type": "repository", "name": parts[1], "actions": actions})
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
        key = serialization.load_pem_private_key(key_pem, password=None)
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        kid = ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))
        now = int(time.time())

        def b64url(b):
            return base64.urlsafe_b64encode(b).decode().rstrip("=")

        head = b64url(json.dumps({"typ": "JWT", "alg": "RS256", "kid": kid}).encode())
        claims = b64url(json.dumps({
            "iss": "crgw-testnet-token", "sub": "" if anonymous else "crgw-oci", "aud": service, "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": os.urandom(12).hex(), "access": access}).encode())
        signed = (head + "." + claims).encode()
        token = head + "." + claims + "." + b64url(key.sign(signed, padding.PKCS1v15(), hashes.SHA256()))
        with open(os.path.join(base, "oci-token.log"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"service": service, "scope": scope, "access": access, "token": token,
                                "anonymous": anonymous}) + "\n")
        self.send_json(200, {"token": token, "access_token": token, "expires_in": 300})

    # The hostile registry: one answer per request, misbehaving by the package's name.
    def hostile(self, path):
        if self.read_whole_body() is None:
            return
        if self.headers.get("Authorization") != "Bearer " + self.token:
            self.send_json(401, {"error": "a bearer token is needed"})
            return
        if self.method not in ("GET", "HEAD"):
            self.send_json(405, {"error": "read only"})
            return
        path = urllib.parse.unquote(path)
        m = HOSTILE_GENUINE.fullmatch(path)
        if m and m.group(1) in HOSTILE_NAMES and m.group(2) in hostile_versions(m.group(1)):
            self.send_body(200, hostile_tarball(m.group(1), m.group(2)), "application/octet-stream")
            return
        m = HOSTILE_TARBALL.fullmatch(path)
        if m:
            name, base, version = m.groups()
            if name not in HOSTILE_NAMES or base != name or version not in hostile_versions(name) or \
                    (name == "offsite" and version == "1.0.0"):
                self.send_json(404, {"error": "not found", "path": path})
                return
            self.hostile_tarball(name, version)
            return
        name = path[len(HOSTILE_SCOPE) + 2:] if path.startswith("/" + HOSTILE_SCOPE + "/") else None
        if name not in HOSTILE_NAMES:
            self.send_json(404, {"error": "not found", "path": path})
            return
        if name == "redirect-doc":
            to = f"https://web1.test/{HOSTILE_SCOPE}/{name}"
            self.send_json(302, {"location": to}, extra=[("Location", to)])
            return
        doc = hostile_packument("plain" if name == "imposter" else name)
        if name == "stall-doc":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(doc)))
            self.end_headers()
            time.sleep(STALL)
            if self.method != "HEAD":
                self.wfile.write(doc)
            return
        if name == "big-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.method != "HEAD":
                for at in range(0, len(doc), 16 << 10):
                    part = doc[at:at + (16 << 10)]
                    self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            return
        extra = [("Content-Encoding", "gzip")] if name == "gzip" else []
        self.send_body(200, doc, "application/json", extra)

    def hostile_tarball(self, name, version):
        data = hostile_tarball(name, version)
        ours = f"https://api.test/{HOSTILE_SCOPE}/{name}/-/{name}-{version}.tgz"
        redirects = {
            "redirect-same": f"https://api.test/{HOSTILE_SCOPE}/-/genuine/{name}-{version}.tgz",
            "redirect-npm": "https://npm.test/crgw-dep-39/-/crgw-dep-39-1.0.0.tgz",
            "redirect-out": f"https://web1.test/{HOSTILE_SCOPE}/{name}/-/{name}-{version}.tgz",
            "redirect-http": f"http://api.test/{HOSTILE_SCOPE}/-/genuine/{name}-{version}.tgz",
            "redirect-loop": ours,
        }
        if name in redirects:
            self.send_json(302, {"location": redirects[name]}, extra=[("Location", redirects[name])])
            return
        if name == "tampered":
            data = bytearray(data)
            data[len(data) // 2] ^= 0x01
            data = bytes(data)
        if name not in ("reset", "stall", "short", "tampered"):
            self.send_body(200, data, "application/octet-stream")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) + (4096 if name == "short" else 0)))
        self.end_headers()
        if self.method == "HEAD":
            return
        if name == "short":
            self.wfile.write(data)
            self.close_connection = True  # 4096 bytes short of what it announced
            return
        self.wfile.write(data[: len(data) // 2])
        if name == "tampered":
            time.sleep(TAMPERED_PAUSE)
            self.wfile.write(data[len(data) // 2:])
            return
        if name == "stall":
            time.sleep(STALL)
            self.close_connection = True
            return
        self.reset()


class ResetProxyHandler(AnyMethodHandler):
    # Set on the subclass main() makes: (address, port), the name to verify, the client TLS context.
    upstream = None
    upstream_name = None
    upstream_tls = None

    def do_ANY(self):
        target, limit = self.target, RESET_AFTER
        m = RESET_PREFIX.fullmatch(target)
        if m:
            limit, target = int(m.group(1)), m.group(2)
        body = self.read_whole_body()
        if body is None:
            return
        try:
            conn, resp = self.forward(target, body)
        except (OSError, http.client.HTTPException) as e:  # ssl.SSLError included
            sys.stderr.write(f"{self.client_address[0]}: upstream: {e}\n")
            self.send_json(502, {"error": f"upstream: {e}"})
            return
        try:
            self.relay(resp, limit)
        except (OSError, http.client.HTTPException) as e:
            # The answer was under way: nothing sensible can follow it on this connection.
            sys.stderr.write(f"{self.client_address[0]}: relaying: {e}\n")
            self.reset()
        finally:
            conn.close()

    # Sends the request upstream over a new verified TLS connection; returns (connection, response).
    def forward(self, target, body):
        raw = socket.create_connection(self.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            tls = self.upstream_tls.wrap_socket(raw, server_hostname=self.upstream_name)
        except BaseException:
            raw.close()
            raise
        conn = http.client.HTTPConnection(self.upstream_name, self.upstream[1], timeout=UPSTREAM_TIMEOUT)
        conn.sock = tls
        try:
            conn.putrequest(self.method, target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.upstream_name)
            for k, v in self.headers.items():
                if k.lower() not in HOP_BY_HOP:
                    conn.putheader(k, v)
            if body or self.method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    # Relays the answer; after LIMIT bytes of body, stops and resets the connection.
    def relay(self, resp, limit):
        self.log_request(resp.status)
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        no_body = self.method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        chunked = not no_body and resp.length is None
        if not no_body and not chunked:
            self.send_header("Content-Length", str(resp.length))
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        sent = 0
        while True:
            data = resp.read1(COPY_CHUNK)
            if not data:
                break
            cut = sent + len(data) > limit
            if cut:
                data = data[: limit - sent]
            if data:
                self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n" if chunked else data)
            sent += len(data)
            if cut:
                sys.stderr.write(f"{self.client_address[0]}: reset after {sent} bytes of body\n")
                self.reset()
                return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


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

    serve(addr, port, handler, tls)


def serve(addr, port, handler, tls=None):
    server = NumericHTTPServer
    if ":" in addr:
        server = type("NumericHTTPServer6", (NumericHTTPServer,), {"address_family": socket.AF_INET6})
    with server((addr, port), handler) as srv:
        srv.tls = tls
        srv.serve_forever()


def server_tls(cert, key):
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    tls.set_alpn_protocols(["http/1.1"])
    return tls


def main(argv):
    if len(argv) == 5 and argv[1] == "http":
        serve_http(numeric(argv[2]), int(argv[3]), argv[4])
    elif len(argv) == 7 and argv[1] == "https":
        serve_http(numeric(argv[2]), int(argv[3]), argv[4], server_tls(argv[5], argv[6]))
    elif len(argv) == 7 and argv[1] == "api":
        with open(argv[6], encoding="utf-8") as f:
            token = f.read()
        handler = type("TokenApiHandler", (ApiHandler,), {"token": token, "token_file": argv[6]})
        serve(numeric(argv[2]), int(argv[3]), handler, server_tls(argv[4], argv[5]))
    elif len(argv) == 9 and argv[1] == "reset-proxy":
        client = ssl.create_default_context(cafile=argv[8])  # verifies the name, and only against CA
        client.set_alpn_protocols(["http/1.1"])
        handler = type("UpstreamResetProxyHandler", (ResetProxyHandler,), {
            "upstream": (numeric(argv[6]), 443),
            "upstream_name": argv[7],
            "upstream_tls": client,
        })
        serve(numeric(argv[2]), int(argv[3]), handler, server_tls(argv[4], argv[5]))
    elif len(argv) == 4 and argv[1] == "banner":
        addr, port = numeric(argv[2]), int(argv[3])
        with BannerServer((addr, port), BannerHandler) as srv:
            srv.serve_forever()
    else:
        sys.stderr.write(
            "usage: testnet_servers.py http ADDR PORT DIR | https ADDR PORT DIR CERT KEY | banner ADDR PORT\n"
            "       | api ADDR PORT CERT KEY TOKEN_FILE\n"
            "       | reset-proxy ADDR PORT CERT KEY UPSTREAM_ADDR UPSTREAM_NAME CA\n"
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
