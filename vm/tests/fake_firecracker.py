#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A FAKE Firecracker, for the tests of the firecracker backend (vm/firecracker.c).

No Firecracker binary can run on the project's machines (no KVM that boots a guest, and none may be
downloaded), so the backend is tested against this instead. It is not Firecracker and boots nothing:

- It takes Firecracker's command line (`--api-sock PATH`; other flags of the real binary are accepted
  and ignored) and serves its HTTP API on that unix socket.
- It checks EVERY request against the schemas of the endpoints the backend uses, encoded below from
  Firecracker's published API description (src/firecracker/swagger/firecracker.yaml, version 1.17.0-dev):
  the method and path, required fields, types, unknown fields (Firecracker's request structs deny them),
  enum values and bounds, the path id against the body's, pre-boot-only endpoints after the start, and
  that the files named exist. A violation is answered 400 with a fault_message worded like Firecracker's.
- It records each exchange as a JSON line (pid, method, path, body, status, answer) in $FAKE_FC_LOG.
- After InstanceStart it serves the hybrid vsock at the configured uds_path: "CONNECT <port>\\n" on the
  port named by crgw.vsock= in boot_args is answered "OK 1073741824\\n" and joined to a real
  `crgw-guest --listen unix:PATH` ($FAKE_FC_AGENT) that it starts, so executions travel the backend's
  real code path. The commands then run on the host, in a network namespace of their own (unshare -n)
  when $FAKE_FC_NETNS is 1, not in a VM.

Fault injection (environment): FAKE_FC_FAULT=/drives/rootfs answers that path 400; FAKE_FC_NO_SOCKET=1
never makes the API socket; FAKE_FC_VSOCK=ok|refuse|garble|silent|flood; FAKE_FC_SKIP_TAP=1 does not
look for the TAP in /sys/class/net (unit tests have none).
"""
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

# ---- the schemas, from firecracker.yaml's definitions --------------------------------------------------
# type: "string" | "integer" | "boolean" | "object"; "enum", "minimum", "maximum" as there.
TOKEN_BUCKET = {"required": ["refill_time", "size"],
                "properties": {"one_time_burst": {"type": "integer", "minimum": 0},
                               "refill_time": {"type": "integer", "minimum": 0},
                               "size": {"type": "integer", "minimum": 0}}}
RATE_LIMITER = {"required": [], "properties": {"bandwidth": dict(TOKEN_BUCKET, type="object"),
                                               "ops": dict(TOKEN_BUCKET, type="object")}}
SCHEMAS = {
    "MachineConfiguration": {
        "required": ["mem_size_mib", "vcpu_count"],
        "properties": {
            "cpu_template": {"type": "string", "enum": ["C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"]},
            "smt": {"type": "boolean"},
            "mem_size_mib": {"type": "integer"},
            "track_dirty_pages": {"type": "boolean"},
            "vcpu_count": {"type": "integer", "minimum": 1, "maximum": 32},
            "huge_pages": {"type": "string", "enum": ["None", "Transparent", "2M"]},
        }},
    "BootSource": {
        "required": ["kernel_image_path"],
        "properties": {"boot_args": {"type": "string"}, "initrd_path": {"type": "string"},
                       "kernel_image_path": {"type": "string"}}},
    "Drive": {
        "required": ["drive_id", "is_root_device"],
        "properties": {
            "drive_id": {"type": "string"}, "partuuid": {"type": "string"},
            "is_root_device": {"type": "boolean"},
            "cache_type": {"type": "string", "enum": ["Unsafe", "Writeback"]},
            "is_read_only": {"type": "boolean"}, "path_on_host": {"type": "string"},
            "rate_limiter": dict(RATE_LIMITER, type="object"),
            "io_engine": {"type": "string", "enum": ["Sync", "Async"]},
            "socket": {"type": "string"},
        }},
    "NetworkInterface": {
        "required": ["host_dev_name", "iface_id"],
        "properties": {
            "guest_mac": {"type": "string"}, "host_dev_name": {"type": "string"}, "iface_id": {"type": "string"},
            "mtu": {"type": "integer", "minimum": 68, "maximum": 65535},
            "rx_rate_limiter": dict(RATE_LIMITER, type="object"),
            "tx_rate_limiter": dict(RATE_LIMITER, type="object"),
        }},
    "Vsock": {
        "required": ["guest_cid", "uds_path"],
        "properties": {"guest_cid": {"type": "integer", "minimum": 3}, "uds_path": {"type": "string"},
                       "vsock_id": {"type": "string"}}},
    "InstanceActionInfo": {
        "required": ["action_type"],
        "properties": {"action_type": {"type": "string",
                                       "enum": ["FlushMetrics", "InstanceStart", "SendCtrlAltDel"]}}},
}
# PUT endpoints the backend uses: path pattern -> (schema, name of the path parameter or None, pre-boot only)
ENDPOINTS = [
    (re.compile(r"^/machine-config$"), "MachineConfiguration", None, True),
    (re.compile(r"^/boot-source$"), "BootSource", None, True),
    (re.compile(r"^/drives/([^/]*)$"), "Drive", "drive_id", True),
    (re.compile(r"^/network-interfaces/([^/]*)$"), "NetworkInterface", "iface_id", True),
    (re.compile(r"^/vsock$"), "Vsock", None, True),
    (re.compile(r"^/actions$"), "InstanceActionInfo", None, False),
]
SERDE = "An error occurred when deserializing the json body of a request: "
TYPE_WORDS = {"string": "a string", "integer": "u64", "boolean": "a boolean", "object": "struct"}


def jtype(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, float):
        return "number"
    return "array" if isinstance(v, list) else "null"


def check(schema, body, where=""):
    """None, or the fault message Firecracker would give for `body` against `schema`."""
    if not isinstance(body, dict):
        return SERDE + "invalid type: %s, expected struct%s" % (jtype(body), where)
    props = schema["properties"]
    for k in body:
        if k not in props:
            return SERDE + "unknown field `%s`, expected one of %s" % (k, ", ".join("`%s`" % p for p in props))
    for k in schema["required"]:
        if k not in body:
            return SERDE + "missing field `%s`" % k
    for k, v in body.items():
        p = props[k]
        t = jtype(v)
        if p["type"] == "object":
            m = check(p, v, " in `%s`" % k)
            if m:
                return m
            continue
        if t != p["type"]:
            return SERDE + "invalid type: %s, expected %s for `%s`" % (t, TYPE_WORDS[p["type"]], k)
        if "enum" in p and v not in p["enum"]:
            return SERDE + "unknown variant `%s`, expected one of %s" % (v, ", ".join("`%s`" % e for e in p["enum"]))
        if "minimum" in p and v < p["minimum"] or "maximum" in p and v > p["maximum"]:
            return "Invalid value for `%s`: %s is out of range" % (k, v)
    return None


class Fake:
    def __init__(self, api_sock):
        self.api_sock = api_sock
        self.log = os.environ.get("FAKE_FC_LOG")
        self.fault = os.environ.get("FAKE_FC_FAULT", "")
        self.vsock_mode = os.environ.get("FAKE_FC_VSOCK", "ok")
        self.started = False
        self.config = {}
        self.agent = None
        self.lock = threading.Lock()

    def record(self, method, path, body, status, answer):
        if not self.log:
            return
        line = json.dumps({"pid": os.getpid(), "api_sock": self.api_sock, "method": method, "path": path,
                           "body": body, "status": status, "answer": answer}, sort_keys=True)
        with self.lock, open(self.log, "a") as f:
            f.write(line + "\n")

    def handle(self, method, path, raw):
        """(status, answer object or None) for one request."""
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError) as e:
            return 400, {"fault_message": SERDE + "%s" % e}, raw.decode("utf-8", "replace")
        for pat, name, param, preboot in ENDPOINTS:
            m = pat.match(path)
            if not m:
                continue
            if method != "PUT":
                break
            if body is None:
                return 400, {"fault_message": "Empty PUT request."}, body
            fault = check(SCHEMAS[name], body)
            if fault:
                return 400, {"fault_message": fault}, body
            if param:
                pid = m.group(1)
                if not pid:
                    return 400, {"fault_message": "The ID cannot be empty."}, body
                if not re.match(r"^[A-Za-z0-9_]+$", pid):
                    return 400, {"fault_message": "API Resource IDs can only contain alphanumeric characters "
                                                  "and underscores."}, body
                if body.get(param) != pid:
                    return 400, {"fault_message": "The id from the path does not match the id from the body!"}, body
            if preboot and self.started:
                return 400, {"fault_message": "The requested operation is not supported after starting the "
                                              "microVM."}, body
            if self.fault and path == self.fault:
                return 400, {"fault_message": "fake fault injected at PUT %s (FAKE_FC_FAULT)" % path}, body
            fault = self.semantics(name, path, body)
            if fault:
                return 400, {"fault_message": fault}, body
            return 204, None, body
        return 400, {"fault_message": "Invalid request method and/or path: %s %s." % (method, path)}, body

    def semantics(self, name, path, body):
        """What Firecracker checks beyond the schema when it applies a request (the files, the TAP)."""
        if name == "BootSource":
            for k in ("kernel_image_path", "initrd_path"):
                if k in body and not os.path.isfile(body[k]):
                    return "The %s file cannot be opened: No such file or directory (os error 2)" % (
                        "kernel" if k == "kernel_image_path" else "initrd")
            self.config["boot-source"] = body
        elif name == "MachineConfiguration":
            self.config["machine-config"] = body
        elif name == "Drive":
            if "path_on_host" in body and not os.path.isfile(body["path_on_host"]):
                return "Unable to create the block device: No such file or directory (os error 2)"
            self.config.setdefault("drives", []).append(body)
        elif name == "NetworkInterface":
            if "guest_mac" in body and not re.match(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$", body["guest_mac"]):
                return SERDE + "invalid MAC address: %s" % body["guest_mac"]
            dev = body["host_dev_name"]
            if os.environ.get("FAKE_FC_SKIP_TAP") != "1" and not os.path.exists("/sys/class/net/%s/tun_flags" % dev):
                return "Open tap device failed: Error while creating ifreq structure: No such device (os error 19)"
            self.config.setdefault("network-interfaces", []).append(body)
        elif name == "Vsock":
            self.config["vsock"] = body
        elif name == "InstanceActionInfo" and body["action_type"] == "InstanceStart":
            if "boot-source" not in self.config:
                return "Start microvm error: Cannot start microvm without kernel configuration."
            self.start()
        return None

    # ---- after InstanceStart: the hybrid vsock, joined to crgw-guest ---------------------------------
    def start(self):
        self.started = True
        args = self.config["boot-source"].get("boot_args", "")
        m = re.search(r"(?:^| )crgw\.vsock=(\d+)", args)
        self.port = int(m.group(1)) if m else None
        vs = self.config.get("vsock")
        if not vs:
            return
        uds = vs["uds_path"]
        self.agent_sock = uds + ".agent"
        agent = os.environ.get("FAKE_FC_AGENT")
        if agent and self.port is not None:
            cmd = [agent, "--listen", "unix:" + self.agent_sock]
            if os.environ.get("FAKE_FC_NETNS") == "1":
                cmd = ["unshare", "--net", "--"] + cmd
            self.agent = spawn(cmd)
            for _ in range(250):
                if os.path.exists(self.agent_sock):
                    break
                time.sleep(0.02)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(uds)
        srv.listen(16)
        threading.Thread(target=self.vsock_accept, args=(srv,), daemon=True).start()

    def vsock_accept(self, srv):
        while True:
            c, _ = srv.accept()
            threading.Thread(target=self.vsock_conn, args=(c,), daemon=True).start()

    def vsock_conn(self, c):
        line = b""
        while not line.endswith(b"\n") and len(line) < 64:
            b = c.recv(1)
            if not b:
                c.close()
                return
            line += b
        m = re.match(rb"^CONNECT (\d+)\n$", line)
        mode = self.vsock_mode
        if mode == "silent":
            time.sleep(3600)
        if mode == "garble":
            c.sendall(b"HELLO\x1b[31m? \xff\xfe\n")
            c.close()
            return
        if mode == "flood":
            try:
                c.sendall(b"O" * (1 << 20))
            except OSError:
                pass
            c.close()
            return
        # Nothing listens on another port; in "refuse" mode, on none (a guest still booting): Firecracker
        # then closes the connection without an answer.
        if mode == "refuse" or not m or int(m.group(1)) != self.port or not self.agent:
            c.close()
            return
        a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            a.connect(self.agent_sock)
        except OSError:
            c.close()
            return
        c.sendall(b"OK 1073741824\n")
        threading.Thread(target=pump, args=(c, a), daemon=True).start()
        pump(a, c)


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


SPAWN_REQUESTS = queue.Queue()


def spawner():
    """Starts the agent from a thread that lives as long as the fake: PR_SET_PDEATHSIG fires when the
    thread that forked ends, and the request's thread ends with its connection."""
    while True:
        cmd, reply = SPAWN_REQUESTS.get()
        # The agent dies with us: SIGKILL to the fake (the backend's release) must leave nothing.
        reply.put(subprocess.Popen(cmd, preexec_fn=die_with_parent, stdin=subprocess.DEVNULL))


def spawn(cmd):
    reply = queue.Queue()
    SPAWN_REQUESTS.put((cmd, reply))
    return reply.get()


def die_with_parent():
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(fake):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(fake.api_sock)
    srv.listen(8)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=http_conn, args=(fake, c), daemon=True).start()


