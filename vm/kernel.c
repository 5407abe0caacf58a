/* SPDX-License-Identifier: Apache-2.0 */
/* The guest's kernel and initramfs: found, unpacked and built once, cached by content (kernel.h). */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kernel.h"
#include "vm_priv.h"

#define KERNEL_MAX (512ull << 20) /* an unpacked kernel larger than this is not one */
#define MODULE_MAX (64ull << 20)
#define MODULES_MAX 64 /* modules in one initramfs, dependencies included */
#define DEP_LINE_MAX 8192

const char *const vm_guest_modules[] = {
    "virtio_pci",
    "virtio_console",
    "virtio_blk",
    "virtio_net",
    /* ext4 needs a crc32c implementation, a soft dependency modules.dep does not list */
    "crc32c_generic",
    "ext4",
    /* copy-mode workspaces: the host's copy under the VM's changes */
    "overlay",
    NULL,
};

/* ---- small helpers --------------------------------------------------------------------------------- */

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Adds a file's bytes to a running digest. */
static int digest_file(EVP_MD_CTX *md, const char *path)
{
	unsigned char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(md, buf, (size_t)n);
	n = n < 0 ? -errno : 0;
	close(fd);
	return (int)n;
}

static int sha256_file(const char *path, char out[65])
{
	unsigned char d[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc;

	if (!md)
		return -ENOMEM;
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	rc = digest_file(md, path);
	if (rc == 0) {
		EVP_DigestFinal_ex(md, d, NULL);
		hex(d, sizeof(d), out);
	}
	EVP_MD_CTX_free(md);
	return rc;
}

/* Makes `tmp` (written and synced) visible as `path`. */
static int publish(const char *tmp, const char *path)
{
	int fd = open(tmp, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) != 0) {
		int e = -errno;

		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return e;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		int e = -errno;

		unlink(tmp);
		return e;
	}
	return 0;
}

/* ---- finding the kernel ------------------------------------------------------------------------------ */

static int newest_release(const char *boot_dir, char *out, size_t outlen)
{
	struct dirent *de;
	DIR *d = opendir(boot_dir);
	bool found = false;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		const char *rel;

		if (strncmp(de->d_name, "vmlinuz-", 8) != 0)
			continue;
		rel = de->d_name + 8;
		if (*rel == '\0' || strlen(rel) >= outlen)
			continue;
		if (!found || strverscmp(rel, out) > 0) {
			snprintf(out, outlen, "%s", rel);
			found = true;
		}
	}
	closedir(d);
	return found ? 0 : -ENOENT;
}

int vm_kernel_prepare(const char *cache_dir, const char *boot_dir, const char *modules_root, const char *release,
		      struct vm_kernel *out, char *err, size_t errlen)
{
	char digest[65], dir[PATH_MAX], tmp[PATH_MAX], marker[PATH_MAX];
	char want[sizeof(out->release)] = "";
	struct stat st;
	bool pvh = false;
	int rc;

