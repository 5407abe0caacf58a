/* SPDX-License-Identifier: Apache-2.0 */
/* crgw, the gateway daemon: configuration, start-up order, signals and a clean shutdown. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "cache/service.h"
#include "config.h"
#include "control.h"
#include "dns.h"
#include "drops.h"
#include "fsutil.h"
#include "log.h"
#include "mediation/mediation.h"
#include "mediation/vault.h"
#include "notify.h"
#include "policy_store.h"
#include "reload.h"
#include "export/export.h"
#include "sandbox.h"
#include "teardown.h"
#include "worker.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: crgw [options]\n"
		"\n"
		"The Cleanroom egress gateway daemon. Settings come from --config (crgw.yaml) and are\n"
		"overridden by flags; docs/gateway.md describes every key.\n"
		"\n"
		"  --config PATH          crgw.yaml to read\n"
		"  --control PATH         control socket (control)\n"
		"  --audit-log PATH       audit log file (audit.path)\n"
		"  --pool CIDR            sandbox address pool, one /30 each (pool)\n"
		"  --upstream-dns ADDR[:PORT]  upstream DNS server, repeatable (dns.upstream)\n"
		"  --workers N            worker threads, 0 = one per core (workers)\n"
		"  --blocked-range CIDR   refuse this range whatever a policy says, repeatable (blocked_ranges)\n"
		"  --set KEY=VALUE        any other key, e.g. --set dns.ttl_max=60\n"
		"  --check-config         validate the configuration and exit\n"
		"  --version, --help\n"
		"\n"
		"exit status: 0 clean shutdown, 1 runtime failure, 2 bad configuration or usage\n");
}

static struct event_base *main_base;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		struct crgw_reload_result *r = malloc(sizeof(*r));

		/* The log reopens whatever the configuration says: rotation must not wait for a valid file. */
		crgw_audit_reopen();
		if (r)
			crgw_reload(r);
		free(r);
		return;
	}
	log_info("shutting down", "signal=%d", (int)sig);
	event_base_loopbreak(main_base);
}

/*
 * One gateway per nftables table, per state directory and per host's DNS port: a second one would delete
 * the first's table and interfaces, end its sandboxes' holders, or share port 53 with it through
 * SO_REUSEPORT. The locks are flock()s on files only root can create (in /run and the state directory),
 * so no other user can take them first, and the kernel drops them when the process dies.
 */
static int take_lock(const char *path, int *fd_out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;

		close(fd);
		return err;
	}
	*fd_out = fd;
	return 0;
}

static int lock_instance(const struct crgw_config *cfg, int locks[3])
{
	char path[4200];
	const char *what[3] = { "this nftables table", "this state directory", "DNS on this host" };
	int err = 0;

	for (int i = 0; i < 3 && !err; i++) {
		if (i == 0)
			snprintf(path, sizeof(path), "/run/crgw-table-%s.lock", cfg->nft_table);
		else if (i == 1)
			snprintf(path, sizeof(path), "%s/lock", cfg->state_dir);
		else
			snprintf(path, sizeof(path), "/run/crgw-dns.lock");
		if (i == 1 && mkdir(cfg->state_dir, 0700) && errno != EEXIST) {
			err = -errno;
		} else {
			err = take_lock(path, &locks[i]);
		}
		if (err == -EWOULDBLOCK)
			log_error("another gateway runs with the same resources", "resource=\"%s\" lock=\"%s\"",
				  what[i], path);
		else if (err)
			log_error("cannot take a lock", "lock=\"%s\" error=\"%s\"", path, strerror(-err));
	}
	return err;
}

/* A fresh machine has no /run/crgw or /var/log/crgw: make the directories start-up puts files in. */
static int make_dirs(const struct crgw_config *cfg)
{
	const char *paths[5] = { cfg->control_path, cfg->state_dir, cfg->audit_path, cfg->data_dir, cfg->cache_dir };
	int n = cfg->cache_enabled ? 5 : 4;
	char why[4400];

	for (int i = 0; i < n; i++) {
		int err = crgw_fs_make_parents(paths[i], 0755, why, sizeof(why));

		if (err) {
			log_error("cannot create a directory", "for=\"%s\" error=\"%s\"", paths[i], why);
			return err;
		}
	}
	return 0;
}

