#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# A registry on 127.0.0.1 that stalls one blob, for ctl/tests/cli.sh: crgw-ctl image pull --registry-mirror
# http://127.0.0.1:PORT/mirror must hold no lock of the image store while it waits on the network.
# Serves one image, localhost:5000/crgw/slow, in the mirror's direct form (/mirror/HOST/v2/NAME/...): a config
# and two layers, FIRST_LAYER's bytes as they are and a small tar made here, which stalls after its headers
# until DIR/release exists. Writes DIR/port, DIR/ref (the pinned reference), DIR/stalled when the stall
# begins, and one line per request to DIR/log. Listens on loopback only and exits after 120 s whatever happens.
# usage: slow_registry.py DIR FIRST_LAYER
import hashlib
import http.server
import io
import json
import os
import sys
import tarfile
import threading
import time

state, first = sys.argv[1], sys.argv[2]
os.makedirs(state, exist_ok=True)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def small_tar():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = b"from the slow registry\n"
        info = tarfile.TarInfo("slow.txt")
        info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


with open(first, "rb") as f:
    layer1 = f.read()
layer2 = small_tar()
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [sha(layer1), sha(layer2)]}}).encode()
LAYER = "application/vnd.oci.image.layer.v1.tar"
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
    "layers": [{"mediaType": LAYER, "digest": sha(layer1), "size": len(layer1)},
               {"mediaType": LAYER, "digest": sha(layer2), "size": len(layer2)}],
}).encode()
blobs = {sha(b): b for b in (config, layer1, layer2)}
stall = sha(layer2)
prefix = "/mirror/localhost:5000/v2/crgw/slow/"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(os.path.join(state, "log"), "a") as log:
            log.write(self.path + "\n")
        what = self.path[len(prefix):] if self.path.startswith(prefix) else ""
        if what == "manifests/" + sha(manifest):
            body, ctype = manifest, "application/vnd.oci.image.manifest.v1+json"
        elif what.startswith("blobs/") and what[6:] in blobs:
            body, ctype = blobs[what[6:]], "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if what == "blobs/" + stall:
            self.wfile.flush()
            open(os.path.join(state, "stalled"), "w").close()
            while not os.path.exists(os.path.join(state, "release")):
                time.sleep(0.05)
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
threading.Timer(120, lambda: os._exit(0)).start()
with open(os.path.join(state, "ref.tmp"), "w") as f:
    f.write("localhost:5000/crgw/slow@%s\n" % sha(manifest))
os.rename(os.path.join(state, "ref.tmp"), os.path.join(state, "ref"))
with open(os.path.join(state, "port.tmp"), "w") as f:
    f.write("%d\n" % server.server_address[1])
os.rename(os.path.join(state, "port.tmp"), os.path.join(state, "port"))
server.serve_forever()
