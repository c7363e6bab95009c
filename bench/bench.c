// SPDX-License-Identifier: MIT
/*
 * migratectl-bench: the migration matrix next to the machine's physical
 * limits, all measured in one run (docs/performance.md).
 *
 *   memcpy bandwidth      one thread, pre-faulted buffers, best of 3
 *   loopback TCP          N sender + N receiver threads, io_uring
 *                         sendmsg/recvmsg of 1 MiB or 512 KiB, with and
 *                         without SO_RCVLOWAT, from and into one cache-hot
 *                         buffer each, and RAM to RAM (a region the size of
 *                         the guest on each side); the best of the medians
 *   migrations            migratectl start local local --json per cell, each
 *                         run right after its own RAM-to-RAM measurements:
 *                         one run per way, the best kept (the limit errs
 *                         high, so the ratio errs low), and one run the
 *                         agents' way after a pre-fault like the
 *                         destination's
 *
 * Usage: migratectl-bench [--mem SIZE] [--wss LIST] [--streams LIST]
 *                         [--compress LIST] [--checksum LIST] [--vcpus N]
 *                         [--repeat N] [--markdown]
 *
 * With --repeat N every cell runs N times and the run with the median total
 * time is printed: the machine is noisy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
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

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

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
	char *buf;        /* NULL: one 1 MiB buffer, reused (cache-hot) */
	size_t bytes;
	size_t chunk;     /* bytes per sendmsg/recvmsg, at most 1 MiB */
	bool lowat;       /* receiver: wake only when a whole message is in */
	double cpu_s;     /* this thread's CPU time for the transfer */
};

/* CPU seconds of the last transfer tcp_gbps() made: its senders, its
 * receivers (set by tcp_after_prefault_gbps()'s single run). */
static double last_tx_cpu, last_rx_cpu;

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One side of a stream, through io_uring as the agents do: sendmsg/recvmsg
 * of `chunk` bytes, one in flight, with MSG_WAITALL or (receivers with
 * `lowat`) SO_RCVLOWAT. */
static void *tcp_move(struct tcp_job *j, bool tx)
{
	char *hot = j->buf ? NULL : malloc(1 << 20);
	struct io_uring ring;
	size_t off = 0;
	double cpu0 = thread_cpu_s();

	if (io_uring_queue_init(4, &ring, 0) < 0) {
		free(hot);
		return NULL;
	}
	if (hot)
		memset(hot, 0x5a, 1 << 20);
	while (off < j->bytes) {
		size_t want = j->bytes - off < j->chunk ? j->bytes - off : j->chunk;
		struct iovec iov = { hot ? hot : j->buf + off, want };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct io_uring_cqe *cqe;
		int n;

		if (tx) {
			io_uring_prep_sendmsg(sqe, j->fd, &m, MSG_WAITALL | MSG_NOSIGNAL);
		} else if (j->lowat) {
			/* as the agents do: the mark is what is left of the
			 * message, and no MSG_WAITALL (its retry would keep
			 * waiting for the first mark) */
			size_t left = j->chunk - off % j->chunk;
			int v;

			iov.iov_len = left < j->bytes - off ? left : j->bytes - off;
			v = (int)iov.iov_len;
			setsockopt(j->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v));
			io_uring_prep_recvmsg(sqe, j->fd, &m, 0);
		} else {
			io_uring_prep_recvmsg(sqe, j->fd, &m, MSG_WAITALL);
		}
		io_uring_submit(&ring);
		if (io_uring_wait_cqe(&ring, &cqe) < 0)
			break;
		n = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (!tx && j->lowat) {
		int v = 1;

		setsockopt(j->fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v));
	}
	io_uring_queue_exit(&ring);
	free(hot);
	j->cpu_s = thread_cpu_s() - cpu0;
	return NULL;
}

static void *tcp_send(void *arg)
{
	return tcp_move(arg, true);
}

static void *tcp_recv(void *arg)
{
	return tcp_move(arg, false);
}