/* Fills `cfg` from the file and the flags; 2 with the reason in `msg` on a bad configuration or usage. */
static int parse_args(int argc, char **argv, struct crgw_config *cfg, bool *check_only, char *msg, size_t msglen)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "control", required_argument, NULL, 'C' },
		{ "audit-log", required_argument, NULL, 'a' },
		{ "pool", required_argument, NULL, 'p' },
		{ "upstream-dns", required_argument, NULL, 'u' },
		{ "workers", required_argument, NULL, 'w' },
		{ "blocked-range", required_argument, NULL, 'b' },
		{ "set", required_argument, NULL, 's' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char err[4400];
	bool upstream_reset = false, blocked_reset = false;
	int c;

	/*
	 * The files first, so that flags override them whatever their order. getopt_long() finds them, as it
	 * finds the other flags: it takes an abbreviation (--conf), and never an argument of another flag or a
	 * word after "--"; a scan of its own would disagree with it on both. Usage errors wait for the second pass.
	 */
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'c' && crgw_config_load_file(cfg, optarg, err, sizeof(err))) {
			opterr = 1;
			snprintf(msg, msglen, "%s", err);
			return 2;
		}
	}
	opterr = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		const char *key = NULL;
		char kv[256];
		const char *value = optarg;

		switch (c) {
		case 'c': continue;
		case 'C': key = "control"; break;
		case 'a': key = "audit.path"; break;
		case 'p': key = "pool"; break;
		case 'w': key = "workers"; break;
		case 'u':
			/* Flags replace the file's list rather than add to it. */
			if (!upstream_reset)
				cfg->nupstream = 0;
			upstream_reset = true;
			key = "dns.upstream";
			break;
		case 'b':
			if (!blocked_reset)
				cfg->nblocked = 0;
			blocked_reset = true;
			key = "blocked_ranges";
			break;
		case 's': {
			const char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof(kv)) {
				snprintf(msg, msglen, "--set wants KEY=VALUE");
				return 2;
			}
			memcpy(kv, optarg, (size_t)(eq - optarg));
			kv[eq - optarg] = '\0';
			key = kv;
			value = eq + 1;
			break;
		}
		case 'k': *check_only = true; continue;
		case 'V': printf("crgw %s\n", CRGW_VERSION); exit(0);
		case 'h': usage(stdout); exit(0);
		default:
			usage(stderr);
			snprintf(msg, msglen, "bad usage");
			return 2;
		}
		if (crgw_config_set(cfg, key, value, err, sizeof(err))) {
			snprintf(msg, msglen, "%s", err);
			return 2;
		}
	}
	if (optind < argc) {
		snprintf(msg, msglen, "unexpected argument '%s'", argv[optind]);
		return 2;
	}
	if (crgw_config_finish(cfg, err, sizeof(err))) {
		snprintf(msg, msglen, "%s", err);
		return 2;
	}
	return 0;
}