	if (release) {
		/* `release` may point into `out` (asking again for the kernel found before) */
		if (!*release || strchr(release, '/') || strlen(release) >= sizeof(want)) {
			snprintf(err, errlen, "kernel release \"%s\": not a release name", release);
			return -EINVAL;
		}
		snprintf(want, sizeof(want), "%s", release);
	}
	memset(out, 0, sizeof(*out));
	boot_dir = boot_dir ? boot_dir : "/boot";
	modules_root = modules_root ? modules_root : "/lib/modules";
	if (want[0]) {
		snprintf(out->release, sizeof(out->release), "%s", want);
	} else if (newest_release(boot_dir, out->release, sizeof(out->release)) != 0) {
		snprintf(err, errlen,
			 "no kernel in %s (vmlinuz-*): the QEMU backend boots the distribution's kernel "
			 "(package linux-image-amd64)",
			 boot_dir);
		return -ENOENT;
	}
	if (vm_fmt(out->bzimage, sizeof(out->bzimage), "%s/vmlinuz-%s", boot_dir, out->release) ||
	    vm_fmt(out->modules_dir, sizeof(out->modules_dir), "%s/%s", modules_root, out->release)) {
		snprintf(err, errlen, "kernel paths too long");
		return -ENAMETOOLONG;
	}
	if (stat(out->bzimage, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: no such kernel (package linux-image-amd64)", out->bzimage);
		return -ENOENT;
	}
	if (stat(out->modules_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: the kernel's modules are missing", out->modules_dir);
		return -ENOENT;
	}
	rc = sha256_file(out->bzimage, digest);
	if (rc) {
		snprintf(err, errlen, "%s: %s", out->bzimage, strerror(-rc));
		return rc;
	}
	if (vm_fmt(dir, sizeof(dir), "%s/kernels", cache_dir))
		return -ENAMETOOLONG;
	rc = mkdir_p(dir, 0755);
	if (rc) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
		return rc;
	}
	(void)vm_fmt(out->vmlinux, sizeof(out->vmlinux), "%s/%s.vmlinux", dir, digest);
	/* A kernel without PVH is remembered too, so it is not unpacked again for nothing. */
	(void)vm_fmt(marker, sizeof(marker), "%s/%s.no-pvh", dir, digest);
	if (access(out->vmlinux, R_OK) == 0)
		return 0;
	if (access(marker, F_OK) == 0) {
		out->vmlinux[0] = '\0';
		return 0;
	}
	(void)vm_fmt(tmp, sizeof(tmp), "%s/.%s.%d.tmp", dir, digest, (int)getpid());
	rc = vm_kernel_unpack(out->bzimage, tmp, &pvh, err, errlen);
	if (rc) {
		unlink(tmp);
		return rc;
	}
	if (!pvh) {
		int fd;

		unlink(tmp);
		fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
		out->vmlinux[0] = '\0';
		return 0;
	}
	rc = publish(tmp, out->vmlinux);
	if (rc)
		snprintf(err, errlen, "%s: %s", out->vmlinux, strerror(-rc));
	return rc;
}

/* ---- unpacking the bzImage --------------------------------------------------------------------------- */

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Whether the ELF image in [p, p+n) carries the Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY, 18). */
static bool elf_has_pvh(const unsigned char *p, size_t n)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)p;

	if (n < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > n ||
	    (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > n - eh->e_phoff)
		return false;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(p + eh->e_phoff) + i;
		size_t off, end;

		if (ph->p_type != PT_NOTE || ph->p_offset > n || ph->p_filesz > n - ph->p_offset)
			continue;
		off = ph->p_offset;
		end = off + ph->p_filesz;
		while (end - off >= sizeof(Elf64_Nhdr)) {
			const Elf64_Nhdr *nh = (const Elf64_Nhdr *)(p + off);
			size_t name = (nh->n_namesz + 3u) & ~(size_t)3, desc = (nh->n_descsz + 3u) & ~(size_t)3;

			off += sizeof(*nh);
			if (name > end - off || desc > end - off - name)
				break;
			if (nh->n_type == 18 && nh->n_namesz == 4 && memcmp(p + off, "Xen", 4) == 0)
				return true;
			off += name + desc;
		}
	}
	return false;
}

/*
 * Whether [p, p+n) holds all of the ELF file it begins: every segment and the section header table
 * within it. A decoder error after the data (the size the kernel's build appends after the stream) is
 * harmless; one that cut the kernel short is caught here.
 */
static bool elf_complete(const unsigned char *p, size_t n)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)p;
	uint64_t end;

	if (n < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > n ||
	    (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > n - eh->e_phoff)
		return false;
	end = eh->e_shoff + (uint64_t)eh->e_shnum * eh->e_shentsize;
	if (end > n)
		return false;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = (const Elf64_Phdr *)(p + eh->e_phoff) + i;

		if (ph->p_offset > n || ph->p_filesz > n - ph->p_offset)
			return false;
	}
	return true;
}

