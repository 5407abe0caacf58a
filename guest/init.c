/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What crgw-guest does as PID 1 before it serves: the kernel file systems, the network the kernel
 * command line describes (ioctl only: a static binary with no netlink library, and five requests are all
 * it takes), resolv.conf naming the gateway, finding the virtio-serial port by its name, and the
 * workspace's disks made into /workspace.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

void guest_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	fprintf(stderr, "crgw-guest: %s\n", line);
}

/* Copies a parameter's value, refusing one that does not fit rather than cutting it. */
static int take(char *dst, size_t size, const char *v, size_t len)
{
	if (len >= size)
		return -EINVAL;
	memcpy(dst, v, len);
	dst[len] = '\0';
	return 0;
}

static int take_uint(unsigned *dst, const char *v, size_t len, unsigned max)
{
	unsigned long n = 0;

	if (len == 0 || len > 10)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		n = n * 10 + (unsigned long)(v[i] - '0');
	}
	if (n > max)
		return -EINVAL;
	*dst = (unsigned)n;
	return 0;
}

int guest_boot_parse(const char *cmdline, struct guest_boot *b, char *err, size_t errlen)
{
	const char *p = cmdline;

	memset(b, 0, sizeof(*b));
	snprintf(b->ifname, sizeof(b->ifname), "eth0");
	snprintf(b->port, sizeof(b->port), "crgw.0");
	b->ports = 1;
	while (*p) {
		const char *word, *eq, *val;
		size_t wlen, klen, vlen;
		int e = 0;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		word = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		wlen = (size_t)(p - word);
		if (wlen < 6 || strncmp(word, "crgw.", 5) != 0)
			continue;
		eq = memchr(word, '=', wlen);
		if (!eq) {
			snprintf(err, errlen, "%.*s: crgw.* parameters take a value", (int)wlen, word);
			return -EINVAL;
		}
		klen = (size_t)(eq - word);
		val = eq + 1;
		vlen = wlen - klen - 1;
#define KEY(name) (klen == sizeof(name) - 1 && !strncmp(word, name, klen))
		if (KEY("crgw.ip"))
			e = take(b->ip, sizeof(b->ip), val, vlen);
		else if (KEY("crgw.gw"))
			e = take(b->gw, sizeof(b->gw), val, vlen);
		else if (KEY("crgw.dns"))
			e = take(b->dns, sizeof(b->dns), val, vlen);
		else if (KEY("crgw.if"))
			e = vlen ? take(b->ifname, sizeof(b->ifname), val, vlen) : -EINVAL;
		else if (KEY("crgw.hostname"))
			e = take(b->hostname, sizeof(b->hostname), val, vlen);
		else if (KEY("crgw.port"))
			e = vlen ? take(b->port, sizeof(b->port), val, vlen) : -EINVAL;
		else if (KEY("crgw.ports"))
			e = take_uint(&b->ports, val, vlen, AGENT_PORTS_MAX) || b->ports == 0 ? -EINVAL : 0;
		else if (KEY("crgw.mtu"))
			e = take_uint(&b->mtu, val, vlen, 65535);
		else if (KEY("crgw.root"))
			/* A device node, nothing else: "/dev/vda" */
			e = vlen > 5 && !strncmp(val, "/dev/", 5) && !memmem(val, vlen, "..", 2)
				? take(b->root, sizeof(b->root), val, vlen)
				: -EINVAL;
		else if (KEY("crgw.vsock"))
			e = take_uint(&b->vsock, val, vlen, 0xfffffffeu);
		else if (KEY("crgw.ws"))
			e = (vlen == 4 && !strncmp(val, "copy", 4)) || (vlen == 2 && !strncmp(val, "ro", 2))
				? take(b->ws, sizeof(b->ws), val, vlen)
				: -EINVAL;
			/* Other crgw.* names are for later versions: ignored, so an older agent still boots. */
#undef KEY
		if (e) {
			snprintf(err, errlen, "%.*s: bad value", (int)wlen, word);
			return -EINVAL;
		}
	}
	return 0;
}

