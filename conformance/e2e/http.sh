#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# HTTP forwarding end to end: absolute-URI requests on the explicit proxy and redirected port 80 from a
# sandbox, through crgw, to the test network's real HTTP server (its /echo shows what arrived upstream).
# Every request is decided on its own, kept-alive and pipelined connections included; every refusal is
# checked at the client (status and body) and in the audit log; the request smuggling catalogue is refused
# before anything reaches the upstream. TAP output. Needs root.
# usage: http.sh CRGW CRGW_CTL
set -uo pipefail
CRGW=$1
CTL=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/testnet.sh
source "$here/../lib/testnet.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
GW_TABLE=crgw_http
GW_PREFIX=cgh

T=$(mktemp -d /tmp/crgw-http.XXXXXX)
testnet_on_exit rm -rf "$T"
testnet_on_exit 'gw_stop >/dev/null 2>&1'
testnet_up "$T/net" || { echo "Bail out! the test network did not come up"; exit 1; }
AUDIT=$T/audit.log
cat >"$T/cleanroom.yaml" <<'YAML'
version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: allowed.test
        ports: [80, 443]
      - host: chain.test
        ports: [22]
      - host: other.test
        ports: [8080]
YAML
gw_start "$T" || { echo "Bail out! crgw did not start"; exit 1; }
run() { "$CTL" run --rm --policy "$T/cleanroom.yaml" -- "$@"; }

# raw DEST REQUEST: inside a sandbox, writes REQUEST (printf %b escapes: \r \n \0) to DEST ("addr/port",
# or "gw/3128" for the explicit proxy) and prints what comes back within 3 s.
raw() {
	run env DST="$1" REQ="$2" bash -c \
		'[ "${DST%%/*}" = gw ] && DST=$CRGW_GATEWAY/${DST#*/}; exec 3<>"/dev/tcp/$DST" && printf "%b" "$REQ" >&3 && timeout 3 cat <&3' 2>&1
}
status_of() { sed -n '1s/^HTTP\/1\.1 \([0-9]*\) .*/\1/p' <<<"$1" | tr -d '\r'; }
statuses() { grep -o '^HTTP/1\.[01] [0-9]*' <<<"$1" | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ $//'; }

# ---- transparent HTTP ----------------------------------------------------------------------------
out=$(run curl -s --noproxy '*' --max-time 10 http://allowed.test/ 2>&1)
[ "$out" = "upstream $TN_WEB1" ]
ok $? "a plain HTTP request to an allowed name is forwarded by the transparent proxy (got: $out)"
audit_has "$AUDIT" 'select(.event=="decision" and .service=="http" and .action=="allow" and .dst_host=="allowed.test" and .dst_port==80 and .dst_ip=="203.0.113.10" and .detail=="GET /" and .rule=="sandbox.network.allow[0]")'
ok $? "... audited as an allowed http decision with method and path"

out=$(run curl -s --noproxy '*' --max-time 10 -H 'Proxy-Authorization: Basic c2VjcmV0' -H 'Connection: X-Hop' \
	-H 'X-Hop: 1' -H 'X-Kept: 2' 'http://allowed.test/echo?token=abc' 2>&1)
jq -e '.target=="/echo?token=abc" and .version=="HTTP/1.1" and
	([.headers[][0] | ascii_downcase] | index("proxy-authorization") == null and index("x-hop") == null and index("x-kept") != null) and
	([.headers[] | select((.[0] | ascii_downcase)=="host") | .[1]] == ["allowed.test"])' <<<"$out" >/dev/null
ok $? "the upstream gets the origin-form target, Host, end-to-end fields, and no hop-by-hop field (got: $out)"
audit_has "$AUDIT" 'select(.service=="http" and .detail=="GET /echo")'
ok $? "... and the audit detail leaves out the query string"

out=$(raw "$TN_WEB1/80" 'GET /echo HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /echo HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /echo HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n')
[ "$(statuses "$out")" = "200 200 200" ] && [ "$(grep -o '"request": *[0-9]*' <<<"$out" | tr -dc '0-9')" = "123" ]
ok $? "three pipelined requests get three answers in order, over one upstream connection (got: $(statuses "$out"))"

out=$(raw "$TN_WEB1/80" 'GET /echo HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET / HTTP/1.1\r\nHost: denied.test\r\n\r\n')
[ "$(statuses "$out")" = "200 403" ] && grep -q '^host_not_allowed' <<<"$out"
ok $? "each request on a kept-alive connection is decided again: the second, for a denied host, gets 403 (got: $(statuses "$out"))"
audit_has "$AUDIT" 'select(.service=="http" and .action=="deny" and .dst_host=="denied.test" and .reason_code=="host_not_allowed")'
ok $? "... audited as host_not_allowed"
audit_has "$AUDIT" 'select(.event=="connection_end" and .service=="http" and .detail=="refused a later request" and .bytes_down > 0)'
ok $? "... and the connection's end is audited with its bytes"

out=$(raw "$TN_WEB1/80" 'GET / HTTP/1.1\r\nHost: chain.test\r\nConnection: close\r\n\r\n')
[ "$(status_of "$out")" = 403 ] && grep -q '^port_not_allowed' <<<"$out"
ok $? "a Host allowed on other ports only gets 403 port_not_allowed"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="port_not_allowed" and .dst_host=="chain.test")'
ok $? "... audited"
out=$(raw "$TN_WEB1/80" 'GET / HTTP/1.1\r\nHost: 203.0.113.11\r\nConnection: close\r\n\r\n')
[ "$(status_of "$out")" = 403 ] && grep -q '^ip_literal_not_allowed' <<<"$out"
ok $? "a Host that is an address is decided by IP rules only: 403 ip_literal_not_allowed"
out=$(raw "$TN_WEB1/80" 'GET / HTTP/1.0\r\n\r\n')
[ "$(status_of "$out")" = 400 ] && grep -q '^request_invalid' <<<"$out"
ok $? "a redirected request without Host has nothing to decide on: 400 request_invalid"
out=$(raw "$TN_WEB1/80" 'GET / HTTP/1.1\r\nHost: allowed.test:8080\r\n\r\n')
[ "$(status_of "$out")" = 400 ]
ok $? "a Host naming another port than the one dialled gets 400"
out=$(raw "$TN_WEB1/80" 'GET / HTTP/1.1\r\nHost: 0177.0.0.1\r\n\r\n')
[ "$(status_of "$out")" = 400 ] && grep -q '^request_invalid' <<<"$out"
ok $? "a Host that is an octal spelling of an address gets 400 request_invalid"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="request_invalid" and .dst_host=="0177.0.0.1")'
ok $? "... audited with the Host as written in dst_host"