/* The decompressed bytes of [p, p+n) (any compression libarchive knows, or none) into fd; at most `max`. */
static int decompress_to_fd(const void *p, size_t n, int fd, uint64_t max, uint64_t *written, char *err, size_t errlen)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	char buf[1 << 16];
	ssize_t got;
	int rc = 0;

	*written = 0;
	if (!a)
		return -ENOMEM;
	archive_read_support_filter_all(a);
	archive_read_support_format_raw(a);
	if (archive_read_open_memory(a, p, n) != ARCHIVE_OK || archive_read_next_header(a, &e) != ARCHIVE_OK) {
		snprintf(err, errlen, "%s", archive_error_string(a) ? archive_error_string(a) : "unreadable");
		archive_read_free(a);
		return -ENOEXEC;
	}
	while ((got = archive_read_data(a, buf, sizeof(buf))) > 0) {
		if (*written + (uint64_t)got > max) {
			snprintf(err, errlen, "larger than %llu MiB unpacked", (unsigned long long)(max >> 20));
			rc = -EFBIG;
			break;
		}
		if (write(fd, buf, (size_t)got) != got) {
			rc = errno ? -errno : -EIO;
			snprintf(err, errlen, "write: %s", strerror(-rc));
			break;
		}
		*written += (uint64_t)got;
	}
	/*
	 * The kernel's build appends the unpacked size after some compressed streams; a decoder that reached
	 * the end of the stream and then met those four bytes reports an error after all the data: what
	 * counts is that the data are whole, which the ELF check below decides.
	 */
	if (got < 0 && rc == 0 && *written == 0) {
		snprintf(err, errlen, "%s", archive_error_string(a) ? archive_error_string(a) : "unreadable");
		rc = -ENOEXEC;
	}
	archive_read_free(a);
	return rc;
}

int vm_kernel_unpack(const char *bzimage, const char *out_path, bool *pvh, char *err, size_t errlen)
{
	struct stat st;
	unsigned char *img = MAP_FAILED, *elf = MAP_FAILED;
	uint64_t written = 0;
	size_t setup, off, len;
	int fd, out = -1, rc;

	*pvh = false;
	fd = open(bzimage, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", bzimage, strerror(-rc));
		goto out;
	}
	if (st.st_size < 0x250 || (uint64_t)st.st_size > KERNEL_MAX) {
		snprintf(err, errlen, "%s: not a bzImage (size)", bzimage);
		rc = -ENOEXEC;
		goto out;
	}
	img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "%s: mmap: %s", bzimage, strerror(-rc));
		goto out;
	}
	/* The boot protocol's setup header: "HdrS", version 2.08 or later for the payload fields. */
	if (memcmp(img + 0x202, "HdrS", 4) != 0 || (img[0x206] | img[0x207] << 8) < 0x208) {
		snprintf(err, errlen, "%s: not a bzImage of boot protocol 2.08 or later", bzimage);
		rc = -ENOEXEC;
		goto out;
	}
	setup = img[0x1f1] ? img[0x1f1] : 4;
	off = (setup + 1) * 512 + le32(img + 0x248);
	len = le32(img + 0x24c);
	if (off >= (size_t)st.st_size || len > (size_t)st.st_size - off || len == 0) {
		snprintf(err, errlen, "%s: its payload lies outside the file", bzimage);
		rc = -ENOEXEC;
		goto out;
	}
	out = open(out_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", out_path, strerror(-rc));
		goto out;
	}
	rc = decompress_to_fd(img + off, len, out, KERNEL_MAX, &written, err, errlen);
	if (rc)
		goto out;
	elf = written ? mmap(NULL, (size_t)written, PROT_READ, MAP_PRIVATE, out, 0) : MAP_FAILED;
	if (elf == MAP_FAILED || !elf_complete(elf, (size_t)written)) {
		snprintf(err, errlen, "%s: its payload does not unpack to a whole ELF kernel", bzimage);
		rc = -ENOEXEC;
		goto out;
	}
	*pvh = elf_has_pvh(elf, (size_t)written);
	rc = 0;
out:
	if (elf != MAP_FAILED)
		munmap(elf, (size_t)written);
	if (img != MAP_FAILED)
		munmap(img, (size_t)st.st_size);
	if (out >= 0)
		close(out);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- modules ------------------------------------------------------------------------------------------ */

struct dep_state {
	const char *dir;
	char *names[MODULES_MAX]; /* done or in progress, normalized */
	bool done[MODULES_MAX];
	unsigned n;
	int (*cb)(void *arg, const char *relpath);
	void *arg;
	char *err;
	size_t errlen;
};