static void mount_one(const char *src, const char *dir, const char *type, unsigned long flags, const char *data)
{
	mkdir(dir, 0755);
	/* EBUSY: an initramfs mounted it already and moved it here. */
	if (mount(src, dir, type, flags, data) && errno != EBUSY)
		guest_log("mounting %s on %s: %s", type, dir, strerror(errno));
}

int guest_switch_root(const char *dev, int wait_ms, char *err, size_t errlen)
{
	static const char *const moved[] = {"/dev", "/proc", "/sys", "/run", "/tmp"};
	struct stat st;
	char dst[64];

	/* The disk's driver probes asynchronously after its module loads. */
	for (int waited = 0; stat(dev, &st) != 0 && waited < wait_ms; waited += 20)
		usleep(20000);
	if (stat(dev, &st) != 0 || !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "%s: no such block device", dev);
		return -ENODEV;
	}
	mkdir("/newroot", 0755);
	if (mount(dev, "/newroot", "ext4", MS_NOATIME, NULL)) {
		int e = -errno;

		snprintf(err, errlen, "mounting %s: %s", dev, strerror(errno));
		return e;
	}
	for (size_t i = 0; i < sizeof(moved) / sizeof(moved[0]); i++) {
		snprintf(dst, sizeof(dst), "/newroot%s", moved[i]);
		mkdir(dst, 0755);
		/* What did not move is mounted again inside by guest_mount_all. */
		if (mount(moved[i], dst, NULL, MS_MOVE, NULL))
			guest_log("moving %s: %s", moved[i], strerror(errno));
	}
	if (chdir("/newroot") || mount(".", "/", NULL, MS_MOVE, NULL) || chroot(".") || chdir("/")) {
		int e = -errno;

		snprintf(err, errlen, "switching to %s: %s", dev, strerror(errno));
		return e;
	}
	return 0;
}

/*
 * The virtio disk whose ext4 volume label is `label` (the host names the workspace's disks so), waiting
 * up to `wait_ms` for it: disks probe asynchronously. Returns 0 with "/dev/vdX" in `dev`, or -ENODEV.
 */
static int disk_by_label(const char *label, int wait_ms, char *dev, size_t devlen)
{
	for (int waited = 0;; waited += 20) {
		DIR *d = opendir("/sys/block");
		struct dirent *e;
		int found = 0;

		while (d && !found && (e = readdir(d))) {
			unsigned char sb[136];
			int fd;

			if (strncmp(e->d_name, "vd", 2) || strlen(e->d_name) > 16)
				continue;
			snprintf(dev, devlen, "/dev/%.16s", e->d_name);
			fd = open(dev, O_RDONLY | O_CLOEXEC);
			/* The superblock at 1024: the magic 0xEF53 at 56, the volume name at 120 (16 bytes). */
			if (fd >= 0 && pread(fd, sb, sizeof(sb), 1024) == (ssize_t)sizeof(sb) && sb[56] == 0x53 &&
			    sb[57] == 0xef && !strncmp((const char *)sb + 120, label, 16))
				found = 1;
			if (fd >= 0)
				close(fd);
		}
		if (d)
			closedir(d);
		if (found)
			return 0;
		if (waited >= wait_ms)
			return -ENODEV;
		usleep(20000);
	}
}