# ---- request smuggling ---------------------------------------------------------------------------
# Each is refused with 400 request_invalid, and none reaches the upstream as a request of its own.
smuggle() { # smuggle DESCRIPTION DEST REQUEST
	local out
	out=$(raw "$2" "$3")
	[ "$(status_of "$out")" = 400 ] && grep -q '^request_invalid' <<<"$out" && ! grep -q '"method"' <<<"$out"
	ok $? "smuggling: $1 is refused with 400 request_invalid (got: $(statuses "$out"))"
}
H='Host: allowed.test\r\n'
smuggle "Content-Length with Transfer-Encoding" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /echo HTTP/1.1\r\n${H}\r\n"
smuggle "Transfer-Encoding with Content-Length" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"
smuggle "duplicate Content-Length" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Content-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"
smuggle "obsolete line folding" "$TN_WEB1/80" "GET /echo HTTP/1.1\r\n${H}X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n"
smuggle "a bare LF" "$TN_WEB1/80" "GET /echo HTTP/1.1\r\n${H}X-A: 1\nContent-Length: 5\r\n\r\n"
smuggle "a bare CR" "$TN_WEB1/80" "GET /echo HTTP/1.1\r\n${H}X-A: 1\rContent-Length: 5\r\n\r\n"
smuggle "a NUL in a field" "$TN_WEB1/80" "GET /echo HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n"
smuggle "a space before the colon" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\nabcd"
smuggle "an invalid field name" "$TN_WEB1/80" "GET /echo HTTP/1.1\r\n${H}X[A]: 1\r\n\r\n"
smuggle "two Host fields" "$TN_WEB1/80" "GET /echo HTTP/1.1\r\n${H}Host: denied.test\r\n\r\n"
smuggle "an absolute-form host that differs from Host" "$TN_WEB1/80" "GET http://denied.test/echo HTTP/1.1\r\n${H}\r\n"
smuggle "Transfer-Encoding that is not chunked" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\n"
smuggle "absolute-form and Host disagreeing on the explicit proxy" gw/3128 "GET http://allowed.test/echo HTTP/1.1\r\nHost: denied.test\r\n\r\n"
# A bad chunk size shows up only after the head went upstream: the client still gets a 400, and the
# upstream (which never saw a complete request) answers nothing.
smuggle "an invalid chunk size" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n"
smuggle "a chunk size that overflows" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n"
# A proxy drops the fields Connection names: without its Content-Length or Transfer-Encoding the upstream
# would take the body for a request of its own (here one for denied.test), and without Host route it elsewhere.
smuggle "a Connection field naming Content-Length" "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Connection: Content-Length\r\nContent-Length: 41\r\n\r\nGET /echo HTTP/1.1\r\nHost: denied.test\r\n\r\n"
smuggle "a Connection field naming Transfer-Encoding" gw/3128 "POST http://allowed.test/echo HTTP/1.1\r\n${H}Connection: close, Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
smuggle "a Connection field naming Host" gw/3128 "GET http://allowed.test/echo HTTP/1.1\r\n${H}Connection: Host\r\n\r\n"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="request_invalid" and .detail=="obsolete line folding")'
ok $? "... each audited as request_invalid with what was wrong"
out=$(raw gw/3128 'GET http://allowed.test/echo?token=abc HTTP/1.1\r\nHost: allowed.test\r\nX-A: 1\r\n X-B: 2\r\n\r\n')
[ "$(status_of "$out")" = 400 ]
ok $? "a folded head on the explicit proxy gets 400"
audit_has "$AUDIT" 'select(.reason_code=="request_invalid" and .detail=="obsolete line folding" and .dst_host=="allowed.test")'
ok $? "... audited naming the URL's host from the request line, without path or query"
out=$(raw gw/3128 'GET http://allowed.test/echo HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n')
grep '^{' <<<"$out" | jq -e '[.headers[] | select((.[0] | ascii_downcase)=="host") | .[1]] == ["allowed.test"]' >/dev/null
ok $? "an absolute URL with an empty Host reaches the upstream with one Host, the URL's (got: $(grep '^{' <<<"$out" | jq -c .headers 2>&1))"

