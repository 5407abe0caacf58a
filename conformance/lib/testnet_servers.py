#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Small upstream servers for the test network (testnet.sh): static HTTP and a TCP banner/echo service.
#
#   testnet_servers.py http   ADDR PORT DIR   serve DIR over HTTP/1.0 on ADDR:PORT
#   testnet_servers.py banner ADDR PORT       send "SSH-2.0-crgw-testnet ADDR\r\n", then echo what arrives
#
# Why not `python3 -m http.server`: its HTTPServer.server_bind() calls socket.getfqdn() on the bind address,
# a reverse lookup through the machine's resolver. The test network must never use that resolver, so this
# server keeps the numeric address as its name. Nothing here resolves a name: addresses must be numeric.
# Both servers run until SIGTERM (the default action is fine: they hold no state worth flushing).

import http.server
import ipaddress
import socketserver
import sys


class NumericHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    # One line per request on stderr (the caller sends it to a log file); no reverse lookups.
    def address_string(self):
        return self.client_address[0]


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


def main(argv):
    if len(argv) == 5 and argv[1] == "http":
        addr, port, root = numeric(argv[2]), int(argv[3]), argv[4]

        def handler(*args, **kwargs):
            return QuietHandler(*args, directory=root, **kwargs)

        with NumericHTTPServer((addr, port), handler) as srv:
            srv.serve_forever()
    elif len(argv) == 4 and argv[1] == "banner":
        addr, port = numeric(argv[2]), int(argv[3])
        with BannerServer((addr, port), BannerHandler) as srv:
            srv.serve_forever()
    else:
        sys.stderr.write("usage: testnet_servers.py http ADDR PORT DIR | banner ADDR PORT\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
