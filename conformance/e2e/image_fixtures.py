#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Builds the OCI images e2e/image.sh pushes to the test network's registry: a good image of two layers (gzip
# and plain tar, a whiteout in the second), an index with linux/arm64 and linux/amd64 entries, and bad ones
# (a truncated layer, a path that escapes the root, a gzip bomb). The same bytes on every run.
# usage: image_fixtures.py OUTDIR
# Writes OUTDIR/KIND/blobs/<hex> and OUTDIR/KIND/push: one line per upload, in order:
#   blob HEX | manifest TAG MEDIATYPE FILE
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def tar(entries):
    """entries: (name, kind, data-or-target, mode)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = mode
            ti.uid = ti.gid = 0
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


class Repo:
    def __init__(self, out, kind):
        self.dir = os.path.join(out, kind)
        os.makedirs(os.path.join(self.dir, "blobs"), exist_ok=True)
        self.lines = []

    def blob(self, data):
        h = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.dir, "blobs", h), "wb") as f:
            f.write(data)
        self.lines.append("blob " + h)
        return {"digest": "sha256:" + h, "size": len(data)}

    def manifest(self, tag, mt, doc):
        data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        name = "manifest-" + tag
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(data)
        self.lines.append("manifest %s %s %s" % (tag, mt, name))
        return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data), "mediaType": mt}

    def image(self, tag, layers, arch="amd64", env=("PATH=/bin", "GREETING=hi")):
        """layers: (uncompressed tar bytes, compressed bytes, media type)"""
        cfg = {
            "architecture": arch,
            "os": "linux",
            "config": {"Entrypoint": ["/bin/hello"], "Cmd": ["--greet"], "Env": list(env),
                       "WorkingDir": "/work"},
            "rootfs": {"type": "layers",
                       "diff_ids": ["sha256:" + hashlib.sha256(u).hexdigest() for u, _, _ in layers]},
        }
        c = self.blob(json.dumps(cfg, sort_keys=True).encode())
        descs = []
        for _, data, mt in layers:
            d = self.blob(data)
            d["mediaType"] = mt
            descs.append(d)
        c["mediaType"] = MT_CONFIG
        return self.manifest(tag, MT_MANIFEST, {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": c,
                                                "layers": descs})

    def done(self):
        with open(os.path.join(self.dir, "push"), "w") as f:
            f.write("\n".join(self.lines) + "\n")


def main():
    out = sys.argv[1]
    base = tar([("etc", "dir", None, 0o755), ("etc/os-release", "file", b"ID=crgw-test\n", 0o644),
                ("etc/removed", "file", b"lower\n", 0o644), ("bin", "dir", None, 0o755),
                ("bin/hello", "file", b"#!/bin/sh\necho hello\n", 0o755), ("bin/sh", "sym", "hello", 0o777),
                ("usr/bin/passwd", "file", b"suid\n", 0o4755)])
    top = tar([("etc/.wh.removed", "file", b"", 0o644), ("work", "dir", None, 0o755),
               ("work/readme", "file", b"upper layer\n", 0o644)])

    r = Repo(out, "good")
    r.image("1", [(base, gz(base), MT_TGZ), (top, top, MT_TAR)])
    r.done()

    r = Repo(out, "index")
    arm = tar([("arm", "file", b"not this one\n", 0o644)])
    m_arm = r.image("arm64", [(arm, gz(arm), MT_TGZ)], arch="arm64")
    m_amd = r.image("amd64", [(base, gz(base), MT_TGZ), (top, top, MT_TAR)], env=("PATH=/bin", "FROM=index"))
    m_arm["platform"] = {"os": "linux", "architecture": "arm64"}
    m_amd["platform"] = {"os": "linux", "architecture": "amd64"}
    r.manifest("multi", MT_INDEX, {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [m_arm, m_amd]})
    r.done()

    r = Repo(out, "truncated")
    big = tar([("data", "file", hashlib.sha256(b"x").digest() * 32768, 0o644)])
    z = gz(big)
    r.image("1", [(big, z[: len(z) // 2], MT_TGZ)])
    r.done()

    r = Repo(out, "escape")
    esc = tar([("etc", "dir", None, 0o755), ("../../../../tmp/crgw-escaped", "file", b"out\n", 0o644)])
    r.image("1", [(esc, gz(esc), MT_TGZ)])
    r.done()

    r = Repo(out, "bomb")
    bomb = tar([("zeros", "file", bytes(64 << 20), 0o644)])
    r.image("1", [(bomb, gz(bomb), MT_TGZ)])
    r.done()

    # Big enough that a pull can be killed in the middle: 96 MiB that no compression shrinks.
    r = Repo(out, "big")
    noise = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range((96 << 20) // 32))
    big = tar([("noise", "file", noise, 0o644)])
    r.image("1", [(big, big, MT_TAR)])
    r.done()

    r = Repo(out, "mismatch")
    odd = tar([("file", "file", b"the registry will serve other bytes\n", 0o644)])
    r.image("1", [(odd, gz(odd), MT_TGZ)])
    r.done()


if __name__ == "__main__":
    main()