/*
 * A proxied connection holds up to six descriptors (two sockets, two pipes): the usual soft limit of 1,024
 * would stop the gateway at about 170 tunnels. The soft limit goes up to the hard one.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_warn("could not raise the descriptor limit", "error=\"%s\"", strerror(errno));
	else
		log_info("descriptor limit raised", "nofile=%llu", (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
	static struct crgw_config cfg;
	struct event *sigs[4] = { 0 };
	static const int signals[4] = { SIGTERM, SIGINT, SIGHUP, SIGPIPE };
	bool check_only = false, audit_started = false, registry = false, workers = false, control = false;
	bool drops = false, dns = false, teardown = false, mediation = false, cache = false;
	int locks[3] = { -1, -1, -1 }, err, status = 1;

	crgw_config_defaults(&cfg);
	{
		static char msg[4400];

		err = parse_args(argc, argv, &cfg, &check_only, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "crgw: %s\n", msg);
			return err;
		}
	}
	crgw_reload_init(&cfg, parse_args, argc, argv);
	if (check_only) {
		char ferr[512];

		/* What a start and a reload read besides the file: the CA files (secrets are the vault's). */
		if (crgw_config_check_files(&cfg, ferr, sizeof(ferr))) {
			fprintf(stderr, "crgw: %s\n", ferr);
			return 2;
		}
		printf("configuration ok\n");
		return 0;
	}
	crgw_log_set_level((enum crgw_log_level)cfg.log_level);
	if (geteuid() != 0)
		log_warn("not running as root: interfaces and nftables need CAP_NET_ADMIN", "%s", "");
	err = make_dirs(&cfg);
	if (!err)
		err = lock_instance(&cfg, locks);
	if (err)
		goto out;
	/* The operator's secrets are read once, before anything could need them; a missing one stops the start. */
	{
		char verr[512];

		err = crgw_vault_start(&cfg, verr, sizeof(verr));
		if (err) {
			log_error("cannot read the operator's secrets", "error=\"%s\"", verr);
			goto out;
		}
		err = crgw_config_check_files(&cfg, verr, sizeof(verr));
		if (err) {
			log_error("cannot read a CA file", "error=\"%s\"", verr);
			goto out;
		}
	}
	if (evthread_use_pthreads() || !(main_base = event_base_new())) {
		log_error("libevent initialization failed", "%s", "");
		goto out;
	}
	for (unsigned i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(main_base, signals[i], on_signal, NULL);
		if (!sigs[i] || event_add(sigs[i], NULL))
			goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	err = crgw_teardown_start();
	if (err) {
		log_error("cannot start the teardown thread", "error=\"%s\"", strerror(-err));
		goto out;
	}
	teardown = true;
	/* Nothing is accepted before a crashed predecessor's table and interfaces are gone. */
	err = crgw_registry_cleanup_stale(&cfg);
	if (err) {
		/* -EEXIST: a host interface has the prefix, and cleanup_stale has named it. */
		if (err != -EEXIST)
			log_error("cannot remove a previous run's leftovers", "error=\"%s\"", strerror(-err));
		goto out;
	}
	{
		char xerr[4600];

		err = crgw_export_start(&cfg, xerr, sizeof(xerr));
		if (err) {
			log_error("cannot start the audit export", "error=\"%s\"", xerr);
			crgw_export_stop();
			goto out;
		}
	}
	err = crgw_audit_start(cfg.audit_path, cfg.audit_max_bytes, cfg.audit_keep, cfg.audit_queue,
			       cfg.audit_allow_loss);
	if (err) {
		log_error("cannot open the audit log", "path=\"%s\" error=\"%s\"", cfg.audit_path, strerror(-err));
		goto out;
	}
	audit_started = true;
	crgw_registry_audit_stale();
	err = crgw_registry_init(&cfg, NULL);
	/* Whatever init made, fini undoes: even a failed start leaves nothing behind. */
	registry = true;
	if (err) {
		log_error("cannot set up enforcement or resource limits", "table=\"inet %s\" error=\"%s\"",
			  cfg.nft_table, strerror(-err));
		goto out;
	}
	{
		struct crgw_guard *guard;
		bool nft;

		crgw_registry_enforcement(&nft, &guard);
		err = crgw_drops_start(main_base, &cfg, nft, guard);
	}
	if (err) {
		log_error("cannot read the kernel's drop log", "nflog_group=%u error=\"%s\"", cfg.nflog_group,
			  strerror(-err));
		goto out;
	}
	drops = true;
	err = crgw_dns_global_init(&cfg);
	if (err)
		goto out;
	dns = true;
	err = crgw_mediation_global_init();
	if (err) {
		log_error("cannot set up libcurl for mediation", "error=\"%s\"", strerror(-err));
		goto out;
	}
	mediation = true;
	/* The workers' registry handlers find the cache open from their first request on. */
	err = crgw_cache_service_start(&cfg);
	if (err)
		goto out;
	cache = true;
	err = crgw_workers_start(&cfg);
	if (err)
		goto out;
	workers = true;
	{
		char why[600];

		err = crgw_policy_store_open(cfg.policy_store_dir, why, sizeof(why));
		if (err) {
			log_error("cannot open the policy store", "path=\"%s\" error=\"%s\"", cfg.policy_store_dir, why);
			goto out;
		}
	}
	err = crgw_control_start(main_base, &cfg);
	if (err) {
		log_error("cannot listen on the control socket", "path=\"%s\" error=\"%s\"", cfg.control_path,
			  strerror(-err));
		goto out;
	}
	control = true;
	{
		struct crgw_audit_event ev = { .kind = CRGW_AUDIT_GATEWAY_STARTED, .service = "control" };

		snprintf(ev.detail, sizeof(ev.detail), "version=%s workers=%u pool=%s/%u", CRGW_VERSION, cfg.workers,
			 inet_ntoa(cfg.pool), cfg.pool_prefix);
		crgw_audit_emit(&ev);
	}
	log_info("ready", "control=\"%s\" workers=%u audit=\"%s\" upstream=%s", cfg.control_path, cfg.workers,
		 cfg.audit_path, cfg.upstream[0].text);
	crgw_notify("READY=1");
	event_base_loop(main_base, EVLOOP_NO_EXIT_ON_EMPTY);
	crgw_notify("STOPPING=1");
	status = 0;
out:
	if (control)
		crgw_control_stop();
	crgw_policy_store_close();
	if (registry)
		crgw_registry_release_all("the gateway is shutting down");
	if (workers)
		crgw_workers_stop();
	/* After the workers: no reader, fill or follower of theirs is left when the cache closes. */
	if (cache)
		crgw_cache_service_stop();
	if (dns)
		crgw_dns_global_fini();
	if (mediation)
		crgw_mediation_global_fini();
	crgw_vault_stop();
	if (drops)
		crgw_drops_stop();
	/* Released sandboxes' groups and data are gone before the gateway says it stopped. */
	if (teardown)
		crgw_teardown_stop();
	if (registry)
		crgw_registry_fini();
	if (audit_started) {
		struct crgw_audit_event ev = { .kind = CRGW_AUDIT_GATEWAY_STOPPED, .service = "control" };

		crgw_audit_emit(&ev);
		crgw_audit_stop();
	crgw_export_stop();
	}
	for (unsigned i = 0; i < 4; i++)
		if (sigs[i])
			event_free(sigs[i]);
	if (main_base)
		event_base_free(main_base);
	for (int i = 0; i < 3; i++)
		if (locks[i] >= 0)
			close(locks[i]);
	libevent_global_shutdown();
	if (status == 0)
		log_info("stopped", "%s", "");
	return status;
}
