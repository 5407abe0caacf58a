/* SPDX-License-Identifier: Apache-2.0 */
/* crgw-ctl image pull|import|ls|inspect|rm|rootfs: the image store of libcrgw-image (docs/images.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crgw/image.h"
#include "crgw/limits.h"
#include "crgw/policy_diff.h"
#include "ctl.h"

static const char image_usage[] =
	"usage: crgw-ctl image pull [OPTIONS] HOST/NAME[:TAG]@sha256:HEX\n"
	"                                     pull a digest-pinned image and make its ext4 root file system\n"
	"       crgw-ctl image pull --resolve [OPTIONS] HOST/NAME:TAG\n"
	"                                     print the reference pinned to the digest the registry serves\n"
	"       crgw-ctl image import [--json] [--guest FILE] [--max-bytes SIZE] TARBALL\n"
	"                                     an image from a root file system tarball (tar, .gz, .zst)\n"
	"       crgw-ctl image ls [--json]      the images in the store, oldest first\n"
	"       crgw-ctl image inspect IMAGE    an image's record (JSON): config, layers, sizes\n"
	"       crgw-ctl image rootfs IMAGE     the path of its ext4 root file system\n"
	"       crgw-ctl image rm IMAGE...      remove images, and the blobs no other image uses\n"
	"\n"
	"IMAGE is an id (sha256:HEX) or 12 or more of its hex digits.\n"
	"Options:\n"
	"  --store DIR              the image store (default $CRGW_IMAGE_STORE, else " CRGW_IMAGE_STORE_DEFAULT ")\n"
	"  --json                   pull, import: progress events as JSON lines on stdout; ls: JSON\n"
	"  --ca-file FILE           PEM certificates to verify the registry (and its token endpoint) with\n"
	"  --registry-mirror URL    pull through the gateway's OCI mediation, e.g.\n"
	"                           http://GATEWAY:8170/registry/oci (the gateway fetches tokens upstream)\n"
	"  --username USER          credentials for the registry's token endpoint, with\n"
	"  --password-file FILE     a file holding the password (one line)\n"
	"  --guest FILE             inject FILE as /sbin/crgw-guest (0755; default $CRGW_GUEST, else none)\n"
	"  --max-bytes SIZE         refuse images that unpack to more than SIZE (default 16G); an import\n"
	"                           stops copying a tarball past SIZE plus a quarter and 64 MiB\n";

struct ui {
	bool json, tty;
	unsigned width;
};

static void human(uint64_t b, char *buf, size_t n)
{
	cache_human((unsigned long long)b, buf, n);
}

static void short_digest(const char *d, char *out, size_t n)
{
	snprintf(out, n, "%.19s", d ? d : "");
}

static void on_progress(const struct crgw_image_progress *p, void *arg)
{
	static const char *const names[] = { "manifest", "blob", "blob_done", "apply", "write", "done" };
	struct ui *u = arg;
	char a[32], b[32], d[32];

	if (u->json) {
		json_t *j = json_pack("{s:s,s:s?}", "event", names[p->ev], "digest", p->digest);

		if (p->ev == CRGW_IMAGE_EV_BLOB || p->ev == CRGW_IMAGE_EV_BLOB_DONE || p->ev == CRGW_IMAGE_EV_MANIFEST) {
			json_object_set_new(j, "bytes", json_integer((json_int_t)p->bytes));
			json_object_set_new(j, "total", json_integer((json_int_t)p->total));
		}
		if (p->count) {
			json_object_set_new(j, "index", json_integer(p->index));
			json_object_set_new(j, "count", json_integer(p->count));
		}
		if (p->ev == CRGW_IMAGE_EV_BLOB_DONE || p->ev == CRGW_IMAGE_EV_DONE)
			json_object_set_new(j, "cached", json_boolean(p->cached));
		if (p->ev == CRGW_IMAGE_EV_BLOB_DONE && p->resumed)
			json_object_set_new(j, "resumed", json_integer((json_int_t)p->resumed));
		if (p->ev == CRGW_IMAGE_EV_WRITE)
			json_object_set_new(j, "content_bytes", json_integer((json_int_t)p->total));
		char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);

		if (s)
			printf("%s\n", s);
		fflush(stdout);
		free(s);
		json_decref(j);
		return;
	}
	if (!u->tty)
		return;
	short_digest(p->digest, d, sizeof(d));
	switch (p->ev) {
	case CRGW_IMAGE_EV_BLOB:
	case CRGW_IMAGE_EV_BLOB_DONE: {
		unsigned fill = p->total ? (unsigned)(p->bytes * 30 / p->total) : 30;
		char bar[31];

		memset(bar, '#', fill);
		memset(bar + fill, '-', 30 - fill);
		bar[30] = 0;
		human(p->bytes, a, sizeof(a));
		human(p->total, b, sizeof(b));
		fprintf(stderr, "\r\033[Kblob %u/%u %s [%s] %s / %s%s", p->index, p->count, d, bar, a, b,
			p->ev == CRGW_IMAGE_EV_BLOB_DONE ? (p->cached ? " (had it)\n" : " ok\n") : "");
		break;
	}
	case CRGW_IMAGE_EV_APPLY:
		fprintf(stderr, "\r\033[Kapplying layer %u/%u %s", p->index, p->count, d);
		break;
	case CRGW_IMAGE_EV_WRITE:
		human(p->total, a, sizeof(a));
		fprintf(stderr, "\r\033[Kwriting ext4 (%s of files)", a);
		break;
	case CRGW_IMAGE_EV_DONE:
		fprintf(stderr, "\r\033[K");
		break;
	default:
		break;
	}
}

/* Reads the first line of `path` into a new buffer (wiped and freed by the caller). */
static char *read_secret(const char *path)
{
	char *buf = calloc(1, 4097);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	n = read(fd, buf, 4096);
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	buf[strcspn(buf, "\r\n")] = 0;
	return buf;
}