/* "virtio-net", "virtio_net.ko.xz", "kernel/x/virtio_net.ko" → "virtio_net". */
static void module_name(const char *in, char *out, size_t outlen)
{
	const char *base = strrchr(in, '/');
	size_t i = 0;

	base = base ? base + 1 : in;
	for (; base[i] && base[i] != '.' && i + 1 < outlen; i++)
		out[i] = base[i] == '-' ? '_' : base[i];
	out[i] = '\0';
}

/*
 * Finds the modules.dep line of `name`: sets `line` to "path: dep dep …" (a copy). Returns 0, -ENOENT, or
 * 1 when the module is built into the kernel.
 */
static int dep_line(const char *dir, const char *name, char *line, size_t linelen)
{
	char path[PATH_MAX], buf[DEP_LINE_MAX], got[256];
	FILE *f;
	int rc = -ENOENT;

	(void)vm_fmt(path, sizeof(path), "%s/modules.builtin", dir);
	f = fopen(path, "re");
	if (f) {
		while (fgets(buf, sizeof(buf), f)) {
			buf[strcspn(buf, "\n")] = '\0';
			module_name(buf, got, sizeof(got));
			if (strcmp(got, name) == 0) {
				fclose(f);
				return 1;
			}
		}
		fclose(f);
	}
	(void)vm_fmt(path, sizeof(path), "%s/modules.dep", dir);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(buf, sizeof(buf), f)) {
		char *colon = strchr(buf, ':');

		if (!colon)
			continue;
		*colon = '\0';
		module_name(buf, got, sizeof(got));
		*colon = ':';
		if (strcmp(got, name) == 0) {
			buf[strcspn(buf, "\n")] = '\0';
			(void)vm_fmt(line, linelen, "%s", buf);
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

static int resolve_one(struct dep_state *s, const char *name, unsigned depth)
{
	char line[DEP_LINE_MAX], dep[256];
	char *colon, *deps[MODULES_MAX];
	unsigned ndeps = 0, me;
	int rc;

	for (unsigned i = 0; i < s->n; i++) {
		if (strcmp(s->names[i], name) != 0)
			continue;
		if (!s->done[i]) {
			snprintf(s->err, s->errlen, "module %s depends on itself", name);
			return -ELOOP;
		}
		return 0;
	}
	if (depth > 16 || s->n == MODULES_MAX) {
		snprintf(s->err, s->errlen, "module %s: too many dependencies", name);
		return -E2BIG;
	}
	rc = dep_line(s->dir, name, line, sizeof(line));
	if (rc == 1)
		return 0; /* built in */
	if (rc) {
		snprintf(s->err, s->errlen, "module %s: not in %s/modules.dep", name, s->dir);
		return rc;
	}
	me = s->n++;
	s->names[me] = strdup(name);
	s->done[me] = false;
	if (!s->names[me])
		return -ENOMEM;
	colon = strchr(line, ':');
	*colon = '\0';
	/* modules.dep lists a module's dependencies nearest first; each is loaded after its own. */
	for (char *save = NULL, *t = strtok_r(colon + 1, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (ndeps == MODULES_MAX)
			return -E2BIG;
		deps[ndeps++] = t;
	}
	while (ndeps > 0) {
		module_name(deps[--ndeps], dep, sizeof(dep));
		rc = resolve_one(s, dep, depth + 1);
		if (rc)
			return rc;
	}
	s->done[me] = true;
	return s->cb(s->arg, line);
}

int vm_modules_resolve(const char *modules_dir, const char *const *names, int (*cb)(void *arg, const char *relpath),
		       void *arg, char *err, size_t errlen)
{
	struct dep_state s = {.dir = modules_dir, .cb = cb, .arg = arg, .err = err, .errlen = errlen};
	char name[256];
	int rc = 0;

	for (; *names && rc == 0; names++) {
		module_name(*names, name, sizeof(name));
		rc = resolve_one(&s, name, 0);
	}
	for (unsigned i = 0; i < s.n; i++)
		free(s.names[i]);
	return rc;
}

/* ---- the initramfs ------------------------------------------------------------------------------------ */

struct module_list {
	char *paths[MODULES_MAX]; /* relative to the modules directory, in load order */
	unsigned n;
};

static int collect_module(void *arg, const char *relpath)
{
	struct module_list *l = arg;

	if (l->n == MODULES_MAX)
		return -E2BIG;
	l->paths[l->n] = strdup(relpath);
	return l->paths[l->n++] ? 0 : -ENOMEM;
}

static int cpio_add(struct archive *a, const char *path, mode_t type_mode, dev_t rdev, const void *data, size_t len)
{
	struct archive_entry *e = archive_entry_new();
	int rc = 0;

	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, path);
	archive_entry_set_mode(e, type_mode);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	archive_entry_set_nlink(e, S_ISDIR(type_mode) ? 2 : 1);
	archive_entry_set_mtime(e, 0, 0); /* the same inputs make the same bytes */
	if (S_ISCHR(type_mode) || S_ISBLK(type_mode))
		archive_entry_set_rdev(e, rdev);
	archive_entry_set_size(e, S_ISREG(type_mode) ? (la_int64_t)len : 0);
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (len > 0 && archive_write_data(a, data, len) != (la_ssize_t)len))
		rc = -EIO;
	archive_entry_free(e);
	return rc;
}

/* Reads a whole file, decompressing it if it is compressed, into a new buffer of at most `max` bytes. */
static int slurp(const char *path, uint64_t max, void **data, size_t *len, char *err, size_t errlen)
{
	char tmpl[] = "/tmp/crgw-vm-module.XXXXXX";
	struct stat st;
	uint64_t n = 0;
	void *in, *buf;
	int fd, tfd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 || (uint64_t)st.st_size > max) {
		rc = fd < 0 ? -errno : -EINVAL;
		snprintf(err, errlen, "%s: %s", path, fd < 0 ? strerror(-rc) : "empty or too large");
		if (fd >= 0)
			close(fd);
		return rc;
	}
	in = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (in == MAP_FAILED)
		return -errno;
	tfd = mkostemp(tmpl, O_CLOEXEC);
	if (tfd < 0) {
		munmap(in, (size_t)st.st_size);
		return -errno;
	}
	unlink(tmpl);
	rc = decompress_to_fd(in, (size_t)st.st_size, tfd, max, &n, err, errlen);
	munmap(in, (size_t)st.st_size);
	if (rc == 0 && n == 0)
		rc = -EINVAL;
	buf = rc == 0 ? malloc((size_t)n) : NULL;
	if (rc == 0 && (!buf || pread(tfd, buf, (size_t)n, 0) != (ssize_t)n))
		rc = buf ? -EIO : -ENOMEM;
	close(tfd);
	if (rc) {
		free(buf);
		return rc;
	}
	*data = buf;
	*len = (size_t)n;
	return 0;
}

