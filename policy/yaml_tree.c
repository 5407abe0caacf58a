/* SPDX-License-Identifier: Apache-2.0 */
/* Builds a small, bounded tree from libyaml events so that validation can report a path and a position. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yaml_tree.h"

/* Mappings in a policy are small; the cap keeps the duplicate-key check quadratic only in a small n. */
#define YTREE_MAX_MAP_KEYS 1024

struct builder {
	struct ynode *stack[YTREE_MAX_DEPTH + 1];
	unsigned depth;
	size_t nodes;
	struct ynode *root;
	struct ytree_error *err;
};

static int set_error(struct ytree_error *err, unsigned line, unsigned column, const char *message)
{
	err->line = line;
	err->column = column;
	snprintf(err->message, sizeof(err->message), "%s", message);
	return -EINVAL;
}

static void node_free(struct ynode *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->nchildren; i++)
		node_free(n->children[i]);
	free(n->children);
	free(n->value);
	free(n);
}

void ytree_free(struct ynode *root)
{
	node_free(root);
}

static int add_child(struct ynode *parent, struct ynode *child)
{
	if (parent->nchildren == parent->capacity) {
		size_t cap = parent->capacity ? parent->capacity * 2 : 8;
		struct ynode **v = realloc(parent->children, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		parent->children = v;
		parent->capacity = cap;
	}
	parent->children[parent->nchildren++] = child;
	return 0;
}

static bool same_scalar(const struct ynode *a, const struct ynode *b)
{
	return a->len == b->len && memcmp(a->value, b->value, a->len) == 0;
}

/* Attaches a finished node to the open collection (or makes it the root), checking map-key rules. */
static int attach(struct builder *b, struct ynode *n)
{
	if (b->depth == 0) {
		b->root = n;
		return 0;
	}
	struct ynode *parent = b->stack[b->depth - 1];

	if (parent->type == YNODE_MAP && parent->nchildren % 2 == 0) {
		if (n->type != YNODE_SCALAR) {
			set_error(b->err, n->line, n->column, "mapping keys must be plain strings");
			node_free(n);
			return -EINVAL;
		}
		if (parent->nchildren / 2 >= YTREE_MAX_MAP_KEYS) {
			node_free(n);
			return set_error(b->err, parent->line, parent->column, "mapping has too many keys");
		}
		for (size_t i = 0; i < parent->nchildren; i += 2) {
			if (same_scalar(parent->children[i], n)) {
				char msg[256];

				snprintf(msg, sizeof(msg), "duplicate key '%.64s' (first at line %u)", n->value,
					 parent->children[i]->line);
				set_error(b->err, n->line, n->column, msg);
				node_free(n);
				return -EINVAL;
			}
		}
	}
	int err = add_child(parent, n);

	if (err)
		node_free(n);
	return err;
}

static struct ynode *node_new(struct builder *b, enum ynode_type type, const yaml_mark_t *mark)
{
	struct ynode *n;

	if (++b->nodes > YTREE_MAX_NODES)
		return NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->type = type;
	n->line = (unsigned)mark->line + 1;
	n->column = (unsigned)mark->column + 1;
	return n;
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
	struct ynode *n;
	unsigned line = (unsigned)ev->start_mark.line + 1, column = (unsigned)ev->start_mark.column + 1;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		return set_error(b->err, line, column, "YAML aliases are not accepted in a policy");
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.anchor)
			return set_error(b->err, line, column, "YAML anchors are not accepted in a policy");
		if (ev->data.scalar.tag)
			return set_error(b->err, line, column, "YAML tags are not accepted in a policy");
		if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length))
			return set_error(b->err, line, column, "NUL character in a string");
		n = node_new(b, YNODE_SCALAR, &ev->start_mark);
		if (!n)
			goto no_node;
		n->value = malloc(ev->data.scalar.length + 1);
		if (!n->value) {
			node_free(n);
			return -ENOMEM;
		}
		memcpy(n->value, ev->data.scalar.value, ev->data.scalar.length);
		n->value[ev->data.scalar.length] = '\0';
		n->len = ev->data.scalar.length;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		return attach(b, n);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		const yaml_char_t *anchor = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
		const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;

		if (anchor)
			return set_error(b->err, line, column, "YAML anchors are not accepted in a policy");
		if (tag)
			return set_error(b->err, line, column, "YAML tags are not accepted in a policy");
		if (b->depth >= YTREE_MAX_DEPTH)
			return set_error(b->err, line, column, "nesting deeper than 32 levels");
		n = node_new(b, seq ? YNODE_SEQ : YNODE_MAP, &ev->start_mark);
		if (!n)
			goto no_node;
		/* Attach first so the tree owns the node even if a later event fails. */
		int err = attach(b, n);

		if (err)
			return err;
		b->stack[b->depth++] = n;
		return 0;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		b->depth--;
		return 0;
	case YAML_DOCUMENT_START_EVENT:
		if (b->root)
			return set_error(b->err, line, column, "more than one YAML document in the file");
		return 0;
	default:
		return 0;
	}
