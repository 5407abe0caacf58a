/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The init of test vm-kernel's boot: a static program the test puts in an initramfs as /init. It loads the
 * modules /etc/crgw-guest/modules lists, reports on the console what the kernel then shows of the guest's devices
 * (virtio-serial ports by name, block devices, network interfaces), and powers the VM off.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <unistd.h>

static void list(const char *dir, const char *label, const char *file)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	printf("boot-init: %s:", label);
	while (d && (de = readdir(d))) {
		char path[512], buf[128] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		if (!file) {
			printf(" %s", de->d_name);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s/%s", dir, de->d_name, file);
		f = fopen(path, "re");
		if (f && fgets(buf, sizeof(buf), f))
			buf[strcspn(buf, "\n")] = '\0';
		if (f)
			fclose(f);
		printf(" %s=%s", de->d_name, buf);
	}
	printf("\n");
	if (d)
		closedir(d);
}

int main(void)
{
	char line[512];
	unsigned loaded = 0, failed = 0;
	FILE *f;

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	f = fopen("/etc/crgw-guest/modules", "re");
	while (f && fgets(line, sizeof(line), f)) {
		int fd;

		line[strcspn(line, "\n")] = '\0';
		fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && syscall(SYS_finit_module, fd, "", 0) == 0) {
			loaded++;
		} else {
			printf("boot-init: %s: %m\n", line);
			failed++;
		}
		if (fd >= 0)
			close(fd);
	}
	if (f)
		fclose(f);
	printf("boot-init: modules loaded=%u failed=%u\n", loaded, failed);
	/* Probing runs asynchronously after the load; the devices show up within moments. */
	for (int i = 0; i < 50 && access("/sys/class/virtio-ports/vport1p1", F_OK) != 0; i++)
		usleep(20000);
	list("/sys/class/virtio-ports", "ports", "name");
	list("/sys/block", "block", NULL);
	list("/sys/class/net", "net", NULL);
	printf("boot-init: done\n");
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
