#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# policy diff --against on a large generated audit log: events per second and peak RSS. The log is made
# from a sample of lines in the shapes crgw writes (DNS, the proxies, git, registry, connection ends, life
# cycle), repeated to the size asked for and streamed through a pipe, so that a 5 GB log needs no 5 GB of
# disk; the same sample is also read from a file. No network, no root. Prints figures; not a test.
# usage: policy-diff-bench.sh CRGW_CTL [GIB]     (default 5)
set -euo pipefail
CTL=$1
GIB=${2:-5}
T=$(mktemp -d /tmp/crgw-policy-diff-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

mkdir -p "$T/old" "$T/new"
cat >"$T/old/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: api.example.com
        ports: [443]
      - host: "*.pkgs.example"
      - host: 10.20.0.0/16
        ports: [5432]
      - host: mirror.example.com
    deny:
      - host: bad.pkgs.example
git:
  hosts: [git.example.com]
registries:
  npm: { enable: true, allowed_hosts: [npm.pkgs.example], fallback: allow }
YAML
# The change under review: one host dropped, one port opened, a git host added.
sed -e 's/      - host: mirror.example.com/      - host: other.example.com/' \
	-e 's/        ports: \[443\]/        ports: [443, 8443]/' \
	-e 's/hosts: \[git.example.com\]/hosts: [git.example.com, git2.example.com]/' \
	"$T/old/cleanroom.yaml" >"$T/new/cleanroom.yaml"

# About 64 MiB of sample: 200,000 lines over 5,000 distinct destinations, about 1 in 20 flipping.
python3 - "$T/sample.log" <<'EOF'
import random, sys
random.seed(7)
hosts = ["api.example.com", "mirror.example.com", "other.example.com", "bad.pkgs.example"] + \
        ["h%d.pkgs.example" % i for i in range(2000)] + ["x%d.example.net" % i for i in range(2996)]
head = '{"ts":"2026-12-06T10:%02d:%02d.%06dZ","schema":1,"event":"%s","sandbox_id":"sbx-%010x","run_id":"job-%d",' \
       '"policy_hash":"sha256:a656899f341f4d6280ab563f819211156fad3be5ce59d6e3b950db69982f2b04",'
out = open(sys.argv[1], "w")
for i in range(200000):
    h = random.choice(hosts) if random.random() < 0.3 else hosts[random.randrange(4)] if random.random() < 0.2 else \
        "h%d.pkgs.example" % random.randrange(2000)
    m, s, us = (i // 60000) % 60, (i // 1000) % 60, (i * 37) % 1000000
    sb, job = random.randrange(1 << 36), random.randrange(1000)
    kind = random.random()
    if kind < 0.3:
        line = head % (m, s, us, "decision", sb, job) + '"service":"dns","dst_host":"%s","src_ip":"10.200.0.2",' \
            '"action":"allow","reason_code":null,"rule":"sandbox.network.allow[1]","qtype":"A",' \
            '"detail":"203.0.113.10 ttl=300"}' % h
    elif kind < 0.7:
        svc = random.choice(["connect", "tls", "http", "tcp"])
        port = random.choice([443, 443, 80, 8443])
        line = head % (m, s, us, "decision", sb, job) + '"service":"%s","dst_host":"%s","dst_ip":"203.0.113.10",' \
            '"dst_port":%d,"src_ip":"10.200.0.2","action":"allow","reason_code":null,' \
            '"rule":"sandbox.network.allow[1]","detail":"GET /index.html"}' % (svc, h, port)
    elif kind < 0.9:
        line = head % (m, s, us, "connection_end", sb, job) + '"service":"connect","dst_host":"%s",' \
            '"dst_ip":"203.0.113.10","dst_port":443,"src_ip":"10.200.0.2","bytes_up":517,"bytes_down":51200,' \
            '"duration_ms":12}' % h
    elif kind < 0.95:
        g = random.choice(["git.example.com", "git2.example.com"])
        line = head % (m, s, us, "decision", sb, job) + '"service":"git","dst_host":"%s","src_ip":"10.200.0.2",' \
            '"action":"allow","reason_code":null,"operation":"fetch","path":"/org/repo.git"}' % g
    else:
        line = head % (m, s, us, "decision", sb, job) + '"service":"registry","dst_host":"npm.pkgs.example",' \
            '"src_ip":"10.200.0.2","action":"allow","reason_code":null,"registry":"npm","package":"pkg%d",' \
            '"version":"1.%d.0","integrity":"sha512:%0128x"}' % (random.randrange(500), random.randrange(9),
                                                                 random.randrange(1 << 64))
    out.write(line + "\n")
EOF
sample_bytes=$(stat -c %s "$T/sample.log")
sample_lines=$(wc -l <"$T/sample.log")
copies=$(((GIB * 1024 * 1024 * 1024 + sample_bytes - 1) / sample_bytes))

run() { # run LABEL INPUT-COMMAND: prints one row
	local label=$1
	shift
	local start end rc
	start=$(date +%s.%N)
	set +e
	"$@" | /usr/bin/time -f "%M" -o "$T/rss" "$CTL" policy diff "$T/old" "$T/new" --against - --json >"$T/out.json"
	rc=${PIPESTATUS[1]}
	set -e
	end=$(date +%s.%N)
	[ "$rc" -eq 1 ] || { echo "policy diff exited $rc (expected 1: flips)" >&2; exit 1; }
	local lines bytes
	lines=$(jq .against.lines "$T/out.json")
	bytes=$((lines / sample_lines * sample_bytes))
	awk -v l="$label" -v n="$lines" -v b="$bytes" -v s="$start" -v e="$end" -v rss="$(tail -1 "$T/rss")" \
		-v flips="$(jq '.against.flips | length' "$T/out.json")" -v fe="$(jq .against.flipped_events "$T/out.json")" \
		'BEGIN { t = e - s; printf "| %s | %.2f GB | %d | %.1f s | %.2f M | %.0f MB/s | %d MiB | %d flows, %d events |\n",
			l, b / 1e9, n, t, n / t / 1e6, b / t / 1e6, rss / 1024, flips, fe }'
}

cat_copies() { for ((i = 0; i < copies; i++)); do cat "$T/sample.log"; done; }

echo "sample: $sample_lines lines, $sample_bytes bytes; $copies copies for ${GIB} GiB; $(nproc) CPUs"
echo "| input | size | lines | time | events/s | read | peak RSS | flips |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
run "sample, one pass" cat "$T/sample.log"
run "${GIB} GiB through a pipe" cat_copies
jq -r '.against.flips[] | "  \(.direction) \(.flow): \(.count) events"' "$T/out.json" | head -20