no_node:
	if (b->nodes <= YTREE_MAX_NODES)
		return -ENOMEM;
	return set_error(b->err, line, column, "document has too many nodes");
}

/*
 * The line and column of byte `offset`, in characters as libyaml counts them. libyaml decodes the input
 * ahead of the scanner and reports a decoding error (invalid UTF-8, a control character) by offset only,
 * with its mark still at the start: without this, a bad byte on line 900 is reported at 1:1.
 */
static void offset_position(const char *buf, size_t len, size_t offset, unsigned *line, unsigned *column)
{
	*line = 1;
	*column = 1;
	for (size_t i = 0; i < offset && i < len; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*column = 1;
		} else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
			(*column)++;
		}
	}
}

/* Turns a failed yaml_parser_parse into `err`: the place, and libyaml's context and problem. */
static int parse_error(const yaml_parser_t *parser, const char *buf, size_t len, struct ytree_error *err)
{
	unsigned line = (unsigned)parser->problem_mark.line + 1, column = (unsigned)parser->problem_mark.column + 1;
	char msg[256];

	if (parser->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	if (parser->error == YAML_READER_ERROR)
		offset_position(buf, len, parser->problem_offset, &line, &column);
	snprintf(msg, sizeof(msg), "%s%s%s", parser->context ? parser->context : "", parser->context ? ": " : "",
		 parser->problem ? parser->problem : "syntax error");
	return set_error(err, line, column, msg);
}

int ytree_parse(const char *buf, size_t len, struct ynode **root, struct ytree_error *err)
{
	yaml_parser_t parser;
	struct builder b = { .err = err };
	int rc = 0;
	bool done = false;

	*root = NULL;
	memset(err, 0, sizeof(*err));
	/* A byte order mark some editors write: YAML allows it at the start; libyaml, told UTF-8, does not. */
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) {
		buf += 3;
		len -= 3;
	}
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

	while (!done) {
		yaml_event_t ev;

		if (!yaml_parser_parse(&parser, &ev)) {
			rc = parse_error(&parser, buf, len, err);
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		rc = on_event(&b, &ev);
		yaml_event_delete(&ev);
		if (rc)
			break;
	}
	yaml_parser_delete(&parser);

	if (rc == 0 && !b.root)
		rc = set_error(err, 1, 1, "empty document");
	if (rc) {
		node_free(b.root);
		return rc;
	}
	*root = b.root;
	return 0;
}

struct ynode *ytree_get(const struct ynode *map, const char *key)
{
	size_t klen = strlen(key);

	if (!map || map->type != YNODE_MAP)
		return NULL;
	for (size_t i = 0; i + 1 < map->nchildren; i += 2) {
		const struct ynode *k = map->children[i];

		if (k->len == klen && memcmp(k->value, key, klen) == 0)
			return map->children[i + 1];
	}
	return NULL;
}