/* Adds the directories above `path` the archive does not have yet ("a/b/c" -> "a", "a/b"). */
static int add_parents(struct archive *a, const char *path, char (*made)[128], unsigned *nmade, unsigned max)
{
	int rc = 0;

	for (const char *p = strchr(path, '/'); p && rc == 0; p = strchr(p + 1, '/')) {
		size_t n = (size_t)(p - path);
		bool have = false;

		if (n >= sizeof(made[0]))
			return -ENAMETOOLONG;
		for (unsigned i = 0; i < *nmade && !have; i++)
			have = strncmp(made[i], path, n) == 0 && made[i][n] == '\0';
		if (have)
			continue;
		if (*nmade == max)
			return -E2BIG;
		memcpy(made[*nmade], path, n);
		made[*nmade][n] = '\0';
		rc = cpio_add(a, made[(*nmade)++], S_IFDIR | 0755, 0, NULL, 0);
	}
	return rc;
}

static int add_extra(struct archive *a, const struct vm_initramfs_file *f, char (*made)[128], unsigned *nmade,
		     unsigned max, char *err, size_t errlen)
{
	struct archive_entry *e;
	void *data = NULL;
	size_t len = 0;
	int rc;

	if (!f->path || !*f->path || f->path[0] == '/' || strstr(f->path, ".."))
		return -EINVAL;
	rc = add_parents(a, f->path, made, nmade, max);
	if (rc)
		return rc;
	if (f->link_target) {
		e = archive_entry_new();
		if (!e)
			return -ENOMEM;
		archive_entry_set_pathname(e, f->path);
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_perm(e, 0777);
		archive_entry_set_symlink(e, f->link_target);
		archive_entry_set_mtime(e, 0, 0);
		archive_entry_set_nlink(e, 1);
		archive_entry_set_size(e, 0); /* the writer sizes the entry by its target, but wants a size set */
		rc = archive_write_header(a, e) == ARCHIVE_OK ? 0 : -EIO;
		archive_entry_free(e);
		return rc;
	}
	if (f->text)
		return cpio_add(a, f->path, S_IFREG | (f->mode & 07777), 0, f->text, strlen(f->text));
	if (!f->source)
		return -EINVAL;
	rc = slurp(f->source, MODULE_MAX, &data, &len, err, errlen);
	if (rc == 0)
		rc = cpio_add(a, f->path, S_IFREG | (f->mode & 07777), 0, data, len);
	free(data);
	return rc;
}

