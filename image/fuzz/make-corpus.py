#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the seed corpora of image/fuzz: small layers (plain, gzip; whiteouts, opaque directories, links,
# devices, refused paths) and image configs and references. The same bytes on every run.
# usage: make-corpus.py CORPUS-DIR
import gzip
import io
import os
import sys
import tarfile


def tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.mode = 0o755 if kind == "dir" else 0o644
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            if kind == "file":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    return buf.getvalue()


def main():
    out = sys.argv[1]
    layers = {
        "basic": tar([("./", "dir", None), ("etc", "dir", None), ("etc/a", "file", b"a\n"),
                      ("etc/l", "sym", "a"), ("etc/h", "hard", "etc/a"), ("dev/null", "chr", None),
                      ("p", "fifo", None)]),
        "whiteouts": tar([("d", "dir", None), ("d/.wh..wh..opq", "file", b""), ("d/x", "file", b"x"),
                          ("e/.wh.gone", "file", b""), ("e/.wh.x", "file", b""), ("e/x", "file", b"")]),
        "replace": tar([("a", "file", b"1"), ("a", "dir", None), ("a/b", "file", b"2"), ("a", "file", b"3")]),
        "escape": tar([("../x", "file", b"x")]),
        "through-link": tar([("l", "sym", "/etc"), ("l/passwd", "file", b"x")]),
        "absolute": tar([("/etc/passwd", "file", b"x")]),
    }
    os.makedirs(os.path.join(out, "layer"), exist_ok=True)
    for name, data in layers.items():
        with open(os.path.join(out, "layer", name + ".tar"), "wb") as f:
            f.write(data)
        with open(os.path.join(out, "layer", name + ".tar.gz"), "wb") as f:
            f.write(gzip.compress(data, mtime=0))
    configs = {
        "typical": b'\x03{"os":"linux","architecture":"amd64","config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],'
                   b'"Env":["PATH=/bin"],"WorkingDir":"/","User":"1000"},"rootfs":{"diff_ids":["sha256:x"]}}',
        "null-config": b'\x01{"config":null}',
        "bad-env": b'\x01{"config":{"Env":["X"]}}',
        "ref-digest": b"\x00oci.test/crgw/hello@sha256:" + b"0" * 64,
        "ref-tag": b"\x00oci.test:5000/a/b:1.0",
        "ref-nohost": b"\x00library/busybox:1",
    }
    os.makedirs(os.path.join(out, "config"), exist_ok=True)
    for name, data in configs.items():
        with open(os.path.join(out, "config", name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