/* Index of the median of v[0..n) (n odd, at most 9). */
static int median_of(const double *v, int n)
{
	int order[9];

	for (int i = 0; i < n; i++) {
		int j = i;

		for (; j > 0 && v[order[j - 1]] > v[i]; j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
	return order[n / 2];
}

#define ALL_WAYS 0xfU
#define AGENTS_WAY (1U << 3)  /* 512 KiB messages, SO_RCVLOWAT: what the agents do */

static char *region(size_t n)
{
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* as the lab VM's RAM: transparent huge pages, faulted in before use */
	madvise(p, n, MADV_HUGEPAGE);
	for (size_t i = 0; i < n; i += 8)
		*(uint64_t *)(p + i) = i * 0x9e3779b97f4a7c15ULL;
	return p;
}

/* The RAM-to-RAM regions, made once and kept for the pairings: faulting in
 * 2 x 2 GiB takes seconds.  With the two guests of a migration the tool
 * needs about 4 x --mem of RAM. */
static char *ram_src, *ram_dst;

/* Loopback TCP with n streams, each carrying total/n bytes, moved four
 * ways: 1 MiB or 512 KiB messages (512 KiB is the size of the agents' PAGES
 * frames), receivers woken per segment or (SO_RCVLOWAT) per message.  Each
 * way runs `reps` times; the highest of the four medians is returned, so
 * the limit is the kernel's best, not ours.  Medians, as for the
 * migrations: the best single run on this noisy machine is an outlier.
 * With `ram`, the senders read and the receivers write a pre-faulted
 * region of `total` bytes each, as a migration reads guest RAM and writes
 * the destination's; without it, each thread reuses one cache-hot 1 MiB
 * buffer (the kernel's best case, which never touches DRAM). */
static double tcp_gbps(int n, size_t total, bool ram, int reps, unsigned ways)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct tcp_job tx[16], rx[16];
	pthread_t tt[16], rt[16];
	size_t slice = total / (size_t)n;
	double rate[4][9], best = 0;

	if (ram && !ram_src) {
		ram_src = region(total);
		ram_dst = region(total);
		if (!ram_src || !ram_dst) {
			if (ram_src)
				munmap(ram_src, total);
			if (ram_dst)
				munmap(ram_dst, total);
			ram_src = ram_dst = NULL;
			close(l);
			return 0;
		}
	}
	bind(l, (struct sockaddr *)&sa, sizeof(sa));
	listen(l, 16);
	getsockname(l, (struct sockaddr *)&sa, &sl);
	for (int i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);

		connect(c, (struct sockaddr *)&sa, sizeof(sa));
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		tx[i] = (struct tcp_job){ c, ram ? ram_src + (size_t)i * slice : NULL, slice, 0 };
		rx[i] = (struct tcp_job){ accept(l, NULL, NULL),
					  ram ? ram_dst + (size_t)i * slice : NULL, slice, 0 };
	}
	for (int rep = 0; rep < reps; rep++)
		for (int way = 0; way < 4; way++) {
			double t = now_s();

			if (!(ways & (1U << way)))
				continue;
			for (int i = 0; i < n; i++) {
				tx[i].chunk = rx[i].chunk = way & 1 ? 512U << 10 : 1U << 20;
				rx[i].lowat = way & 2;
			}
			for (int i = 0; i < n; i++) {
				pthread_create(&rt[i], NULL, tcp_recv, &rx[i]);
				pthread_create(&tt[i], NULL, tcp_send, &tx[i]);
			}
			last_tx_cpu = last_rx_cpu = 0;
			for (int i = 0; i < n; i++) {
				pthread_join(tt[i], NULL);
				pthread_join(rt[i], NULL);
				last_tx_cpu += tx[i].cpu_s;
				last_rx_cpu += rx[i].cpu_s;
			}
			t = now_s() - t;
			rate[way][rep] = (double)(slice * (size_t)n) / t;
		}
	for (int way = 0; way < 4; way++) {
		double med;

		if (!(ways & (1U << way)))
			continue;
		med = rate[way][median_of(rate[way], reps)];

		if (med > best)
			best = med;
	}
	for (int i = 0; i < n; i++) {
		close(tx[i].fd);
		close(rx[i].fd);
	}
	close(l);
	return best / 1e9;
}

/*
 * The limit under the migration's own conditions: its data phase starts
 * right after the destination pre-faulted its RAM, never right after
 * another transfer.  This host moves data markedly slower after any other
 * work or an idle gap than in a back-to-back run (docs/performance.md), so
 * the same pre-fault of a fresh region comes first, then one transfer the
 * agents' way.  The region goes only after it, as the destination's RAM
 * stays mapped.
 */
