#ifndef CRGW_MEDIATION_GITPROTO_H
#define CRGW_MEDIATION_GITPROTO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define GIT_OID_MAX 32
struct git_oid { uint8_t id[GIT_OID_MAX]; uint8_t len; };
bool git_oid_is_zero(const struct git_oid *oid);
struct git_ref { char *name; size_t len; struct git_oid oid; };
struct git_refs { struct git_ref *refs; size_t n; bool incomplete; bool sha256; bool empty; char *caps; size_t caps_len; };
void git_refs_free(struct git_refs *refs);
struct git_adv { uint8_t buf[65536]; };
void git_adv_init(struct git_adv *a, struct git_refs *out, const char *service, size_t max_refs,
                  bool (*want)(void *arg, const char *ref, size_t len), void *arg);
int git_adv_feed(struct git_adv *a, const uint8_t *buf, size_t len);
struct git_push_cmd { struct git_oid old_oid, new_oid; char *ref; size_t ref_len; };
struct git_push { struct git_push_cmd *cmds; size_t ncmds; char *caps; size_t caps_len; bool sha256; bool push_options; const char *why; };
void git_push_init(struct git_push *p);
int git_push_feed(struct git_push *p, const uint8_t *buf, size_t len, size_t *used);
int git_push_end(struct git_push *p);
void git_push_free(struct git_push *p);
struct git_pack_scan { const char *why; };
int git_pack_scan_init(struct git_pack_scan *s, bool sha256);
int git_pack_scan_feed(struct git_pack_scan *s, const uint8_t *buf, size_t len);
int git_pack_scan_end(struct git_pack_scan *s);
void git_pack_scan_free(struct git_pack_scan *s);
enum git_push_verdict { GIT_PUSH_OK, GIT_PUSH_REF_NOT_ALLOWED, GIT_PUSH_DELETE, GIT_PUSH_STALE, GIT_PUSH_NOT_FAST_FORWARD };
enum git_push_verdict git_push_check(const struct git_push_cmd *cmd, bool force,
        bool (*ref_allowed)(void *arg, const char *ref, size_t len), void *arg,
        const struct git_refs *advertised, const struct git_pack_scan *scan, const char **why);
#endif