int guest_mount_workspace(const char *mode, char *err, size_t errlen)
{
	static const char lower[] = "/run/crgw/ws/lower", upper[] = "/run/crgw/ws/upper";
	const unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOATIME;
	char dev[64];
	bool copy = !strcmp(mode, "copy");
	int e;

	mkdir("/run/crgw", 0700);
	mkdir("/run/crgw/ws", 0700);
	/* Where commands start: an image's root may lack it, and the built-in image's is the initramfs. */
	if (mkdir("/workspace", 0755) && errno != EEXIST) {
		e = -errno;
		snprintf(err, errlen, "/workspace: %s", strerror(errno));
		return e;
	}
	if (disk_by_label(GUEST_WS_LOWER_LABEL, 10000, dev, sizeof(dev))) {
		snprintf(err, errlen, "no disk labelled %s (the workspace)", GUEST_WS_LOWER_LABEL);
		return -ENODEV;
	}
	if (!copy) {
		if (mount(dev, "/workspace", "ext4", flags | MS_RDONLY, NULL)) {
			e = -errno;
			snprintf(err, errlen, "mounting the workspace %s: %s", dev, strerror(errno));
			return e;
		}
		return 0;
	}
	mkdir(lower, 0700);
	mkdir(upper, 0700);
	if (mount(dev, lower, "ext4", flags | MS_RDONLY, NULL)) {
		e = -errno;
		snprintf(err, errlen, "mounting the workspace %s: %s", dev, strerror(errno));
		return e;
	}
	if (disk_by_label(GUEST_WS_UPPER_LABEL, 10000, dev, sizeof(dev))) {
		snprintf(err, errlen, "no disk labelled %s (the workspace's changes)", GUEST_WS_UPPER_LABEL);
		return -ENODEV;
	}
	if (mount(dev, upper, "ext4", flags, NULL)) {
		e = -errno;
		snprintf(err, errlen, "mounting the workspace's changes %s: %s", dev, strerror(errno));
		return e;
	}
	mkdir("/run/crgw/ws/upper/upper", 0755);
	mkdir("/run/crgw/ws/upper/work", 0700);
	/*
	 * The host reads the change layer as overlayfs writes it without options: whiteouts, opaque
	 * directories, whole files copied up. Redirects and metadata-only copies would hide changes from it.
	 */
	if (mount("overlay", "/workspace", "overlay", MS_NOSUID | MS_NODEV,
		  "lowerdir=/run/crgw/ws/lower,upperdir=/run/crgw/ws/upper/upper,workdir=/run/crgw/ws/upper/work,"
		  "redirect_dir=off,index=off,metacopy=off,xino=off")) {
		e = -errno;
		snprintf(err, errlen, "the workspace's overlay: %s", strerror(errno));
		return e;
	}
	return 0;
}

void guest_mount_all(void)
{
	const unsigned long common = MS_NOSUID | MS_NODEV;

	mount_one("proc", "/proc", "proc", common | MS_NOEXEC, NULL);
	mount_one("sysfs", "/sys", "sysfs", common | MS_NOEXEC, NULL);
	mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	/* A private instance: the ptys of the commands, and /dev/ptmx (devtmpfs's node) finds it beside it. */
	mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
	mount_one("tmpfs", "/dev/shm", "tmpfs", common, "mode=1777");
	mount_one("tmpfs", "/tmp", "tmpfs", common, "mode=1777");
	mount_one("tmpfs", "/run", "tmpfs", common, "mode=0755");
}

static int if_flags_up(int sock, const char *name)
{
	struct ifreq ifr = {0};

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr))
		return -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(sock, SIOCSIFFLAGS, &ifr) ? -errno : 0;
}

static void set_sin(struct sockaddr *sa, struct in_addr a)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = a};

	memcpy(sa, &sin, sizeof(sin));
}

