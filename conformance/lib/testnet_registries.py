# SPDX-License-Identifier: Apache-2.0
"""Builds the content of the test network's registries (conformance/lib/testnet.sh, testnet_registries_up).

Every artifact is made here from fixed inputs with fixed timestamps, so its bytes, digests and the
lockfiles that name them are the same on every run and every machine.

  npm-user   CA ADDR HOST NAME PASSWORD           create a verdaccio user, print its token
  npm-tree   CA ADDR HOST TOKEN_FILE PROJECT_DIR  publish the package tree, write PROJECT_DIR/package.json
  npm-publish CA ADDR HOST TOKEN_FILE NAME VERSION [DEP=RANGE...]
                                                  publish one generated package (tests that need a fresh one)
  pypi       OUT_DIR HOST                         wheels, the PEP 503 (HTML) and PEP 691 (JSON) index,
                                                  OUT_DIR/client/requirements.txt with --hash lines
  pypi-bulk  OUT_DIR COUNT                        COUNT more wheels (crgw-bulk-NN, a few megabytes-sized, as
                                                  a real project's dependencies are) added to the index of
                                                  `pypi OUT_DIR`, OUT_DIR/bulk/requirements.txt naming them
  goproxy    OUT_DIR HOST                         a GOPROXY tree under OUT_DIR/www and a main module that
                                                  depends on it under OUT_DIR/client (go.mod, go.sum, main.go)

Network use: npm-* talk HTTPS to ADDR (a numeric address of the test network) with HOST as the TLS
name, verified against CA; nothing is ever resolved by name.
"""

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import ssl
import sys
import tarfile
import zipfile

# npm packs every file with this date (1985-10-26); tar and zip both want a fixed one.
FIXED_TIME = 499162500
ZIP_TIME = (1985, 10, 26, 8, 15, 0)

# The npm package tree: unscoped crgw-dep-00..39 as a binary tree (dep-i needs dep-2i+1 and dep-2i+2),
# dep-j also needs @crgw/lib-j for j < 15, @crgw/lib-00 needs crgw-dup@^1 while the root project needs
# crgw-dup@^2 (npm nests the older one). 56 names, 57 versions, all reachable from the root.
NPM_UNSCOPED = 40
NPM_SCOPED = 15


def npm_tree():
    """Returns a list of (name, version, {dependency: range})."""
    pkgs = []
    for i in range(NPM_UNSCOPED):
        deps = {}
        for c in (2 * i + 1, 2 * i + 2):
            if c < NPM_UNSCOPED:
                deps["crgw-dep-%02d" % c] = "^1.0.0"
        if i < NPM_SCOPED:
            deps["@crgw/lib-%02d" % i] = "^1.0.0"
        pkgs.append(("crgw-dep-%02d" % i, "1.0.0", deps))
    for j in range(NPM_SCOPED):
        pkgs.append(("@crgw/lib-%02d" % j, "1.0.0", {"crgw-dup": "^1.0.0"} if j == 0 else {}))
    pkgs.append(("crgw-dup", "1.0.0", {}))
    pkgs.append(("crgw-dup", "2.0.0", {}))
    return pkgs


NPM_ROOT_DEPS = {"crgw-dep-00": "^1.0.0", "crgw-dup": "^2.0.0"}


