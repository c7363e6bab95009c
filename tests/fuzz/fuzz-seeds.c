// SPDX-License-Identifier: MIT
/*
 * The fuzz targets' seed corpora, made by this build's own encoders:
 *
 *   fuzz-seeds DIR   writes DIR/frame, DIR/request and DIR/spec
 *
 * Valid inputs take the fuzzer past the first checks at once: sealed
 * frames of each type the receiver looks into (PAGES plain, tagged and
 * zstd, DEVICE_DATA, ERROR, every REQUEST), a stream of several frames,
 * each operation's request, a few lab specs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <migrate/agent.h>
#include <migrate/fault.h>
#include <migrate/lab.h>
#include <migrate/vm.h>
#include <migrate/wire.h>
#include <migrate/wire-order.h>

#define PAGE MIG_PAGE_SIZE

static const char *out_dir;

static void die(const char *what)
{
	fprintf(stderr, "fuzz-seeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put(const char *sub, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, sub, name);
	f = fopen(path, "wb");
	if (!f || (n && fwrite(p, n, 1, f) != 1) || fclose(f) != 0)
		die(path);
}

/* A sealed frame appended to buf (which has room). */
static size_t frame(uint8_t *buf, uint16_t type, uint32_t flags, uint64_t seq, const void *p,
		    size_t n)
{
	struct iovec iov = { (void *)p, n };
	struct mig_frame_hdr h;

	mig_frame_seal(&h, type, flags, seq, &iov, 1);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), p, n);
	return sizeof(h) + n;
}

static int tag_odd(void *ctx, uint64_t pfn, void *page, void *tag)
{
	(void)ctx;
	(void)page;
	if (!(pfn & 1))
		return 0;
	memset(tag, (int)pfn, MIG_PAGE_TAG_SIZE);
	return 1;
}

/* A PAGES frame's meta for pages 0..3 of ram (page 1 zero), as the source
 * encodes them; zstd: as if the data were compressed to 100 bytes. */
static size_t pages_meta(uint8_t *meta, const uint8_t *ram, bool tagged, bool zstd)
{
	static const uint64_t pfns[] = { 0, 1, 2, 3 };
	static uint8_t gather[4 * PAGE];
	struct mig_pages_hdr ph;
	struct mig_page_ent *ent = (struct mig_page_ent *)(meta + sizeof(ph));
	int nz;

	nz = mig_pages_encode(ram, pfns, 4, 1, true, ent, (struct iovec[4]){ 0 }, NULL,
			      tagged ? gather : NULL, tagged ? tag_odd : NULL, NULL);
	ph = (struct mig_pages_hdr){ .count = 4, .zero_count = 4 - (uint32_t)nz, .round = 1,
				     .data_len = zstd ? 100 : (uint32_t)nz * PAGE };
	mig_wire_le(&mig_wl_pages_hdr, &ph, 1);
	memcpy(meta, &ph, sizeof(ph));
	return mig_pages_meta_len(ent, 4);
}

/* Operation op's request with a valid body into buf; returns its length. */
static size_t request(uint8_t *buf, uint32_t op)
{
	struct mig_request rq = { .op = op };
	uint8_t *body = buf + sizeof(rq);
	struct mig_lab_wire lw;
	struct lab_config cfg;
	size_t n = 0;

	lab_config_default(&cfg);
	lab_spec_parse("mem=64M,vcpus=1,wss=4M", &cfg, NULL);
	lab_to_wire(&cfg, &lw);
	switch (op) {
	case MIG_OP_VM_CREATE: {
		struct mig_vm_create b = { .name = "vm1", .spec = "mem=64M,vcpus=1,wss=4M" };

		memcpy(body, &b, n = sizeof(b));
		break;
	}
	case MIG_OP_VM_DESTROY:
	case MIG_OP_VM_DESCRIBE: {
		struct mig_vm_ref b = { .name = "vm1" };

		memcpy(body, &b, n = sizeof(b));
		break;
	}
	case MIG_OP_MIG_INCOMING: {
		struct mig_incoming b = { .id = { 1 }, .name = "vm1", .streams = 2,
					  .listen_host = "127.0.0.1", .lab = lw };

		mig_wire_le(&mig_wl_incoming, &b, 1);
		memcpy(body, &b, n = sizeof(b));
		break;
	}
	case MIG_OP_MIG_OUTGOING: {
		struct mig_outgoing b = { .id = { 1 }, .name = "vm1", .dest_addr = "127.0.0.1:7000",
					  .streams = 2, .codec = 1, .level = 1,
					  .downtime_limit_ms = 300, .checksum = 3 };

		mig_wire_le(&mig_wl_outgoing, &b, 1);
		memcpy(body, &b, n = sizeof(b));
		break;
	}
	case MIG_OP_MIG_CANCEL: {
		struct mig_cancel b = { .id = { 1 } };

		memcpy(body, &b, n = sizeof(b));
		break;
	}
	case MIG_OP_VM_RESOLVE: {
		struct mig_vm_resolve b = { .name = "vm1", .id = { 1 },
					    .action = MIG_RESOLVE_RESUME };

		mig_wire_le(&mig_wl_vm_resolve, &b, 1);
		memcpy(body, &b, n = sizeof(b));
		break;
	}
	case MIG_OP_VM_CHECK: {
		struct mig_vm_check b = { .name = "vm1", .vm = { .lab = lw, .nr_devices = 1 } };
		struct mig_manifest_entry e = { .cls = 1, .version = 1, .desc_len = 4,
						.desc = "cpu" };

		mig_wire_le(&mig_wl_vm_check, &b, 1);
		mig_wire_le(&mig_wl_manifest_entry, &e, 1);
		memcpy(body, &b, sizeof(b));
		memcpy(body + sizeof(b), &e, sizeof(e));
		n = sizeof(b) + sizeof(e);
		break;
	}
	case MIG_OP_FAULT_ARM: {
		struct mig_fault_plan b = { .vm = "vm1", .action = MIG_FAULT_A_ERROR,
					    .point = MIG_FAULT_DEVICE_STEP + 1, .stage = -1,
					    .dev_class = -1, .from = -1, .to = -1, .frame_type = -1,
					    .stream = -1, .nth = 2, .err = 5 };

		mig_wire_le(&mig_wl_fault_plan, &b, 1);
		memcpy(body, &b, n = sizeof(b));
		break;
	}
	default:                /* VM_LIST, MIG_LIST: no body */
		break;
	}
	mig_wire_le(&mig_wl_request, &rq, 1);
	memcpy(buf, &rq, sizeof(rq));
	return sizeof(rq) + n;
}