static double tcp_after_prefault_gbps(int n, size_t total)
{
	char *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double g;

	if (p == MAP_FAILED)
		return 0;
	madvise(p, total, MADV_HUGEPAGE);
	if (madvise(p, total, MADV_POPULATE_WRITE) < 0)
		for (size_t i = 0; i < total; i += 4096)
			p[i] = 1;
	g = tcp_gbps(n, total, true, 1, AGENTS_WAY);
	munmap(p, total);
	return g;
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
		{ "checksum", required_argument, NULL, 'C' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "markdown", no_argument, NULL, 'M' },
		{ "devices", required_argument, NULL, 'd' },
		{ 0 }
	};
	char wss_s[128] = "0,64M,512M", streams_s[64] = "1,2,4", comp_s[64] = "none,zstd";
	char mem[32] = "2G", vcpus[8] = "1", sums_s[64] = "pages", devices[96] = "";
	char *wss[8], *streams[8], *comp[8], *sums[4];
	int nw, ns, nc, nsum, c, repeat = 1;
	bool md = false;
	double mc, tcp[17] = { 0 }, tcp_ram[17] = { 0 };
	uint64_t mem_bytes;
	char self[512];
	ssize_t sl;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm': snprintf(mem, sizeof(mem), "%s", optarg); break;
		case 'w': snprintf(wss_s, sizeof(wss_s), "%s", optarg); break;
		case 's': snprintf(streams_s, sizeof(streams_s), "%s", optarg); break;
		case 'c': snprintf(comp_s, sizeof(comp_s), "%s", optarg); break;
		case 'v': snprintf(vcpus, sizeof(vcpus), "%s", optarg); break;
		case 'C': snprintf(sums_s, sizeof(sums_s), "%s", optarg); break;
		case 'r':
			repeat = atoi(optarg);
			if (repeat < 1 || repeat > 9) {
				fputs("migratectl-bench: --repeat takes 1 to 9\n", stderr);
				return 2;
			}
			break;
		case 'M': md = true; break;
		case 'd':
			/* more lab spec keys, for the VM's devices: ",vfio=3" */
			if (strspn(optarg, "abcdefghijklmnopqrstuvwxyz0123456789=,-") != strlen(optarg) ||
			    strlen(optarg) + 2 > sizeof(devices)) {
				fputs("migratectl-bench: --devices takes lab spec keys such as "
				      "vfio=3\n", stderr);
				return 2;
			}
			snprintf(devices, sizeof(devices), ",%s", optarg);
			break;
		default:
			fputs("usage: migratectl-bench [--mem SIZE] [--wss LIST] [--streams LIST] "
			      "[--compress LIST] [--checksum LIST] [--vcpus N] [--repeat N] "
			      "[--markdown] [--devices SPEC]\n", stderr);
			return 2;
		}
	}
	nw = split(wss_s, wss, 8);
	ns = split(streams_s, streams, 8);
	nc = split(comp_s, comp, 8);
	nsum = split(sums_s, sums, 4);
	/* migratectl sits next to this binary in the build directory */
	sl = readlink("/proc/self/exe", self, sizeof(self) - 32);
	if (sl <= 0)
		return 1;
	self[sl] = '\0';
	*strrchr(self, '/') = '\0';
	strcat(self, "/migratectl");

	if (parse_size(mem, &mem_bytes) < 0 || mem_bytes < (1 << 20)) {
		fprintf(stderr, "migratectl-bench: --mem %s is not a size\n", mem);
		return 2;
	}
	mc = memcpy_gbps();
	for (int i = 0; i < ns; i++) {
		int n = atoi(streams[i]);

		if (n >= 1 && n <= 16) {
			tcp[n] = tcp_gbps(n, 2UL << 30, false, 3, ALL_WAYS);
			tcp_ram[n] = tcp_gbps(n, mem_bytes, true, 3, ALL_WAYS);
		}
	}
	printf(md ? "| limit | GB/s |\n|---|---|\n| memcpy, 1 thread | %.2f |\n" :
		    "memcpy 1 thread: %.2f GB/s\n", mc);
	for (int i = 0; i < ns; i++) {
		int n = atoi(streams[i]);

		printf(md ? "| loopback TCP, %d stream%s, hot buffers | %.2f |\n" :
			    "loopback TCP %d stream%s, hot buffers: %.2f GB/s\n",
		       n, n > 1 ? "s" : "", tcp[n]);
		printf(md ? "| loopback TCP, %d stream%s, RAM to RAM (%s) | %.2f |\n" :
			    "loopback TCP %d stream%s, RAM to RAM (%s): %.2f GB/s\n",
		       n, n > 1 ? "s" : "", mem, tcp_ram[n]);
	}
	if (devices[0])
		printf(md ? "\nThe VM's devices: `%s`.\n" : "the VM's devices: %s\n", devices + 1);
	if (md)
		printf("\n| wss | streams | compression | checksum | total ms | downtime ms | throughput GB/s | "
		       "vs TCP hot | vs TCP RAM, paired | vs TCP RAM after a pre-fault, paired | wire MiB | rounds | src CPU s | dst CPU s | "
		       "TCP send CPU s | TCP recv CPU s | torn pages | prepare ms | result |\n"
		       "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	else
		printf("%-6s %-7s %-5s %-6s %8s %9s %8s %6s %6s %6s %8s %6s %6s %6s %6s %6s %6s %8s %s\n",
		       "wss", "streams", "comp", "sums", "total_ms", "downtime", "GB/s", "vsHot", "vsRAM",
		       "vsCold", "wireMiB", "rounds", "srcCPU", "dstCPU", "tcpTx", "tcpRx", "torn",
		       "prepare", "result");
	fflush(stdout);
	for (int w = 0; w < nw; w++)
		for (int s = 0; s < ns; s++)
			for (int k = 0; k < nc * nsum; k++) {
				static char runs[9][16384];
				char cmd[1024], *out;
				double thr, ratio, ratio_ram, ratio_cold, ms[9], pair[9], pair_cold[9];
				double tcp_tx_cpu[9], tcp_rx_cpu[9];
				int st = 0, n = atoi(streams[s]), m;
				const char *res;

				/* a copy: both agents are local, so auto would hand RAM over */
				snprintf(cmd, sizeof(cmd), "%s start local local --json --no-verify "
					 "--handover never --streams %s --compress %s --checksum %s "
					 "--lab mem=%s,vcpus=%s,wss=%s%s 2>/dev/null",
					 self, streams[s], comp[k / nsum], sums[k % nsum], mem, vcpus, wss[w],
					 devices);
				/* the run with the median total time stands for the cell */
				/* Each run is paired with loopback TCP RAM to RAM
				 * measured just before it: the machine's speed drifts
				 * by tens of percent within minutes, so a ratio to a
				 * limit taken at the start of the matrix says more
				 * about the drift than about the migration. */
				for (int i = 0; i < repeat; i++) {
					bool ok = n >= 1 && n <= 16;
					double lim = ok ? tcp_gbps(n, mem_bytes, true, 1, ALL_WAYS) : 0;
					double cold = ok ? tcp_after_prefault_gbps(n, mem_bytes) : 0;

					/* what plain threads burned for that same transfer */
					tcp_tx_cpu[i] = ok ? last_tx_cpu : 0;
					tcp_rx_cpu[i] = ok ? last_rx_cpu : 0;

					st |= run_capture(cmd, runs[i], sizeof(runs[i]));
					ms[i] = field(runs[i], "total_ms");
					pair[i] = lim > 0 ? field(runs[i], "throughput_bps") / 1e9 / lim : 0;
					pair_cold[i] = cold > 0 ? field(runs[i], "throughput_bps") / 1e9 / cold : 0;
				}
				m = median_of(ms, repeat);
				out = runs[m];
				res = strstr(out, "\"result\":\"completed\"") ? "completed" :
				      (st ? "FAILED" : "?");
				thr = field(out, "throughput_bps") / 1e9;
				ratio = n >= 1 && n <= 16 && tcp[n] > 0 ? thr / tcp[n] : 0;
				ratio_ram = pair[median_of(pair, repeat)];
				ratio_cold = pair_cold[median_of(pair_cold, repeat)];
				printf(md ? "| %s | %s | %s | %s | %.0f | %.0f | %.2f | %.0f%% | %.0f%% | %.0f%% | "
					    "%.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %s |\n" :
					    "%-6s %-7s %-5s %-6s %8.0f %9.0f %8.2f %5.0f%% %5.0f%% %5.0f%% %8.0f "
					    "%6.0f %6.2f %6.2f %6.2f %6.2f %6.0f %8.0f %s\n",
				       wss[w], streams[s], comp[k / nsum], sums[k % nsum],
				       field(out, "total_ms"),
				       field(out, "downtime_ms"), thr, ratio * 100, ratio_ram * 100,
				       ratio_cold * 100,
				       field(out, "wire_bytes") / (1 << 20), field(out, "rounds"),
				       field(out, "src_cpu_ms") / 1000, field(out, "dst_cpu_ms") / 1000,
				       tcp_tx_cpu[m], tcp_rx_cpu[m],
				       field(out, "torn_pages"), field(out, "prepare_ms"), res);
				fflush(stdout);
			}
	return 0;
}