out=$(raw "$TN_WEB1/80" "POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /echo HTTP/1.1\r\n${H}Connection: close\r\n\r\n")
[ "$(statuses "$out")" = "200 200" ] && grep -q '"body_length": *11' <<<"$out"
ok $? "a well-formed chunked body passes, and the request after it is answered too"

# ---- absolute-URI requests on the explicit proxy ---------------------------------------------------
out=$(run sh -c 'curl -s --max-time 10 -x "http://$CRGW_GATEWAY:3128" http://allowed.test/echo http://allowed.test/echo' 2>&1)
jq -se 'length==2 and .[0].target=="/echo" and .[0].client==.[1].client and .[1].request==2 and
	([.[0].headers[][0] | ascii_downcase] | index("proxy-connection") == null)' <<<"$out" >/dev/null
ok $? "absolute-URI requests on port 3128 arrive in origin form, kept alive over one upstream connection"
[ "$TAP_FAILED" -gt 0 ] && diag "got: $out"
audit_has "$AUDIT" 'select(.service=="http" and .action=="allow" and .dst_host=="allowed.test" and .detail=="GET /echo" and .src_ip != null)'
ok $? "... audited as allowed http decisions"
out=$(run sh -c 'curl -s --max-time 10 -x "http://$CRGW_GATEWAY:3128" -d "hello body" http://allowed.test/echo' 2>&1)
jq -e '.method=="POST" and .body_length==10' <<<"$out" >/dev/null
ok $? "a POST body with Content-Length is relayed (got: $out)"
out=$(run sh -c 'curl -s --max-time 10 -I -x "http://$CRGW_GATEWAY:3128" http://allowed.test/ http://allowed.test/echo' 2>&1)
[ "$(grep -c '^HTTP/1.1 200' <<<"$out")" = 2 ]
ok $? "a HEAD answer (Content-Length but no body) does not stall the next request"