int main(int argc, char **argv)
{
	static const char *const specs[] = {
		"mem=64M,vcpus=1,wss=4M",
		"mem=2G,vcpus=4,wss=128M,pattern=random,rate=5000",
		"rate=max,pattern=seq",
		"dirty-log=bitmap,mem=1GiB,vcpus=1",
		"mem=64M,vcpus=2,wss=4M,msi=4",
	};
	static uint8_t ram[4 * PAGE], meta[MIG_PAGES_META_MAX], buf[1 << 16], stream[1 << 17];
	struct mig_device_data dd = { .cls = 1, .offset = 0, .round = 1, .len = 16 };
	const char *subs[] = { "frame", "request", "spec" };
	struct mig_error_msg em;
	uint8_t ddbuf[sizeof(dd) + 16] = { 0 };
	char path[4096], name[64];
	size_t n, sn = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-seeds DIR\n");
		return 2;
	}
	out_dir = argv[1];
	if (mkdir(out_dir, 0755) < 0 && errno != EEXIST)
		die(out_dir);
	for (unsigned i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", out_dir, subs[i]);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			die(path);
	}

	memset(ram, 0xa5, PAGE);
	memset(ram + 2 * PAGE, 0x5a, 2 * PAGE);
	for (unsigned i = 0; i < 3; i++) {
		static const char *const what[] = { "pages", "pages-tagged", "pages-zstd" };

		n = pages_meta(meta, ram, i == 1, i == 2);
		put("frame", what[i], buf,
		    frame(buf, MIG_FRAME_PAGES, i == 2 ? MIG_FRAME_F_ZSTD : MIG_FRAME_F_LIVE, 1,
			  meta, n));
	}
	mig_wire_le(&mig_wl_device_data, &dd, 1);
	memcpy(ddbuf, &dd, sizeof(dd));
	put("frame", "device-data", buf, frame(buf, MIG_FRAME_DEVICE_DATA,
					       MIG_FRAME_F_FINAL | MIG_FRAME_F_END, 1, ddbuf,
					       sizeof(ddbuf)));
	mig_error_msg_fill(&em, -EPROTO, "a peer's error");
	put("frame", "error", buf, frame(buf, MIG_FRAME_ERROR, 0, 1, &em, sizeof(em)));

	/* one stream: every request in turn, then pages and device data */
	for (uint32_t op = MIG_OP_VM_CREATE; op < _MIG_OP_END; op++) {
		n = request(buf, op);
		snprintf(name, sizeof(name), "op-%u", op);
		put("request", name, buf, n);
		sn += frame(stream + sn, MIG_FRAME_REQUEST, 0, op, buf, n);
	}
	n = pages_meta(meta, ram, false, false);
	sn += frame(stream + sn, MIG_FRAME_PAGES, 0, _MIG_OP_END, meta, n);
	sn += frame(stream + sn, MIG_FRAME_DEVICE_DATA, MIG_FRAME_F_FINAL, _MIG_OP_END + 1, ddbuf,
		    sizeof(ddbuf));
	put("frame", "stream", stream, sn);

	for (unsigned i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		snprintf(name, sizeof(name), "spec-%u", i);
		put("spec", name, specs[i], strlen(specs[i]));
	}
	return 0;
}
