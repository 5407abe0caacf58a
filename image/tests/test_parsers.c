/* SPDX-License-Identifier: Apache-2.0 */
/* The image module's own parsers: references and image configs, good and refused. */
#include <errno.h>
#include <string.h>

#include "image_priv.h"
#include "tap.h"

#define D "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void ref_ok(const char *s, const char *host, const char *name, const char *tag, const char *digest)
{
	struct img_ref r;
	const char *why = NULL;
	int rc = img_ref_parse(s, &r, &why);

	tap_result(rc == 0 && !strcmp(r.host, host) && !strcmp(r.name, name) && !strcmp(r.tag, tag) &&
			   !strcmp(r.digest, digest),
		   "ref %s (%s)", s, why ? why : "ok");
}

static void ref_bad(const char *s)
{
	struct img_ref r;
	const char *why = NULL;
	int rc = img_ref_parse(s, &r, &why);

	tap_result(rc == -EINVAL && why, "ref %s refused: %s", s, why ? why : "accepted");
}

static void cfg(const char *doc, size_t nlayers, int want, const char *what)
{
	json_t *sum = NULL;
	const char *why = NULL;
	int rc = img_config_parse(doc, strlen(doc), nlayers, &sum, &why);

	tap_result(rc == want, "config %s (%d, %s)", what, rc, why ? why : "ok");
	json_decref(sum);
}

int main(void)
{
	ref_ok("oci.test/crgw/hello@" D, "oci.test", "crgw/hello", "", D);
	ref_ok("oci.test:5000/a/b/c:1.0@" D, "oci.test:5000", "a/b/c", "1.0", D);
	ref_ok("localhost/x:latest", "localhost", "x", "latest", "");
	ref_ok("registry.example/a__b-c.d:v_1", "registry.example", "a__b-c.d", "v_1", "");
	ref_bad("hello@" D);
	ref_bad("library/hello:1");
	ref_bad("oci.test/hello");
	ref_bad("oci.test/Hello:1");
	ref_bad("oci.test/a//b:1");
	ref_bad("oci.test/a/:1");
	ref_bad("oci.test/hello@sha256:0123");
	ref_bad("oci.test/hello@sha512:" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	ref_bad("oci.test:0/hello:1");
	ref_bad("oci.test:99999/hello:1");
	ref_bad("oci.test/hello:.bad");
	ref_bad("oci.test/a___b:1");
	ref_bad("");

	cfg("{\"os\":\"linux\",\"architecture\":\"amd64\",\"config\":{\"Entrypoint\":[\"/bin/sh\"],\"Env\":[\"A=1\"],"
	    "\"WorkingDir\":\"/w\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"x\"]}}",
	    1, 0, "a typical one");
	cfg("{\"config\":null}", 0, 0, "config null");
	cfg("{\"os\":\"windows\"}", 0, -EBADMSG, "windows refused");
	cfg("{\"architecture\":\"arm64\"}", 0, -EBADMSG, "arm64 refused");
	cfg("{\"config\":{\"Env\":[\"NOEQUALS\"]}}", 0, -EBADMSG, "an env entry without '='");
	cfg("{\"config\":{\"Cmd\":\"sh\"}}", 0, -EBADMSG, "Cmd as a string");
	cfg("{\"os\":\"linux\",\"os\":\"linux\"}", 0, -EBADMSG, "duplicate keys");
	cfg("{\"rootfs\":{\"diff_ids\":[]}}", 2, -EBADMSG, "diff_ids of the wrong length");
	cfg("[1]", 0, -EBADMSG, "not an object");
	return tap_done();
}
