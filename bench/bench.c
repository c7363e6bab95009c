// SPDX-License-Identifier: MIT
/*
 * migratectl-bench: the migration matrix next to the machine's physical
 * limits, all measured in one run (docs/performance.md).
 *
 *   memcpy bandwidth      one thread, pre-faulted buffers, best of 3
 *   loopback TCP          N sender + N receiver threads, 1 MiB writes
 *   migrations            migratectl start local local --json per cell
 *
 * Usage: migratectl-bench [--mem SIZE] [--wss LIST] [--streams LIST]
 *                         [--compress LIST] [--repeat N] [--markdown]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <migrate/parse.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double memcpy_gbps(void)
{
	size_t n = 1UL << 30;
	char *a = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	char *b = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	double best = 0;

	if (a == MAP_FAILED || b == MAP_FAILED)
		return 0;
	memset(a, 1, n);
	memset(b, 2, n);
	for (int i = 0; i < 3; i++) {
		double t = now_s();

		memcpy(b, a, n);
		t = now_s() - t;
		if ((double)n / t > best)
			best = (double)n / t;
	}
	munmap(a, n);
	munmap(b, n);
	return best / 1e9;
}

struct tcp_job {
	int fd;
	size_t bytes;
};

static void *tcp_send(void *arg)
{
	struct tcp_job *j = arg;
	char *buf = malloc(1 << 20);
	size_t left = j->bytes;

	memset(buf, 0x5a, 1 << 20);
	while (left) {
		ssize_t n = send(j->fd, buf, left < (1 << 20) ? left : (1 << 20), 0);

		if (n <= 0)
			break;
		left -= (size_t)n;
	}
	free(buf);
	return NULL;
}

static void *tcp_recv(void *arg)
{
	struct tcp_job *j = arg;
	char *buf = malloc(1 << 20);
	size_t left = j->bytes;

	while (left) {
		ssize_t n = recv(j->fd, buf, 1 << 20, 0);

		if (n <= 0)
			break;
		left -= (size_t)n;
	}
	free(buf);
	return NULL;
}

/* Loopback TCP with n streams, each carrying total/n bytes. */
static double tcp_gbps(int n, size_t total)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct tcp_job tx[16], rx[16];
	pthread_t tt[16], rt[16];
	double t;

	bind(l, (struct sockaddr *)&sa, sizeof(sa));
	listen(l, 16);
	getsockname(l, (struct sockaddr *)&sa, &sl);
	for (int i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);

		connect(c, (struct sockaddr *)&sa, sizeof(sa));
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		tx[i] = (struct tcp_job){ c, total / (size_t)n };
		rx[i] = (struct tcp_job){ accept(l, NULL, NULL), total / (size_t)n };
	}
	t = now_s();
	for (int i = 0; i < n; i++) {
		pthread_create(&rt[i], NULL, tcp_recv, &rx[i]);
		pthread_create(&tt[i], NULL, tcp_send, &tx[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(tt[i], NULL);
		pthread_join(rt[i], NULL);
	}
	t = now_s() - t;
	for (int i = 0; i < n; i++) {
		close(tx[i].fd);
		close(rx[i].fd);
	}
	close(l);
	return (double)total / t / 1e9;
}

static int run_capture(const char *cmd, char *out, size_t n)
{
	FILE *p = popen(cmd, "r");
	size_t got;

	if (!p)
		return -1;
	got = fread(out, 1, n - 1, p);
	out[got] = '\0';
	return pclose(p);
}

static double field(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

static int split(char *s, char **v, int max)
{
	int n = 0;

	for (char *t = strtok(s, ","); t && n < max; t = strtok(NULL, ","))
		v[n++] = t;
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "wss", required_argument, NULL, 'w' },
		{ "streams", required_argument, NULL, 's' },
		{ "compress", required_argument, NULL, 'c' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "markdown", no_argument, NULL, 'M' },
		{ 0 }
	};
	char wss_s[128] = "0,64M,512M", streams_s[64] = "1,2,4", comp_s[64] = "none,zstd";
	char mem[32] = "2G", vcpus[8] = "1";
	char *wss[8], *streams[8], *comp[8];
	int nw, ns, nc, c;
	bool md = false;
	double mc, tcp[17] = { 0 };
	char self[512];
	ssize_t sl;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': snprintf(mem, sizeof(mem), "%s", optarg); break;
		case 'w': snprintf(wss_s, sizeof(wss_s), "%s", optarg); break;
		case 's': snprintf(streams_s, sizeof(streams_s), "%s", optarg); break;
		case 'c': snprintf(comp_s, sizeof(comp_s), "%s", optarg); break;
		case 'v': snprintf(vcpus, sizeof(vcpus), "%s", optarg); break;
		case 'M': md = true; break;
		default:
			fputs("usage: migratectl-bench [--mem SIZE] [--wss LIST] [--streams LIST] "
			      "[--compress LIST] [--vcpus N] [--markdown]\n", stderr);
			return 2;
		}
	}
	nw = split(wss_s, wss, 8);
	ns = split(streams_s, streams, 8);
	nc = split(comp_s, comp, 8);
	/* migratectl sits next to this binary in the build directory */
	sl = readlink("/proc/self/exe", self, sizeof(self) - 32);
	if (sl <= 0)
		return 1;
	self[sl] = '\0';
	*strrchr(self, '/') = '\0';
	strcat(self, "/migratectl");

	mc = memcpy_gbps();
	for (int i = 0; i < ns; i++) {
		int n = atoi(streams[i]);

		if (n >= 1 && n <= 16)
			tcp[n] = tcp_gbps(n, 4UL << 30);
	}
	printf(md ? "| limit | GB/s |\n|---|---|\n| memcpy, 1 thread | %.2f |\n" :
		    "memcpy 1 thread: %.2f GB/s\n", mc);
	for (int i = 0; i < ns; i++) {
		int n = atoi(streams[i]);

		printf(md ? "| loopback TCP, %d stream%s | %.2f |\n" : "loopback TCP %d stream%s: %.2f GB/s\n",
		       n, n > 1 ? "s" : "", tcp[n]);
	}
	if (md)
		printf("\n| wss | streams | compression | total ms | downtime ms | throughput GB/s | "
		       "vs TCP | wire MiB | rounds | src CPU s | dst CPU s | prepare ms | result |\n"
		       "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	else
		printf("%-6s %-7s %-5s %8s %9s %8s %6s %8s %6s %6s %6s %8s %s\n", "wss", "streams",
		       "comp", "total_ms", "downtime", "GB/s", "vsTCP", "wireMiB", "rounds", "srcCPU",
		       "dstCPU", "prepare", "result");
	fflush(stdout);
	for (int w = 0; w < nw; w++)
		for (int s = 0; s < ns; s++)
			for (int k = 0; k < nc; k++) {
				char cmd[1024], out[16384];
				double thr, ratio;
				int st, n = atoi(streams[s]);
				const char *res;

				snprintf(cmd, sizeof(cmd), "%s start local local --json --no-verify "
					 "--streams %s --compress %s --lab mem=%s,vcpus=%s,wss=%s 2>/dev/null",
					 self, streams[s], comp[k], mem, vcpus, wss[w]);
				st = run_capture(cmd, out, sizeof(out));
				res = strstr(out, "\"result\":\"completed\"") ? "completed" :
				      (st ? "FAILED" : "?");
				thr = field(out, "throughput_bps") / 1e9;
				ratio = n >= 1 && n <= 16 && tcp[n] > 0 ? thr / tcp[n] : 0;
				printf(md ? "| %s | %s | %s | %.0f | %.0f | %.2f | %.0f%% | %.0f | %.0f | %.2f | "
					    "%.2f | %.0f | %s |\n" :
					    "%-6s %-7s %-5s %8.0f %9.0f %8.2f %5.0f%% %8.0f %6.0f %6.2f %6.2f %8.0f %s\n",
				       wss[w], streams[s], comp[k], field(out, "total_ms"),
				       field(out, "downtime_ms"), thr, ratio * 100,
				       field(out, "wire_bytes") / (1 << 20), field(out, "rounds"),
				       field(out, "src_cpu_ms") / 1000, field(out, "dst_cpu_ms") / 1000,
				       field(out, "prepare_ms"), res);
				fflush(stdout);
			}
	return 0;
}
