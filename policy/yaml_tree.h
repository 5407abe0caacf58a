/* SPDX-License-Identifier: Apache-2.0 */
/* A bounded YAML document tree with source positions, built from libyaml's event stream. */
#ifndef CRGW_POLICY_YAML_TREE_H
#define CRGW_POLICY_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

/* Policy files are small; these bounds keep hostile ones from costing more than a small one. */
#define YTREE_MAX_DEPTH 32
#define YTREE_MAX_NODES 100000

enum ynode_type {
	YNODE_SCALAR,
	YNODE_SEQ,
	YNODE_MAP,
};

struct ynode {
	enum ynode_type type;
	unsigned line;   /* 1-based */
	unsigned column; /* 1-based */
	/* scalar */
	char *value;
	size_t len;
	bool plain; /* unquoted, so it may be a number, a boolean or null */
	/* sequence: children; map: children[2i] is a key, children[2i + 1] its value */
	struct ynode **children;
	size_t nchildren;
	size_t capacity;
};

struct ytree_error {
	unsigned line;
	unsigned column;
	char message[256];
};

/*
 * Parses `len` bytes (borrowed) holding exactly one YAML document into a tree (returned in `*root`,
 * freed with ytree_free). Refuses anchors, aliases and explicit tags, duplicate mapping keys, non-scalar
 * keys, more than one document, and input beyond the bounds above. Returns 0, -EINVAL with `err`
 * filled, or -ENOMEM.
 */
int ytree_parse(const char *buf, size_t len, struct ynode **root, struct ytree_error *err);

void ytree_free(struct ynode *root);

/* The value of `key` in map `map`, or NULL. Borrowed from the tree. */
struct ynode *ytree_get(const struct ynode *map, const char *key);

#endif
