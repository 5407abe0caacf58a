/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DNS answer cache: an answer of up to CRGW_DNS_CACHE_ADDRS addresses comes back whole, an answer
 * cut to that limit keeps the count of what was left out, and replacing an entry with a shorter or
 * longer answer (entries are sized to their answer) gives back exactly the new one.
 */
#include <stdio.h>
#include <string.h>

#include "dns_cache.h"
#include "dnsmsg.h"
#include "sandbox.h"
#include "tap.h"

static struct crgw_dns_cached answer(unsigned n, unsigned omitted, uint8_t tag)
{
	struct crgw_dns_cached e;

	memset(&e, 0xee, sizeof(e)); /* slots past naddrs hold garbage, as on a worker's stack */
	e.rcode = CRGW_DNS_NOERROR;
	e.expiry = crgw_monotonic_s() + 300;
	e.naddrs = n;
	e.omitted = omitted;
	for (unsigned i = 0; i < n; i++) {
		memset(e.addrs[i], 0, 16);
		e.addrs[i][0] = 203;
		e.addrs[i][1] = tag;
		e.addrs[i][2] = (uint8_t)(i >> 8);
		e.addrs[i][3] = (uint8_t)i;
	}
	return e;
}

static bool same(const struct crgw_dns_cached *a, const struct crgw_dns_cached *b)
{
	return a->rcode == b->rcode && a->expiry == b->expiry && a->naddrs == b->naddrs && a->omitted == b->omitted &&
	       memcmp(a->addrs, b->addrs, a->naddrs * sizeof(a->addrs[0])) == 0;
}

int main(void)
{
	struct crgw_dns_cached in, out;
	struct crgw_dns_cache_stats st;
	bool got;

	crgw_dns_cache_init(1024);
	tap_result(CRGW_DNS_CACHE_ADDRS >= 64, "an answer keeps up to %u addresses", CRGW_DNS_CACHE_ADDRS);
	tap_result(CRGW_BINDING_ADDRS >= CRGW_DNS_CACHE_ADDRS, "a binding holds a whole cached answer (%u >= %u)",
		   CRGW_BINDING_ADDRS, CRGW_DNS_CACHE_ADDRS);

	in = answer(CRGW_DNS_CACHE_ADDRS, 6, 1);
	crgw_dns_cache_put("wide.test", CRGW_DNS_A, &in);
	got = crgw_dns_cache_get("wide.test", CRGW_DNS_A, &out);
	tap_result(got && same(&in, &out), "a full answer comes back whole, with the count of addresses left out (%u)",
		   out.omitted);
	tap_result(!crgw_dns_cache_get("wide.test", CRGW_DNS_AAAA, &out), "the other type is a separate entry");

	in = answer(2, 0, 2);
	crgw_dns_cache_put("wide.test", CRGW_DNS_A, &in);
	got = crgw_dns_cache_get("wide.test", CRGW_DNS_A, &out);
	tap_result(got && same(&in, &out) && out.omitted == 0,
		   "a shorter answer replaces it exactly (%u addresses, none left out)", out.naddrs);
	in = answer(40, 0, 3);
	crgw_dns_cache_put("wide.test", CRGW_DNS_A, &in);
	got = crgw_dns_cache_get("wide.test", CRGW_DNS_A, &out);
	tap_result(got && same(&in, &out), "a longer one replaces that (%u addresses)", out.naddrs);
	crgw_dns_cache_get_stats(&st);
	tap_result(st.entries == 1 && st.inserts == 1, "replacing keeps one entry (%u entries, %llu inserts)",
		   st.entries, (unsigned long long)st.inserts);

	/* A caller that claims more than the cache holds is cut, and the cut is counted, never overrun. */
	in = answer(CRGW_DNS_CACHE_ADDRS, 1, 4);
	in.naddrs = CRGW_DNS_CACHE_ADDRS + 3;
	crgw_dns_cache_put("over.test", CRGW_DNS_A, &in);
	got = crgw_dns_cache_get("over.test", CRGW_DNS_A, &out);
	tap_result(got && out.naddrs == CRGW_DNS_CACHE_ADDRS && out.omitted == 4,
		   "an answer over the limit is cut to %u with the rest counted (%u)", out.naddrs, out.omitted);

	in = answer(0, 0, 5);
	in.rcode = CRGW_DNS_NXDOMAIN;
	crgw_dns_cache_put("gone.test", CRGW_DNS_AAAA, &in);
	got = crgw_dns_cache_get("gone.test", CRGW_DNS_AAAA, &out);
	tap_result(got && out.rcode == CRGW_DNS_NXDOMAIN && out.naddrs == 0, "a negative answer has no addresses");

	in = answer(3, 0, 6);
	in.expiry = crgw_monotonic_s() - 1;
	crgw_dns_cache_put("old.test", CRGW_DNS_A, &in);
	tap_result(!crgw_dns_cache_get("old.test", CRGW_DNS_A, &out), "an expired entry is a miss");

	/* Many entries in a small cache: eviction frees what it takes (LeakSanitizer checks at exit). */
	crgw_dns_cache_fini();
	crgw_dns_cache_init(64);
	for (unsigned i = 0; i < 5000; i++) {
		char name[32];

		snprintf(name, sizeof(name), "n%u.test", i);
		in = answer(1 + i % CRGW_DNS_CACHE_ADDRS, 0, 7);
		crgw_dns_cache_put(name, CRGW_DNS_A, &in);
	}
	crgw_dns_cache_get_stats(&st);
	tap_result(st.entries <= 64 + 64 && st.evictions > 0, "a bounded cache evicts (%u entries, %llu evictions)",
		   st.entries, (unsigned long long)st.evictions);
	in = answer(1 + 4999 % CRGW_DNS_CACHE_ADDRS, 0, 7);
	got = crgw_dns_cache_get("n4999.test", CRGW_DNS_A, &out);
	tap_result(got && same(&in, &out), "the latest entry survives eviction intact");
	crgw_dns_cache_fini();
	return tap_done();
}