class Conn(http.client.HTTPSConnection):
    """HTTPS to a fixed address with HOST as the TLS and HTTP name: no name lookup at all."""

    def __init__(self, host, addr, ctx):
        super().__init__(host, 443, context=ctx, timeout=20)
        self._addr = addr

    def connect(self):
        sock = socket.create_connection((self._addr, 443), timeout=self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def request(ca, addr, host, method, path, body=None, token=None):
    ctx = ssl.create_default_context(cafile=ca)
    conn = Conn(host, addr, ctx)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, out


def tgz(files):
    """A gzipped tar of {path: bytes} under package/, as npm pack makes it (fixed dates, sorted)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo("package/" + path)
            info.size = len(files[path])
            info.mtime = FIXED_TIME
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[path]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def npm_package(host, name, version, deps):
    """The publish document npm sends for one version (PUT /NAME), with its tarball attached."""
    manifest = {
        "name": name,
        "version": version,
        "description": "crgw test network package %s" % name,
        "main": "index.js",
        "license": "MIT",
        "dependencies": deps,
    }
    lines = ["module.exports = {", "  name: %s," % json.dumps(name), "  version: %s," % json.dumps(version)]
    lines.append("  deps: [%s]," % ", ".join("require(%s)" % json.dumps(d) for d in sorted(deps)))
    lines.append("};")
    files = {
        "package.json": (json.dumps(manifest, indent=2) + "\n").encode(),
        "index.js": ("\n".join(lines) + "\n").encode(),
    }
    data = tgz(files)
    base = name.rsplit("/", 1)[-1]
    tarball_name = "%s-%s.tgz" % (name, version)  # npm's attachment key, scope included
    version_doc = dict(manifest)
    version_doc.update(
        {
            "_id": "%s@%s" % (name, version),
            "dist": {
                "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
                "shasum": hashlib.sha1(data).hexdigest(),
                "tarball": "https://%s/%s/-/%s-%s.tgz" % (host, name, base, version),
            },
        }
    )
    return {
        "_id": name,
        "name": name,
        "description": manifest["description"],
        "dist-tags": {"latest": version},
        "versions": {version: version_doc},
        "readme": "",
        "_attachments": {
            tarball_name: {
                "content_type": "application/octet-stream",
                "data": base64.b64encode(data).decode(),
                "length": len(data),
            }
        },
    }


def npm_publish(ca, addr, host, token, name, version, deps):
    doc = npm_package(host, name, version, deps)
    status, out = request(ca, addr, host, "PUT", "/" + name.replace("/", "%2f"), doc, token)
    if status not in (200, 201):
        sys.exit("npm publish %s@%s: HTTP %d %s" % (name, version, status, out[:200]))


def cmd_npm_user(ca, addr, host, name, password):
    body = {"_id": "org.couchdb.user:" + name, "name": name, "password": password, "type": "user", "roles": []}
    status, out = request(ca, addr, host, "PUT", "/-/user/org.couchdb.user:" + name, body)
    if status not in (200, 201):
        sys.exit("npm user %s: HTTP %d %s" % (name, status, out[:200]))
    sys.stdout.write(json.loads(out)["token"])


def cmd_npm_tree(ca, addr, host, token_file, project):
    with open(token_file) as f:
        token = f.read().strip()
    pkgs = npm_tree()
    for name, version, deps in pkgs:
        npm_publish(ca, addr, host, token, name, version, deps)
    os.makedirs(project, exist_ok=True)
    root = {
        "name": "crgw-npm-project",
        "version": "1.0.0",
        "private": True,
        "license": "MIT",
        "dependencies": NPM_ROOT_DEPS,
    }
    with open(os.path.join(project, "package.json"), "w") as f:
        f.write(json.dumps(root, indent=2) + "\n")
    print("%d packages (%d names) published" % (len(pkgs), len({p[0] for p in pkgs})))


def cmd_npm_publish(ca, addr, host, token_file, name, version, *deps):
    with open(token_file) as f:
        token = f.read().strip()
    npm_publish(ca, addr, host, token, name, version, dict(d.split("=", 1) for d in deps))


# PyPI: crgw-alpha needs crgw-beta; crgw-beta has two versions; Crgw.Gamma checks name normalisation.
PYPI = [
    ("crgw-alpha", "1.0.0", ["crgw-beta>=1.0"]),
    ("crgw-beta", "1.0.0", []),
    ("crgw-beta", "1.1.0", []),
    ("Crgw.Gamma", "0.1.0", []),
]
PYPI_REQUIREMENTS = [("crgw-alpha", "1.0.0"), ("crgw-beta", "1.1.0"), ("Crgw.Gamma", "0.1.0")]


def normalize(name):
    out = []
    for ch in name.lower():
        if ch in "-_.":
            if not out or out[-1] != "-":
                out.append("-")
        else:
            out.append(ch)
    return "".join(out)


def b64nopad(digest):
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def wheel(name, version, requires, payload=0):
    """A pure-Python wheel (PEP 427) as bytes, and its file name; `payload` bytes of fixed noise ride along."""
    dist = normalize(name).replace("-", "_")
    info = "%s-%s.dist-info" % (dist, version)
    meta = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version,
            "Summary: crgw test network wheel " + name]
    meta += ["Requires-Dist: " + r for r in requires]
    files = [
        ("%s/__init__.py" % dist, ('NAME = %r\nVERSION = %r\n' % (name, version)).encode()),
        (info + "/METADATA", ("\n".join(meta) + "\n\n").encode()),
        (info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: crgw-testnet\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    if payload:
        # Incompressible like a real wheel's native code, and the same on every run.
        files.insert(1, ("%s/payload.bin" % dist, hashlib.shake_256(name.encode()).digest(payload)))
    record = "".join("%s,sha256=%s,%d\n" % (p, b64nopad(hashlib.sha256(d).digest()), len(d)) for p, d in files)
    files.append((info + "/RECORD", (record + info + "/RECORD,,\n").encode()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files:
            zi = zipfile.ZipInfo(p, ZIP_TIME)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_STORED if p.endswith(".bin") else zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
    return "%s-%s-py3-none-any.whl" % (dist, version), out.getvalue()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def cmd_pypi(out, host):
    www = os.path.join(out, "www")
    projects = {}
    digests = {}
    for name, version, requires in PYPI:
        fn, data = wheel(name, version, requires)
        write(os.path.join(www, "files", fn), data)
        digest = hashlib.sha256(data).hexdigest()
        projects.setdefault(normalize(name), []).append((fn, digest, len(data)))
        digests[(normalize(name), version)] = digest
    html = ["<!DOCTYPE html>", "<html><head><title>Simple index</title></head><body>"]
    html += ['<a href="%s/">%s</a>' % (p, p) for p in sorted(projects)]
    write(os.path.join(www, "simple", "index.html"), "\n".join(html + ["</body></html>"]) + "\n")
    write(os.path.join(www, "simple", "index.json"), json.dumps(
        {"meta": {"api-version": "1.0"}, "projects": [{"name": p} for p in sorted(projects)]}) + "\n")
    for p, files in projects.items():
        write_project(www, p, files)
    req = ["# crgw test network: every wheel pinned by hash (pip --require-hashes)"]
    req += ["%s==%s --hash=sha256:%s" % (n, v, digests[(normalize(n), v)]) for n, v in PYPI_REQUIREMENTS]
    write(os.path.join(out, "client", "requirements.txt"), "\n".join(req) + "\n")


def write_project(www, project, files):
    """A project's PEP 503 page and PEP 691 document; `files` holds (file name, sha256, size)."""
    html = ["<!DOCTYPE html>", "<html><head><title>Links for %s</title></head><body>" % project]
    html += ['<a href="../../files/%s#sha256=%s">%s</a><br>' % (fn, d, fn) for fn, d, _ in files]
    write(os.path.join(www, "simple", project, "index.html"), "\n".join(html + ["</body></html>"]) + "\n")
    doc = {"meta": {"api-version": "1.0"}, "name": project,
           "files": [{"filename": fn, "url": "../../files/" + fn, "hashes": {"sha256": d}} for fn, d, _ in files]}
    write(os.path.join(www, "simple", project, "index.json"), json.dumps(doc) + "\n")


# The bulk project's wheel sizes in KiB, then 96 KiB each: a few large ones and many small ones (30 wheels
# make 38 MiB), the shape of an application's dependency set with a numeric library or two in it.
PYPI_BULK_KIB = [12288, 8192, 6144, 4096, 2048, 1024, 1024, 512, 512, 384, 256, 256, 192, 128, 128]


def cmd_pypi_bulk(out, count):
    www = os.path.join(out, "www")
    req = ["# crgw test network: the bulk project, every wheel pinned by hash (pip --require-hashes)"]
    for i in range(int(count)):
        name = "crgw-bulk-%02d" % i
        fn, data = wheel(name, "1.0.0", [], (PYPI_BULK_KIB[i] if i < len(PYPI_BULK_KIB) else 96) * 1024)
        write(os.path.join(www, "files", fn), data)
        digest = hashlib.sha256(data).hexdigest()
        write_project(www, name, [(fn, digest, len(data))])
        req.append("%s==1.0.0 --hash=sha256:%s" % (name, digest))
    write(os.path.join(out, "bulk", "requirements.txt"), "\n".join(req) + "\n")


# Go modules: MOD_A@v1.0.0 needs MOD_B@v1.0.0; MOD_A@v1.1.0 exists for tests that want a newer version.
def go_modules(host):
    a, b = host + "/m/a", host + "/m/b"
    mods = []
    for v, msg in (("v1.0.0", "a v1.0.0"), ("v1.1.0", "a v1.1.0")):
        gomod = "module %s\n\ngo 1.19\n\nrequire %s v1.0.0\n" % (a, b)
        src = 'package a\n\nimport "%s"\n\n// Hello names this version and b\'s.\nfunc Hello() string { return "%s, " + b.Hello() }\n' % (b, msg)
        mods.append((a, v, gomod, {"a.go": src, "LICENSE": "MIT\n"}))
    gomod = "module %s\n\ngo 1.19\n" % b
    mods.append((b, "v1.0.0", gomod, {"b.go": 'package b\n\n// Hello names this version.\nfunc Hello() string { return "b v1.0.0" }\n',
                                      "LICENSE": "MIT\n"}))
    return mods


def h1(files):
    """Go's dirhash.Hash1 over [(name, bytes)]."""
    summary = "".join("%s  %s\n" % (hashlib.sha256(d).hexdigest(), n) for n, d in sorted(files))
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def cmd_goproxy(out, host):
    www = os.path.join(out, "www")
    versions = {}
    sums = {}
    for mod, v, gomod, srcs in go_modules(host):
        d = os.path.join(www, mod, "@v")
        prefix = "%s@%s/" % (mod, v)
        entries = [(prefix + "go.mod", gomod.encode())] + [(prefix + n, s.encode()) for n, s in sorted(srcs.items())]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for n, data in entries:
                zi = zipfile.ZipInfo(n, ZIP_TIME)
                zi.external_attr = 0o644 << 16
                zi.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(zi, data)
        write(os.path.join(d, v + ".zip"), buf.getvalue())
        write(os.path.join(d, v + ".mod"), gomod)
        write(os.path.join(d, v + ".info"), json.dumps({"Version": v, "Time": "2024-01-01T00:00:00Z"}) + "\n")
        versions.setdefault(mod, []).append(v)
        sums[(mod, v)] = (h1(entries), h1([("go.mod", gomod.encode())]))
    for mod, vs in versions.items():
        write(os.path.join(www, mod, "@v", "list"), "".join(v + "\n" for v in vs))
        write(os.path.join(www, mod, "@latest"),
              json.dumps({"Version": vs[-1], "Time": "2024-01-01T00:00:00Z"}) + "\n")
    a, b = host + "/m/a", host + "/m/b"
    client = os.path.join(out, "client")
    write(os.path.join(client, "go.mod"),
          "module example.test/main\n\ngo 1.19\n\nrequire (\n\t%s v1.0.0\n\t%s v1.0.0 // indirect\n)\n" % (a, b))
    lines = []
    for mod in (a, b):
        zh, mh = sums[(mod, "v1.0.0")]
        lines += ["%s v1.0.0 %s" % (mod, zh), "%s v1.0.0/go.mod %s" % (mod, mh)]
    write(os.path.join(client, "go.sum"), "\n".join(sorted(lines)) + "\n")
    write(os.path.join(client, "main.go"),
          'package main\n\nimport "%s"\n\nfunc main() { println(a.Hello()) }\n' % a)


def main(argv):
    cmds = {
        "npm-user": (cmd_npm_user, 5),
        "npm-tree": (cmd_npm_tree, 5),
        "npm-publish": (cmd_npm_publish, None),
        "pypi": (cmd_pypi, 2),
        "pypi-bulk": (cmd_pypi_bulk, 2),
        "goproxy": (cmd_goproxy, 2),
    }
    if len(argv) < 2 or argv[1] not in cmds:
        sys.exit(__doc__)
    fn, n = cmds[argv[1]]
    args = argv[2:]
    if (n is not None and len(args) != n) or (n is None and len(args) < 6):
        sys.exit(__doc__)
    fn(*args)


if __name__ == "__main__":
    main(sys.argv)