check_proxy_refusal() { # URL STATUS REASON
	local out
	out=$(run sh -c "curl -s -i --max-time 10 -x \"http://\$CRGW_GATEWAY:3128\" '$1'" 2>&1)
	[ "$(status_of "$out")" = "$2" ] && grep -q "^$3" <<<"$out"
	ok $? "GET $1 through the proxy: $2 $3 (got: $(status_of "$out"))"
	audit_has "$AUDIT" "select(.service==\"http\" and .action==\"deny\" and .reason_code==\"$3\")"
	ok $? "... audited as $3"
}
check_proxy_refusal http://denied.test/ 403 host_not_allowed
check_proxy_refusal http://allowed.test:8080/ 403 port_not_allowed
check_proxy_refusal http://203.0.113.10/ 403 ip_literal_not_allowed
check_proxy_refusal "http://$TN_HOST/" 403 private_address_blocked
check_proxy_refusal http://other.test:8080/ 502 upstream_unreachable
# An upstream that does not speak HTTP (the ssh-style banner service): 502 before any byte of it passes.
out=$(run sh -c "curl -s -i --max-time 10 -x \"http://\$CRGW_GATEWAY:3128\" http://chain.test:22/" 2>&1)
[ "$(status_of "$out")" = 502 ] && grep -q '^upstream_unreachable' <<<"$out" && ! grep -q 'SSH-2.0' <<<"$out"
ok $? "an upstream answering with something other than HTTP gets 502 upstream_unreachable, and none of its bytes"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="upstream_unreachable" and .detail=="malformed response from the upstream" and .dst_host=="chain.test")'
ok $? "... audited with what was wrong"
out=$(run sh -c "curl -s -i --max-time 10 --noproxy '*' http://allowed.test/hangup" 2>&1)
[ "$(status_of "$out")" = 502 ] && grep -q '^upstream_unreachable' <<<"$out"
ok $? "an upstream that closes without answering gets 502 upstream_unreachable"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="upstream_unreachable" and .detail=="the upstream closed without answering")'
ok $? "... audited with what happened"
out=$(run sh -c "curl -s --max-time 10 --noproxy '*' -o /dev/null -w '%{size_download}' http://allowed.test/truncated; echo \" exit \$?\"" 2>&1)
[ "$out" = "1000 exit 18" ]
ok $? "an upstream that ends inside a response: the client gets what came and a closed connection (got: $out)"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="upstream_unreachable" and .detail=="the upstream ended inside a response")'
ok $? "... audited, and the connection ends"
out=$(raw gw/3128 'GET /echo HTTP/1.1\r\nHost: allowed.test\r\n\r\n')
[ "$(status_of "$out")" = 400 ] && grep -q '^request_invalid' <<<"$out"
ok $? "an origin-form request to the explicit proxy gets 400 request_invalid"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="request_invalid" and .detail=="a proxy request needs an absolute URL" and .dst_host=="allowed.test")'
ok $? "... audited naming its Host"
out=$(raw gw/3128 'GET http://user:secret@0x7f000001/x?token=abc HTTP/1.1\r\nHost: 0x7f000001\r\n\r\n')
[ "$(status_of "$out")" = 400 ]
ok $? "a URL with user information and a hex host gets 400"
audit_has "$AUDIT" 'select(.service=="http" and .reason_code=="request_invalid" and .dst_host=="0x7f000001")'
ok $? "... audited naming the host, without the user information"
! grep -q 'secret\|token=abc' "$AUDIT"
ok $? "... which appears nowhere in the audit log"
out=$(raw gw/3128 'GET https://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n')
[ "$(status_of "$out")" = 400 ]
ok $? "an https URL without CONNECT gets 400"
out=$(raw gw/3128 'GET http://allowed.test/echo HTTP/1.1\r\nHost: allowed.test\r\n\r\nCONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n')
[ "$(statuses "$out")" = "200 400" ]
ok $? "CONNECT after a forwarded request on the same connection gets 400 (got: $(statuses "$out"))"

"$CTL" stats --json >/dev/null
gw_stop
ok $? "crgw exits 0 on SIGTERM (sanitizer builds: LeakSanitizer found nothing)"
if [ "$TAP_FAILED" -gt 0 ]; then
	diag "crgw log:" "$(tail -20 "$T/crgw.log")"
fi
tap_done
