/* SPDX-License-Identifier: Apache-2.0 */
/* The environment every backend starts a sandbox's command with (vm_priv.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_priv.h"

/*
 * The environment a command starts with: nothing of the caller's, the gateway wired in (its proxy, and
 * git's https URLs of the policy's git hosts rewritten to the gateway's mediation, with no credential
 * helper: the gateway holds the credentials), then -e.
 */
/* Puts `entry` (NAME=VALUE) in env[0..*n), over an entry of the same name. */
static void env_set(char **env, size_t *n, const char *entry)
{
	const char *eq = strchr(entry, '=');
	size_t klen = eq ? (size_t)(eq - entry) + 1 : strlen(entry);
	char *copy = strdup(entry);

	if (!copy) {
		env[(*n)++] = NULL; /* seen as out of memory at the end */
		return;
	}
	for (size_t j = 0; j < *n; j++)
		if (env[j] && !strncmp(env[j], entry, klen)) {
			free(env[j]);
			env[j] = copy;
			return;
		}
	env[(*n)++] = copy;
}

/*
 * The package tools pointed at the gateway's registry mediation, each at its registry's primary host
 * (docs/mediation.md, "Registries"): npm (which must also fetch the tarballs its lockfile names through
 * the registry it is given, not the hosts the lockfile recorded), pip and uv, and the go tool.
 */
static void registry_env(json_t *regs, const char *url, const char *gw, char **env, size_t *n)
{
	const char *npm = json_string_value(json_object_get(regs, "npm"));
	const char *pip = json_string_value(json_object_get(regs, "pip"));
	const char *go = json_string_value(json_object_get(regs, "go"));
	const char *oci = json_string_value(json_object_get(regs, "oci"));
	char buf[600];

#define PUTR(...)                                                                                                      \
	do {                                                                                                           \
		snprintf(buf, sizeof(buf), __VA_ARGS__);                                                               \
		env_set(env, n, buf);                                                                                  \
	} while (0)
	if (npm && strlen(npm) < 254) {
		PUTR("npm_config_registry=%s/registry/npm/%s/", url, npm);
		PUTR("npm_config_replace_registry_host=always");
		/* npm's extras that only a public registry answers: the gateway mediates installs, not these. */
		PUTR("npm_config_audit=false");
		PUTR("npm_config_fund=false");
		PUTR("npm_config_update_notifier=false");
	}
	if (pip && strlen(pip) < 254) {
		PUTR("PIP_INDEX_URL=%s/registry/pypi/%s/simple/", url, pip);
		PUTR("PIP_TRUSTED_HOST=%s", gw);
		PUTR("UV_INDEX_URL=%s/registry/pypi/%s/simple/", url, pip);
		PUTR("UV_DEFAULT_INDEX=%s/registry/pypi/%s/simple/", url, pip);
		PUTR("UV_INSECURE_HOST=%s", gw);
	}
	if (go && strlen(go) < 254) {
		PUTR("GOPROXY=%s/registry/go/%s", url, go);
	}
	/* The file write_registries_conf() put in the home. */
	if (oci && strlen(oci) < 254)
		PUTR("CONTAINERS_REGISTRIES_CONF=/root/.config/containers/registries.conf");
#undef PUTR
}

char **vm_command_env(const struct crgw_vm_sandbox *sb, const struct crgw_exec_request *req, char *const *image_env)
{
	static const char *const proxy_names[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"};
	json_t *med = json_object_get(sb->record, "mediation");
	json_t *hosts = json_object_get(med, "git_hosts"), *h;
	const char *url = json_string_value(json_object_get(med, "url"));
	size_t n = 0, extra = 0, nhosts = json_array_size(hosts), i, k = 0;
	char **env, buf[1024];
	const char *term = getenv("TERM");

	size_t nimage = 0;

	while (req->env && req->env[extra])
		extra++;
	while (image_env && image_env[nimage])
		nimage++;
	env = calloc(48 + extra + nimage + 2 * nhosts, sizeof(*env));
	if (!env)
		return NULL;
#define PUT(...)                                                                                                       \
	do {                                                                                                           \
		snprintf(buf, sizeof(buf), __VA_ARGS__);                                                               \
		env_set(env, &n, buf);                                                                                 \
	} while (0)
	PUT("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	PUT("HOME=/root");
	PUT("USER=root");
	PUT("LOGNAME=root");
	PUT("HOSTNAME=%s", sb->id);
	PUT("LANG=C.UTF-8");
	/* The image's own (its PATH, its language's variables); the gateway's wiring below goes over it. */
	for (i = 0; i < nimage; i++)
		if (strchr(image_env[i], '=') && image_env[i][0] != '=')
			env_set(env, &n, image_env[i]);
	if (req->tty)
		PUT("TERM=%s", term && *term && strlen(term) < 64 ? term : "xterm");
	/* Both spellings: tools disagree on which one they read. */
	for (i = 0; i < 4; i++)
		PUT("%s=http://%s:3128", proxy_names[i], sb->gateway);
	/* Mediation is on the gateway's own address: never through the proxy, which refuses it. */
	PUT("NO_PROXY=localhost,127.0.0.1,%s", sb->gateway);
	PUT("no_proxy=localhost,127.0.0.1,%s", sb->gateway);
	PUT("CRGW_SANDBOX_ID=%s", sb->id);
	PUT("CRGW_GATEWAY=%s", sb->gateway);
	if (url && strlen(url) < 128) {
		PUT("CRGW_MEDIATION_URL=%s", url);
		/* A failed credential must end git's request, not wait on a prompt for a password. */
		PUT("GIT_TERMINAL_PROMPT=0");
		PUT("GIT_CONFIG_KEY_%zu=credential.helper", k);
		PUT("GIT_CONFIG_VALUE_%zu=", k);
		k++;
		json_array_foreach(hosts, i, h)
		{
			const char *host = json_string_value(h);

			if (!host || strlen(host) > 253)
				continue;
			PUT("GIT_CONFIG_KEY_%zu=url.%s/git/%s/.insteadOf", k, url, host);
			PUT("GIT_CONFIG_VALUE_%zu=https://%s/", k, host);
			k++;
		}
		PUT("GIT_CONFIG_COUNT=%zu", k);
		registry_env(json_object_get(med, "registries"), url, sb->gateway, env, &n);
	}
#undef PUT
	/* -e NAME=VALUE replaces a base entry of the same name. */
	for (i = 0; i < extra; i++)
		env_set(env, &n, req->env[i]);
	for (i = 0; i < n; i++)
		if (!env[i]) {
			for (size_t j = 0; j < n; j++)
				free(env[j]);
			free(env);
			return NULL;
		}
	return env;
}
