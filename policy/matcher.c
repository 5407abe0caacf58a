/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rule matcher. Every rule key (exact name, wildcard suffix, masked network) goes into one
 * open-addressing hash table at load time, so a decision costs one probe for the name, one or two per
 * label for wildcards, and one per distinct prefix length for addresses, whatever the number of rules;
 * nothing is allocated per decision.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "matcher.h"

/* Key tags: the first byte of every key, so names, suffixes and networks never collide. */
#define TAG_NAME 'N'
#define TAG_WILD_ONE '1'
#define TAG_WILD_MANY 'M'
#define TAG_NET4 '4'
#define TAG_NET6 '6'

#define KEY_MAX (2 + CRGW_HOST_NAME_MAX + 1)

#define RULE_GATEWAY_BLOCKED "gateway.blocked_ranges"
#define RULE_SPECIAL "gateway.special_addresses"
#define RULE_DEFAULT "sandbox.network.default"

struct slot {
	uint64_t hash;
	uint32_t key_off;
	uint16_t key_len;
	uint32_t head; /* first rule index + 1; 0 marks an empty slot */
};

struct matcher {
	struct matcher_rule *rules;
	uint32_t *next; /* next rule index + 1 with the same key, in rule order */
	size_t nrules;
	struct slot *slots;
	size_t mask;
	uint8_t *keys;
	size_t keys_len;
	uint8_t v4_prefixes[33];
	unsigned n_v4;
	uint8_t v6_prefixes[129];
	unsigned n_v6;
	bool has_wild_one;
	bool has_wild_many;
};

struct net {
	uint8_t addr[16];
	uint8_t prefix;
	uint8_t kind; /* enum crgw_host_kind */
};

struct crgw_blocklist {
	struct net *items;
	size_t count;
};

/* Addresses no name should resolve to for a sandbox (SPEC section 3): loopback, link-local (with the
 * cloud metadata address listed on its own so that only a rule for exactly it admits it),
 * unspecified, multicast, reserved, and IPv4-compatible IPv6. */
static const struct net special[] = {
	{ { 0 }, 8, CRGW_HOST_IPV4 },
	{ { 127 }, 8, CRGW_HOST_IPV4 },
	{ { 169, 254 }, 16, CRGW_HOST_IPV4 },
	{ { 169, 254, 169, 254 }, 32, CRGW_HOST_IPV4 },
	{ { 224 }, 4, CRGW_HOST_IPV4 },
	{ { 240 }, 4, CRGW_HOST_IPV4 },
	{ { 0 }, 96, CRGW_HOST_IPV6 },
	{ { 0 }, 128, CRGW_HOST_IPV6 },
	{ { [15] = 1 }, 128, CRGW_HOST_IPV6 },
	{ { 0xfe, 0x80 }, 10, CRGW_HOST_IPV6 },
	{ { 0xff }, 8, CRGW_HOST_IPV6 },
};

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_key(const uint8_t *k, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ len;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, k + i, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
		h ^= h >> 29;
	}
	uint64_t tail = 0;

	memcpy(&tail, k + i, len - i);
	return mix(h ^ tail);
}

static size_t net_key(uint8_t *key, const uint8_t *addr, enum crgw_host_kind kind, unsigned prefix)
{
	size_t bytes = kind == CRGW_HOST_IPV4 ? 4 : 16;

	key[0] = kind == CRGW_HOST_IPV4 ? TAG_NET4 : TAG_NET6;
	key[1] = (uint8_t)prefix;
	memcpy(key + 2, addr, bytes);
	for (unsigned bit = prefix; bit < bytes * 8; bit++)
		key[2 + bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
	return 2 + bytes;
}

static size_t name_key(uint8_t *key, uint8_t tag, const char *name, size_t len)
{
	key[0] = tag;
	memcpy(key + 1, name, len);
	return 1 + len;
}

static size_t rule_key(uint8_t *key, const struct matcher_rule *r)
{
	const struct pattern *p = &r->pattern;

	switch (p->kind) {
	case PATTERN_NAME:
		return name_key(key, TAG_NAME, p->host.text, p->host.len);
	case PATTERN_WILD_ONE:
		return name_key(key, TAG_WILD_ONE, p->host.text, p->host.len);
	case PATTERN_WILD_MANY:
		return name_key(key, TAG_WILD_MANY, p->host.text, p->host.len);
	case PATTERN_CIDR:
		break;
	}
	return net_key(key, p->host.addr, p->host.kind, p->prefix);
}

static uint32_t lookup(const struct matcher *m, const uint8_t *key, size_t len)
{
	uint64_t h = hash_key(key, len);

	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		const struct slot *s = &m->slots[i];

		if (!s->head)
			return 0;
		if (s->hash == h && s->key_len == len && memcmp(m->keys + s->key_off, key, len) == 0)
			return s->head;
	}
}