static int write_initramfs(const char *path, const struct vm_kernel *k, const char *init,
			   const struct module_list *mods, const struct vm_initramfs_file *extra, size_t nextra,
			   char *err, size_t errlen)
{
	static const char *const dirs[] = {"dev", "proc",	    "sys", "run",	  "tmp", "newroot",
					   "etc", "etc/crgw-guest", "lib", "lib/modules", NULL};
	char entry[PATH_MAX], name[256], *list = NULL;
	size_t list_len = 0, list_cap = 0;
	struct archive *a = archive_write_new();
	void *data = NULL;
	size_t len;
	int rc = 0;

	if (!a)
		return -ENOMEM;
	if (archive_write_set_format_cpio_newc(a) != ARCHIVE_OK || archive_write_add_filter_none(a) != ARCHIVE_OK ||
	    archive_write_open_filename(a, path) != ARCHIVE_OK) {
		snprintf(err, errlen, "%s: %s", path, archive_error_string(a));
		archive_write_free(a);
		return -EIO;
	}
	for (unsigned i = 0; dirs[i] && rc == 0; i++)
		rc = cpio_add(a, dirs[i], S_IFDIR | 0755, 0, NULL, 0);
	(void)vm_fmt(entry, sizeof(entry), "lib/modules/%s", k->release);
	if (rc == 0)
		rc = cpio_add(a, entry, S_IFDIR | 0755, 0, NULL, 0);
	/* The kernel opens /dev/console for init before anything is mounted. */
	if (rc == 0)
		rc = cpio_add(a, "dev/console", S_IFCHR | 0600, makedev(5, 1), NULL, 0);
	if (rc == 0 && (rc = slurp(init, MODULE_MAX, &data, &len, err, errlen)) == 0) {
		rc = cpio_add(a, "init", S_IFREG | 0755, 0, data, len);
		free(data);
	}
	for (unsigned i = 0; i < mods->n && rc == 0; i++) {
		char src[PATH_MAX];
		size_t need;

		module_name(mods->paths[i], name, sizeof(name));
		(void)vm_fmt(src, sizeof(src), "%s/%s", k->modules_dir, mods->paths[i]);
		(void)vm_fmt(entry, sizeof(entry), "lib/modules/%s/%s.ko", k->release, name);
		rc = slurp(src, MODULE_MAX, &data, &len, err, errlen);
		if (rc)
			break;
		rc = cpio_add(a, entry, S_IFREG | 0644, 0, data, len);
		free(data);
		need = list_len + strlen(entry) + 3;
		if (rc == 0 && need > list_cap) {
			char *grown = realloc(list, need * 2);

			if (!grown) {
				rc = -ENOMEM;
				break;
			}
			list = grown;
			list_cap = need * 2;
		}
		if (rc == 0)
			list_len += (size_t)snprintf(list + list_len, list_cap - list_len, "/%s\n", entry);
	}
	if (rc == 0)
		rc = cpio_add(a, "etc/crgw-guest/modules", S_IFREG | 0644, 0, list ? list : "", list_len);
	free(list);
	if (nextra && rc == 0) {
		/* Directories the fixed part made count as made; extras add theirs once each. */
		unsigned nmade = 0, max = 64;
		char(*made)[128] = calloc(max, sizeof(*made));

		if (!made)
			rc = -ENOMEM;
		for (unsigned i = 0; made && dirs[i]; i++)
			snprintf(made[nmade++], sizeof(made[0]), "%s", dirs[i]);
		for (size_t i = 0; i < nextra && rc == 0; i++) {
			rc = add_extra(a, &extra[i], made, &nmade, max, err, errlen);
			if (rc && !*err)
				snprintf(err, errlen, "initramfs entry %s: %s",
					 extra[i].path ? extra[i].path : "(none)", strerror(-rc));
		}
		free(made);
	}
	if (archive_write_close(a) != ARCHIVE_OK && rc == 0) {
		snprintf(err, errlen, "%s: %s", path, archive_error_string(a));
		rc = -EIO;
	}
	archive_write_free(a);
	if (rc && !*err)
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	return rc;
}

