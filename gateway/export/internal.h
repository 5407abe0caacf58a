/* SPDX-License-Identifier: Apache-2.0 */
/* What the export module's files share: one sink, its spool and its deliverer's state. */
#ifndef CRGW_GATEWAY_EXPORT_INTERNAL_H
#define CRGW_GATEWAY_EXPORT_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "export.h"

struct export_sink {
	struct crgw_sink_config cfg;
	int spool_fd, cursor_fd;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	uint64_t size;	  /* bytes in the spool (lock) */
	uint64_t sent;	  /* bytes of it delivered (the sender; read under lock) */
	bool stopping;	  /* (lock) */
	atomic_bool halt; /* stopping, for a deliverer in the middle of a connect or a request */
	atomic_uint_fast64_t delivered, lost, failures;
	atomic_int connected;
	uint64_t lost_reported;
	time_t reported_at; /* monotonic seconds of the last loss report */
	pthread_t thread;
	bool started;
	/* the deliverer's */
	char hostname[256];
	int udp_fd;
	void *curl;	  /* syslog over TCP or TLS: a CONNECT_ONLY handle; OTLP: the POST handle */
	bool logged_down; /* the receiver's failure was logged once for this episode */
};

/* A libcurl progress callback that ends a transfer once the sink stops (arg: the sink). */
int export_halt_check(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);

#endif