void matcher_free(struct matcher *m)
{
	if (!m)
		return;
	free(m->rules);
	free(m->next);
	free(m->slots);
	free(m->keys);
	free(m);
}

static void note_prefix(uint8_t *list, unsigned *n, unsigned prefix)
{
	for (unsigned i = 0; i < *n; i++)
		if (list[i] == prefix)
			return;
	list[(*n)++] = (uint8_t)prefix;
	/* Longest first: the first network that matches is the most specific one. */
	for (unsigned i = *n - 1; i > 0 && list[i] > list[i - 1]; i--) {
		uint8_t t = list[i];

		list[i] = list[i - 1];
		list[i - 1] = t;
	}
}

int matcher_build(const struct matcher_rule *rules, size_t nrules, struct matcher **out)
{
	struct matcher *m = calloc(1, sizeof(*m));
	size_t cap = 16;
	int err = -ENOMEM;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	if (nrules > UINT32_MAX / 4) {
		err = -E2BIG;
		goto out;
	}
	while (cap < nrules * 2)
		cap *= 2;
	m->mask = cap - 1;
	m->nrules = nrules;
	m->rules = calloc(nrules ? nrules : 1, sizeof(*m->rules));
	m->next = calloc(nrules ? nrules : 1, sizeof(*m->next));
	m->slots = calloc(cap, sizeof(*m->slots));
	m->keys = malloc(nrules * KEY_MAX + 1);
	if (!m->rules || !m->next || !m->slots || !m->keys)
		goto out;
	memcpy(m->rules, rules, nrules * sizeof(*rules));

	/* Walk backwards and prepend, so every chain lists its rules in array order. */
	for (size_t r = nrules; r-- > 0;) {
		const struct matcher_rule *rule = &m->rules[r];
		uint8_t key[KEY_MAX];
		size_t len = rule_key(key, rule);
		uint64_t h = hash_key(key, len);
		size_t i = h & m->mask;

		for (;; i = (i + 1) & m->mask) {
			struct slot *s = &m->slots[i];

			if (!s->head) {
				s->hash = h;
				s->key_off = (uint32_t)m->keys_len;
				s->key_len = (uint16_t)len;
				memcpy(m->keys + m->keys_len, key, len);
				m->keys_len += len;
				break;
			}
			if (s->hash == h && s->key_len == len && memcmp(m->keys + s->key_off, key, len) == 0)
				break;
		}
		m->next[r] = m->slots[i].head;
		m->slots[i].head = (uint32_t)r + 1;

		switch (rule->pattern.kind) {
		case PATTERN_WILD_ONE:
			m->has_wild_one = true;
			break;
		case PATTERN_WILD_MANY:
			m->has_wild_many = true;
			break;
		case PATTERN_CIDR:
			if (rule->pattern.host.kind == CRGW_HOST_IPV4)
				note_prefix(m->v4_prefixes, &m->n_v4, rule->pattern.prefix);
			else
				note_prefix(m->v6_prefixes, &m->n_v6, rule->pattern.prefix);
			break;
		case PATTERN_NAME:
			break;
		}
	}
	*out = m;
	return 0;
out:
	matcher_free(m);
	return err;
}