int guest_network_up(const struct guest_boot *b, char *err, size_t errlen)
{
	struct in_addr addr, mask, gw, dns;
	char ip[48], *slash;
	unsigned prefix = 32;
	struct ifreq ifr = {0};
	int sock, e = 0;

	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	if ((e = if_flags_up(sock, "lo")))
		guest_log("bringing up lo: %s", strerror(-e));
	e = 0;
	if (!b->ip[0])
		goto out; /* no address given: a VM with no network */
	snprintf(ip, sizeof(ip), "%s", b->ip);
	slash = strchr(ip, '/');
	if (slash) {
		*slash = '\0';
		if (take_uint(&prefix, slash + 1, strlen(slash + 1), 32)) {
			snprintf(err, errlen, "crgw.ip=%s: the prefix length is 0 to 32", b->ip);
			e = -EINVAL;
			goto out;
		}
	}
	if (inet_pton(AF_INET, ip, &addr) != 1 || (b->gw[0] && inet_pton(AF_INET, b->gw, &gw) != 1)) {
		snprintf(err, errlen, "crgw.ip=%s crgw.gw=%s: not IPv4 addresses", b->ip, b->gw);
		e = -EINVAL;
		goto out;
	}
	mask.s_addr = htonl(prefix ? ~0u << (32 - prefix) : 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", b->ifname);
	set_sin(&ifr.ifr_addr, addr);
	if (ioctl(sock, SIOCSIFADDR, &ifr)) {
		e = -errno;
		snprintf(err, errlen, "%s: setting address %s: %s", b->ifname, ip, strerror(errno));
		goto out;
	}
	set_sin(&ifr.ifr_netmask, mask);
	if (ioctl(sock, SIOCSIFNETMASK, &ifr)) {
		e = -errno;
		snprintf(err, errlen, "%s: setting the netmask: %s", b->ifname, strerror(errno));
		goto out;
	}
	if (b->mtu) {
		ifr.ifr_mtu = (int)b->mtu;
		if (ioctl(sock, SIOCSIFMTU, &ifr))
			guest_log("%s: MTU %u: %s", b->ifname, b->mtu, strerror(errno));
	}
	if ((e = if_flags_up(sock, b->ifname))) {
		snprintf(err, errlen, "%s: bringing it up: %s", b->ifname, strerror(-e));
		goto out;
	}
	if (b->gw[0]) {
		struct rtentry rt = {0};
		struct in_addr any = {0};

		set_sin(&rt.rt_dst, any);
		set_sin(&rt.rt_genmask, any);
		set_sin(&rt.rt_gateway, gw);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		rt.rt_dev = (char *)b->ifname;
		if (ioctl(sock, SIOCADDRT, &rt) && errno != EEXIST) {
			e = -errno;
			snprintf(err, errlen, "the default route via %s: %s", b->gw, strerror(errno));
			goto out;
		}
	}
out:
	close(sock);
	if (e == 0 && b->dns[0]) {
		/* The gateway is the only resolver; nothing else is reachable on port 53 anyway. */
		FILE *f;

		if (inet_pton(AF_INET, b->dns, &dns) != 1) {
			snprintf(err, errlen, "crgw.dns=%s: not an IPv4 address", b->dns);
			return -EINVAL;
		}
		mkdir("/etc", 0755);
		f = fopen("/etc/resolv.conf.crgw-new", "we");
		if (!f || fprintf(f, "nameserver %s\noptions edns0\n", b->dns) < 0 || fclose(f) ||
		    rename("/etc/resolv.conf.crgw-new", "/etc/resolv.conf")) {
			snprintf(err, errlen, "writing /etc/resolv.conf: %s", strerror(errno));
			return -errno;
		}
	}
	if (e == 0 && b->hostname[0] && sethostname(b->hostname, strlen(b->hostname)))
		guest_log("hostname %s: %s", b->hostname, strerror(errno));
	return e;
}

int guest_load_modules(const char *list)
{
	FILE *f = fopen(list, "re");
	char line[512];
	int loaded = 0;

	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof(line), f)) {
		int fd;

		line[strcspn(line, "\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		fd = open(line, O_RDONLY | O_CLOEXEC);
		/* EEXIST: built in, or loaded by an initramfs before us. */
		if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST))
			guest_log("loading %s: %s", line, strerror(errno));
		else
			loaded++;
		if (fd >= 0)
			close(fd);
	}
	fclose(f);
	return loaded;
}

/* The /dev node of the virtio-serial port named `name`, once: 1 found, 0 not (yet). */
static int find_port(const char *name, char *dev, size_t devlen)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *ent;
	int found = 0;

	if (!d)
		return 0;
	while (!found && (ent = readdir(d))) {
		char path[300], buf[128];
		ssize_t n;
		int fd;

		if (ent->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", ent->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (!strcmp(buf, name)) {
			snprintf(dev, devlen, "/dev/%s", ent->d_name);
			found = 1;
		}
	}
	closedir(d);
	return found;
}

int guest_open_port(const char *name, int wait_ms)
{
	char dev[300];

	/* The port appears when virtio_console is loaded and has probed: an initramfs may still be at it. */
	for (int waited = 0;; waited += 20) {
		if (find_port(name, dev, sizeof(dev))) {
			int fd = open(dev, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);

			if (fd >= 0 || waited >= wait_ms)
				return fd >= 0 ? fd : -errno;
		} else if (waited >= wait_ms) {
			return -ENOENT;
		}
		nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000}, NULL);
	}
}