/*
 * `key` of record `r` fit for a terminal: an import's reference is the tarball's path, which may hold line
 * breaks and escape sequences that would forge lines or retitle the terminal, so controls show as '?'.
 */
static const char *shown(json_t *r, const char *key, char *buf, size_t size)
{
	const char *v = json_string_value(json_object_get(r, key));

	return v ? crgw_audit_text_safe(buf, size, v, json_string_length(json_object_get(r, key))) : "-";
}

static void print_record_line(json_t *r)
{
	char size[32], id[CRGW_IMAGE_ID_LEN + 8], when[64], ref[4200];

	cache_human((unsigned long long)json_integer_value(json_object_get(r, "rootfs_bytes")), size, sizeof(size));
	printf("%-71s %10s  %-20s  %s\n", shown(r, "id", id, sizeof(id)), size, shown(r, "created", when, sizeof(when)),
	       json_object_get(r, "error") ? "(image.json is unreadable)" : shown(r, "reference", ref, sizeof(ref)));
}

int cmd_image(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "resolve", no_argument, NULL, 'r' },
		{ "ca-file", required_argument, NULL, 'c' },
		{ "registry-mirror", required_argument, NULL, 'm' },
		{ "username", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "guest", required_argument, NULL, 'g' },
		{ "max-bytes", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sub = argc >= 2 ? argv[1] : "", *store_dir = getenv("CRGW_IMAGE_STORE"), *pwfile = NULL;
	bool store_flag = false;
	struct crgw_image_opts o = { 0 };
	struct crgw_image_limits lim;
	struct crgw_image_store *s = NULL;
	struct ui u = { 0 };
	char err[1024], id[CRGW_IMAGE_ID_LEN], *password = NULL;
	bool resolve = false;
	int c, rc = CTL_EXIT_ERROR;

	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		fputs(image_usage, stdout);
		return CTL_EXIT_OK;
	}
	if (strcmp(sub, "pull") && strcmp(sub, "import") && strcmp(sub, "ls") && strcmp(sub, "inspect") &&
	    strcmp(sub, "rm") && strcmp(sub, "rootfs")) {
		fputs(image_usage, stderr);
		return CTL_EXIT_ERROR;
	}
	crgw_image_limits_default(&lim);
	o.limits = &lim;
	o.guest = getenv("CRGW_GUEST");
	if (o.guest && !*o.guest)
		o.guest = NULL;
	optind = 1;
	while ((c = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': store_dir = optarg; store_flag = true; break;
		case 'j': u.json = true; break;
		case 'r': resolve = true; break;
		case 'c': o.ca_file = optarg; break;
		case 'm': o.mirror = optarg; break;
		case 'u': o.username = optarg; break;
		case 'p': pwfile = optarg; break;
		case 'g': o.guest = *optarg ? optarg : NULL; break;
		case 'b':
			if (crgw_size_parse(optarg, &lim.max_bytes) || !lim.max_bytes) {
				fprintf(stderr, "crgw-ctl: --max-bytes wants a size such as 512M or 16G\n");
				return CTL_EXIT_ERROR;
			}
			break;
		case 'h': fputs(image_usage, stdout); return CTL_EXIT_OK;
		default: fputs(image_usage, stderr); return CTL_EXIT_ERROR;
		}
	}
	argc -= 1 + optind;
	argv += 1 + optind;
	if ((!strcmp(sub, "ls") && argc) || (strcmp(sub, "ls") && strcmp(sub, "rm") && argc != 1) ||
	    (!strcmp(sub, "rm") && !argc) || (resolve && strcmp(sub, "pull")) || (!o.username != !pwfile)) {
		fputs(image_usage, stderr);
		return CTL_EXIT_ERROR;
	}
	/*
	 * An empty --store is a mistake (an unset variable in a script), never a request for the system store:
	 * `image rm --store "$DIR"` must not act on /var/lib/crgw/images when DIR is empty.
	 */
	if (store_flag && !*store_dir) {
		fprintf(stderr, "crgw-ctl: image: --store wants a directory, not an empty string\n");
		return CTL_EXIT_ERROR;
	}
	if (pwfile) {
		if (!(password = read_secret(pwfile))) {
			fprintf(stderr, "crgw-ctl: %s: %s\n", pwfile, strerror(errno));
			return CTL_EXIT_ERROR;
		}
		o.password = password;
	}
	u.tty = isatty(STDERR_FILENO);
	o.progress = on_progress;
	o.progress_arg = &u;

	if (resolve) {
		char pinned[2048];

		if (crgw_image_resolve(argv[0], &o, pinned, sizeof(pinned), err, sizeof(err)))
			fprintf(stderr, "crgw-ctl: image pull --resolve: %s\n", err);
		else {
			printf("%s\n", pinned);
			rc = CTL_EXIT_OK;
		}
		goto out;
	}
	if (!store_dir || !*store_dir)
		store_dir = CRGW_IMAGE_STORE_DEFAULT;
	if (crgw_image_store_open(store_dir, &s, err, sizeof(err))) {
		fprintf(stderr, "crgw-ctl: image store: %s\n", err);
		goto out;
	}
	if (!strcmp(sub, "pull") || !strcmp(sub, "import")) {
		/* An import records the tarball's absolute path, which says more later than a relative one. */
		char *abs = strcmp(sub, "import") ? NULL : realpath(argv[0], NULL);
		int e = !strcmp(sub, "pull") ? crgw_image_pull(s, argv[0], &o, id, err, sizeof(err))
					     : crgw_image_import(s, abs ? abs : argv[0], &o, id, err, sizeof(err));

		free(abs);

		if (u.tty && !u.json)
			fprintf(stderr, "\r\033[K");
		if (e) {
			if (u.json) {
				json_t *j = json_pack("{s:s,s:s}", "event", "error", "error", err);
				char *t = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);

				printf("%s\n", t ? t : "{}");
				free(t);
				json_decref(j);
			}
			fprintf(stderr, "crgw-ctl: image %s: %s\n", sub, err);
			goto out;
		}
		if (!u.json)
			printf("%s\n", id);
		rc = CTL_EXIT_OK;
	} else if (!strcmp(sub, "ls")) {
		json_t *all, *r;
		size_t i;

		if (crgw_image_list(s, &all, err, sizeof(err))) {
			fprintf(stderr, "crgw-ctl: image ls: %s\n", err);
			goto out;
		}
		if (u.json) {
			char *t = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

			printf("%s\n", t ? t : "[]");
			free(t);
		} else {
			printf("%-71s %10s  %-20s  %s\n", "ID", "SIZE", "CREATED", "REFERENCE");
			json_array_foreach(all, i, r)
				print_record_line(r);
		}
		json_decref(all);
		rc = CTL_EXIT_OK;
	} else if (!strcmp(sub, "inspect")) {
		json_t *r;
		char *t;

		if (crgw_image_inspect(s, argv[0], &r, err, sizeof(err))) {
			fprintf(stderr, "crgw-ctl: image inspect: %s\n", err);
			goto out;
		}
		t = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS);
		printf("%s\n", t ? t : "{}");
		free(t);
		json_decref(r);
		rc = CTL_EXIT_OK;
	} else if (!strcmp(sub, "rootfs")) {
		char path[4400];

		if (crgw_image_rootfs(s, argv[0], path, sizeof(path), err, sizeof(err))) {
			fprintf(stderr, "crgw-ctl: image rootfs: %s\n", err);
			goto out;
		}
		printf("%s\n", path);
		rc = CTL_EXIT_OK;
	} else {
		rc = CTL_EXIT_OK;
		for (int i = 0; i < argc; i++) {
			if (crgw_image_remove(s, argv[i], err, sizeof(err))) {
				fprintf(stderr, "crgw-ctl: image rm: %s\n", err);
				rc = CTL_EXIT_ERROR;
			}
		}
	}
out:
	crgw_image_store_close(s);
	if (password) {
		OPENSSL_cleanse(password, 4097);
		free(password);
	}
	return rc;
}