static bool port_in(const struct matcher_rule *r, uint16_t port)
{
	size_t lo = 0, hi = r->nports;

	if (r->nports == 0)
		return true;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r->ports[mid] == port)
			return true;
		if (r->ports[mid] < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* What one decision has found so far; the first match of each kind is the most specific one. */
struct scan {
	const struct matcher_rule *deny;
	const struct matcher_rule *allow;
	unsigned allow_prefix;
	bool host_seen; /* some allow rule names the host, whatever its ports */
};

static void scan_chain(const struct matcher *m, uint32_t head, uint16_t port, unsigned prefix, struct scan *s)
{
	for (uint32_t i = head; i; i = m->next[i - 1]) {
		const struct matcher_rule *r = &m->rules[i - 1];

		/* Port 0 asks about the name itself (DNS): any allow admits it, only an all-port deny refuses. */
		if (r->deny) {
			if (!s->deny && port_in(r, port))
				s->deny = r;
			continue;
		}
		s->host_seen = true;
		if (!s->allow && (port == 0 || port_in(r, port))) {
			s->allow = r;
			s->allow_prefix = prefix;
		}
	}
}

static void scan_networks(const struct matcher *m, const struct crgw_host *h, uint16_t port, struct scan *s)
{
	bool v4 = h->kind == CRGW_HOST_IPV4;
	const uint8_t *prefixes = v4 ? m->v4_prefixes : m->v6_prefixes;
	unsigned n = v4 ? m->n_v4 : m->n_v6;
	uint8_t key[KEY_MAX];

	for (unsigned i = 0; i < n; i++) {
		size_t len = net_key(key, h->addr, h->kind, prefixes[i]);

		scan_chain(m, lookup(m, key, len), port, prefixes[i], s);
	}
}

static void scan_name(const struct matcher *m, const struct crgw_host *h, uint16_t port, struct scan *s)
{
	uint8_t key[KEY_MAX];
	size_t len = name_key(key, TAG_NAME, h->text, h->len);
	unsigned stripped = 0;

	scan_chain(m, lookup(m, key, len), port, 0, s);
	if (!m->has_wild_one && !m->has_wild_many)
		return;
	/* Suffixes from the longest: the closest wildcard is the most specific one. */
	for (size_t i = 0; i < h->len; i++) {
		if (h->text[i] != '.')
			continue;
		stripped++;
		const char *suffix = h->text + i + 1;
		size_t slen = h->len - i - 1;

		if (stripped == 1 && m->has_wild_one) {
			len = name_key(key, TAG_WILD_ONE, suffix, slen);
			scan_chain(m, lookup(m, key, len), port, 0, s);
		}
		if (m->has_wild_many) {
			len = name_key(key, TAG_WILD_MANY, suffix, slen);
			scan_chain(m, lookup(m, key, len), port, 0, s);
		}
	}
}

static bool in_net(const struct net *n, const struct crgw_host *h)
{
	return n->kind == h->kind && prefix_equal(h->addr, n->addr, n->prefix);
}

/* The prefix length of the most specific special range holding `h`, or -1. */
static int special_prefix(const struct crgw_host *h)
{
	int best = -1;

	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
		if (in_net(&special[i], h) && (int)special[i].prefix > best)
			best = special[i].prefix;
	return best;
}

static void net_pattern(const struct net *n, struct pattern *out)
{
	memset(out, 0, sizeof(*out));
	out->kind = PATTERN_CIDR;
	out->host.kind = n->kind;
	memcpy(out->host.addr, n->addr, sizeof(n->addr));
	out->prefix = n->prefix;
}

bool matcher_special_range(size_t i, struct pattern *out)
{
	if (i >= sizeof(special) / sizeof(special[0]))
		return false;
	net_pattern(&special[i], out);
	return true;
}

bool matcher_blocked_range(const struct crgw_blocklist *blocked, size_t i, struct pattern *out)
{
	if (!blocked || i >= blocked->count)
		return false;
	net_pattern(&blocked->items[i], out);
	return true;
}

static bool is_blocked(const struct crgw_blocklist *b, const struct crgw_host *h)
{
	for (size_t i = 0; b && i < b->count; i++)
		if (in_net(&b->items[i], h))
			return true;
	return false;
}

static void decide(struct crgw_decision *out, bool allow, enum crgw_reason reason, const char *rule)
{
	out->allow = allow;
	out->reason = allow ? CRGW_REASON_NONE : reason;
	out->rule = rule;
}

/*
 * The address checks shared by IP literals and resolved addresses. Returns true when they decided.
 * A special address needs an allow rule at least as specific as its range, so "0.0.0.0/0" never opens
 * loopback or the metadata service by accident.
 */
static bool address_checks(const struct crgw_blocklist *blocked, const struct crgw_host *h,
			   const struct scan *s, enum crgw_reason deny_reason, struct crgw_decision *out)
{
	if (is_blocked(blocked, h)) {
		decide(out, false, CRGW_REASON_PRIVATE_ADDRESS_BLOCKED, RULE_GATEWAY_BLOCKED);
		return true;
	}
	if (s->deny) {
		decide(out, false, deny_reason, s->deny->origin);
		return true;
	}
	int sp = special_prefix(h);

	if (sp >= 0 && !(s->allow && s->allow_prefix >= (unsigned)sp)) {
		decide(out, false, CRGW_REASON_PRIVATE_ADDRESS_BLOCKED, RULE_SPECIAL);
		return true;
	}
	return false;
}

/*
 * The checks an IPv4 address carried inside an IPv6 one must pass as well (docs/policy.md): the gateway's
 * blocked ranges, CIDR deny rules for IPv4, and the special ranges, which an IPv4 allow rule at least as
 * specific still opens (as it would for the IPv4 address itself). Returns true when they refused.
 */
static bool embedded_checks(const struct matcher *m, const struct crgw_blocklist *blocked,
			    const struct crgw_host *v4, uint16_t port, enum crgw_reason deny_reason,
			    struct crgw_decision *out)
{
	struct scan s = { 0 };

	scan_networks(m, v4, port, &s);
	return address_checks(blocked, v4, &s, deny_reason, out);
}

/*
 * Sorts out an IP host before it is matched: an IPv4-mapped address is the IPv4 address (a socket
 * connects to it over IPv4), so it is matched as that, whoever built the host; any other form that
 * carries an IPv4 address is matched as itself and returns true with `v4` set, for embedded_checks.
 */
static bool carries_ipv4(const struct crgw_host **h, struct crgw_host *v4)
{
	enum crgw_embed form = crgw_host_embedded_ipv4(*h, v4);

	if (form == CRGW_EMBED_MAPPED) {
		*h = v4;
		return false;
	}
	return form != CRGW_EMBED_NONE;
}

void matcher_decide(const struct matcher *m, bool default_allow, const struct crgw_blocklist *blocked,
		    const struct crgw_host *host, uint16_t port, struct crgw_decision *out)
{
	struct scan s = { 0 };
	enum crgw_reason not_allowed = CRGW_REASON_HOST_NOT_ALLOWED;

	if (host->kind == CRGW_HOST_NAME) {
		scan_name(m, host, port, &s);
		if (s.deny) {
			decide(out, false, CRGW_REASON_HOST_NOT_ALLOWED, s.deny->origin);
			return;
		}
	} else {
		struct crgw_host v4;
		bool embedded = carries_ipv4(&host, &v4);

		not_allowed = CRGW_REASON_IP_LITERAL_NOT_ALLOWED;
		scan_networks(m, host, port, &s);
		if (address_checks(blocked, host, &s, not_allowed, out))
			return;
		if (embedded && embedded_checks(m, blocked, &v4, port, not_allowed, out))
			return;
	}
	if (s.allow)
		decide(out, true, CRGW_REASON_NONE, s.allow->origin);
	else if (default_allow)
		decide(out, true, CRGW_REASON_NONE, RULE_DEFAULT);
	else
		decide(out, false, s.host_seen ? CRGW_REASON_PORT_NOT_ALLOWED : not_allowed, RULE_DEFAULT);
}

void matcher_check_address(const struct matcher *m, const struct crgw_blocklist *blocked,
			   const struct crgw_host *addr, uint16_t port, struct crgw_decision *out)
{
	struct scan s = { 0 };
	struct crgw_host v4;
	bool embedded;

	if (addr->kind == CRGW_HOST_NAME) {
		decide(out, false, CRGW_REASON_PRIVATE_ADDRESS_BLOCKED, RULE_SPECIAL);
		return;
	}
	embedded = carries_ipv4(&addr, &v4);
	scan_networks(m, addr, port, &s);
	if (address_checks(blocked, addr, &s, CRGW_REASON_HOST_NOT_ALLOWED, out))
		return;
	if (embedded && embedded_checks(m, blocked, &v4, port, CRGW_REASON_HOST_NOT_ALLOWED, out))
		return;
	decide(out, true, CRGW_REASON_NONE, s.allow ? s.allow->origin : NULL);
}

/* ---- blocklist ---------------------------------------------------------------------------------- */

struct crgw_blocklist *crgw_blocklist_new(void)
{
	return calloc(1, sizeof(struct crgw_blocklist));
}

int crgw_blocklist_add(struct crgw_blocklist *list, const char *cidr, const char **why)
{
	struct pattern p;
	struct net *v;

	if (pattern_parse(cidr, strlen(cidr), &p, why) != 0)
		return -EINVAL;
	if (p.kind != PATTERN_CIDR) {
		if (why)
			*why = "a name, not an address";
		return -EINVAL;
	}
	v = realloc(list->items, (list->count + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	list->items = v;
	memcpy(v[list->count].addr, p.host.addr, 16);
	v[list->count].prefix = (uint8_t)p.prefix;
	v[list->count].kind = (uint8_t)p.host.kind;
	list->count++;
	return 0;
}

void crgw_blocklist_free(struct crgw_blocklist *list)
{
	if (!list)
		return;
	free(list->items);
	free(list);
}
