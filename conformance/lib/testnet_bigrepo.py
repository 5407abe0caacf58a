#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes the history of the test network's large repository (org/big.git, testnet_git_big_repo in
# testnet.sh) as a git fast-import stream on stdout. The same arguments give the same bytes, hence the
# same commit ids, on every machine.
#
#   testnet_bigrepo.py commits=N blob=BYTES seed=TEXT
#
# Each of the N commits on refs/heads/main adds one binary asset of BYTES pseudo-random bytes (it does not
# compress or delta: the pack is at least N * BYTES), grows one of 32 C-like source files by 40 lines (text
# that compresses and deltas, as source does) and rewrites README.md. Every 32nd commit is tagged.
# With commits=256 blob=1048576: a 257 MiB pack (HEAD e73e1a810fa2), made and repacked in 12-20 s on this
# project's 2-core machines.

import random
import sys

WORDS = (
    "buffer", "connection", "upstream", "sandbox", "policy", "decision", "reason", "tunnel", "binding",
    "request", "header", "length", "state", "timer", "event", "loop", "queue", "entry", "table", "audit",
)


def data(out, payload):
    out.write(b"data %d\n" % len(payload))
    out.write(payload)
    out.write(b"\n")


def source_lines(rng, module, start, count):
    lines = []
    for n in range(start, start + count):
        a, b, c = rng.choice(WORDS), rng.choice(WORDS), rng.choice(WORDS)
        lines.append(f"static int {a}_{b}_{module}_{n}(struct {c} *{c}) {{ return {c}->{a} + {n}; }}\n")
    return lines


def main(argv):
    args = dict(a.split("=", 1) for a in argv[1:])
    commits, blob, seed = int(args["commits"]), int(args["blob"]), args["seed"]
    rng = random.Random(seed)  # a str seed is hashed with SHA-512: the same on every run and version
    out = sys.stdout.buffer
    sources = {}
    for i in range(1, commits + 1):
        when = 1700000000 + i * 600
        module = i % 32
        header = f"/* module {module} of the crgw test network's large repository */\n"
        lines = sources.setdefault(module, [header])
        lines += source_lines(rng, module, len(lines), 40)
        out.write(b"commit refs/heads/main\n")
        out.write(b"author crgw testnet <testnet@crgw.test> %d +0000\n" % when)
        out.write(b"committer crgw testnet <testnet@crgw.test> %d +0000\n" % when)
        data(out, b"big: revision %d" % i)
        out.write(b"M 100644 inline assets/blob-%03d.bin\n" % i)
        data(out, rng.randbytes(blob))
        out.write(b"M 100644 inline src/module-%02d.c\n" % module)
        data(out, "".join(lines).encode())
        out.write(b"M 100644 inline README.md\n")
        data(out, b"# big\n\nThe crgw test network's large repository, revision %d of %d.\n" % (i, commits))
        if i % 32 == 0:
            out.write(b"reset refs/tags/v%d\nfrom refs/heads/main\n\n" % (i // 32))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