int vm_initramfs_build(const char *cache_dir, const struct vm_kernel *k, const char *init, const char *const *modules,
		       const struct vm_initramfs_file *extra, size_t nextra, char *out_path, size_t out_len, char *err,
		       size_t errlen)
{
	struct module_list mods = {.n = 0};
	unsigned char d[32];
	char key[65], dir[PATH_MAX], tmp[PATH_MAX + 32];
	EVP_MD_CTX *md = NULL;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	rc = vm_modules_resolve(k->modules_dir, modules, collect_module, &mods, err, errlen);
	if (rc)
		goto out;
	/* The cache key: what goes in, by content. */
	md = EVP_MD_CTX_new();
	if (!md) {
		rc = -ENOMEM;
		goto out;
	}
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, "crgw-initramfs-2", 16);
	EVP_DigestUpdate(md, k->release, strlen(k->release) + 1);
	rc = digest_file(md, init);
	for (unsigned i = 0; i < mods.n && rc == 0; i++) {
		char src[PATH_MAX];

		EVP_DigestUpdate(md, mods.paths[i], strlen(mods.paths[i]) + 1);
		(void)vm_fmt(src, sizeof(src), "%s/%s", k->modules_dir, mods.paths[i]);
		rc = digest_file(md, src);
	}
	for (size_t i = 0; i < nextra && rc == 0; i++) {
		const struct vm_initramfs_file *f = &extra[i];
		char mode[16];

		snprintf(mode, sizeof(mode), "%o", f->mode);
		EVP_DigestUpdate(md, f->path ? f->path : "", f->path ? strlen(f->path) + 1 : 1);
		EVP_DigestUpdate(md, mode, strlen(mode) + 1);
		if (f->link_target)
			EVP_DigestUpdate(md, f->link_target, strlen(f->link_target) + 1);
		else if (f->text)
			EVP_DigestUpdate(md, f->text, strlen(f->text) + 1);
		else if (f->source)
			rc = digest_file(md, f->source);
	}
	if (rc) {
		snprintf(err, errlen, "reading the initramfs's inputs: %s", strerror(-rc));
		goto out;
	}
	EVP_DigestFinal_ex(md, d, NULL);
	hex(d, sizeof(d), key);
	if (vm_fmt(dir, sizeof(dir), "%s/initramfs", cache_dir)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	rc = mkdir_p(dir, 0755);
	if (rc) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
		goto out;
	}
	if (vm_fmt(out_path, out_len, "%s/%s.cpio", dir, key)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if (access(out_path, R_OK) == 0)
		goto out;
	(void)vm_fmt(tmp, sizeof(tmp), "%s/.%s.%d.tmp", dir, key, (int)getpid());
	rc = write_initramfs(tmp, k, init, &mods, extra, nextra, err, errlen);
	if (rc) {
		unlink(tmp);
		goto out;
	}
	rc = publish(tmp, out_path);
	if (rc)
		snprintf(err, errlen, "%s: %s", out_path, strerror(-rc));
out:
	EVP_MD_CTX_free(md);
	for (unsigned i = 0; i < mods.n; i++)
		free(mods.paths[i]);
	return rc;
}