def http_conn(fake, c):
    """HTTP/1.1 with keep-alive, as Firecracker's micro_http serves it."""
    f = c.makefile("rb")
    try:
        while True:
            start = f.readline(8192)
            if not start:
                return
            parts = start.decode("latin-1").split()
            if len(parts) != 3:
                return
            method, path, _ = parts
            length = 0
            while True:
                h = f.readline(8192).decode("latin-1").strip()
                if not h:
                    break
                k, _, v = h.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
                if k.strip().lower() == "expect":
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            raw = f.read(length) if length else b""
            with fake.lock:
                status, answer, body = fake.handle(method, path, raw)
            fake.record(method, path, body, status, answer)
            payload = json.dumps(answer).encode() if answer is not None else b""
            reason = {204: "No Content", 400: "Bad Request"}[status]
            head = "HTTP/1.1 %d %s\r\nServer: Firecracker API\r\nConnection: keep-alive\r\n" % (status, reason)
            if payload:
                head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(payload)
            c.sendall(head.encode() + b"\r\n" + payload)
    except (OSError, ValueError):
        pass
    finally:
        c.close()


def main(argv):
    api_sock = None
    i = 1
    while i < len(argv):
        if argv[i] == "--api-sock" and i + 1 < len(argv):
            api_sock = argv[i + 1]
            i += 2
        else:
            i += 1
    if not api_sock:
        print("fake firecracker: --api-sock PATH is required", file=sys.stderr)
        return 1
    print("fake firecracker (a test double, not Firecracker): API on %s" % api_sock, file=sys.stderr, flush=True)
    if os.environ.get("FAKE_FC_NO_SOCKET") == "1":
        while True:
            time.sleep(3600)
    fake = Fake(api_sock)
    threading.Thread(target=spawner, daemon=True).start()
    try:
        serve(fake)
    finally:
        if fake.agent:
            fake.agent.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
