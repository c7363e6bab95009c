#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""peer-qemu: migratectl next to QEMU's own migration, plain and TLS, and the
machine's AES-256-GCM speed per core, all in one run (docs/performance.md,
"Encryption").

For each channel count, alternating, each run on loopback with a guest of
--mem bytes whose RAM is all pseudo-random data and whose vCPU does not
write (working set 0):

  ours-plain  migratectl start local local --json --no-verify --streams N
              --compress none --lab mem=MEM,vcpus=1,wss=0
  ours-enc    the same with --encrypt always, once migratectl has the option
              (probed from `migratectl start --help`); until then "pending"
  qemu-plain  QEMU (qemu-system-x86_64, KVM) to QEMU over tcp with multifd,
              N channels
  qemu-tls    the same with tls-creds-x509 on both sides (a CA, a server
              certificate for the destination, a client certificate for the
              source, verify-peer on both ends)

and, once, `openssl speed -evp aes-256-gcm` on 1 MiB buffers, encrypt and
decrypt, one process: the AES-256-GCM limit per core.

The QEMU guest: `-bios` is a 64 KiB image whose reset vector is
`cli; hlt`, so the vCPU halts at its first instruction and never writes to
RAM; two `-device loader` blobs fill RAM from 0 to 640 KiB and from 1 MiB to
the end with pseudo-random bytes before the vCPU starts (the legacy hole
640 KiB-1 MiB stays zero). QEMU skips zero pages, so a blank guest would
measure nothing. The destination's RAM is checked against the source's data
at 64 random addresses after each run.

Usage: bench/peer-qemu.py [--mem SIZE] [--channels LIST] [--repeat N]
                          [--kinds LIST] [--migratectl PATH] [--markdown]
                          [--timeout S] [--tls-priority STR] [--prealloc]
       bench/peer-qemu.py --render FILE

Output: one JSON object on stdout (--markdown: tables). Progress on stderr.
Not a test: it is not in the meson suite.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import qemu_peer
from qemu_peer import (LOW_END, HIGH_START, cpu_s, dirty_rate, free_port, median_run,
                       hmp, log, parse_list, start_qemu, stop_qemu)

qemu_peer.prog = "peer-qemu"
KINDS = ("ours-plain", "ours-enc", "qemu-plain", "qemu-tls")
parse_size = qemu_peer.size_arg("--mem", 64 << 20, 3 << 30,
                                "give 64M to 3G (the guest's RAM sits below 4 GiB, in one piece)")


def parse_channels(s):
    out = []
    for x in parse_list(s, name="--channels"):
        if not x.isdigit() or not 1 <= int(x) <= 16:
            raise argparse.ArgumentTypeError(
                f"--channels: {x!r} is not a channel count from 1 to 16")
        out.append(int(x))
    return out


# --- the AES-256-GCM limit --------------------------------------------------

def aes_gcm_limit(seconds):
    res = {}
    for op in ("encrypt", "decrypt"):
        cmd = ["openssl", "speed", "-mr", "-seconds", str(seconds), "-bytes", "1048576",
               "-evp", "aes-256-gcm"] + (["-decrypt"] if op == "decrypt" else [])
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        m = re.search(r"^\+F:\d+:[^:]+:([0-9.]+)", out.stdout + out.stderr, re.M)
        if not m:
            raise RuntimeError(f"cannot parse `{' '.join(cmd)}`: {out.stdout!r} {out.stderr!r}")
        res[f"{op}_MBps"] = round(float(m.group(1)) / 1e6)
    res["command"] = "openssl speed -mr -seconds %d -bytes 1048576 -evp aes-256-gcm [-decrypt]" % seconds
    res["openssl"] = subprocess.run(["openssl", "version"], capture_output=True,
                                    text=True).stdout.strip()
    # Every byte is sealed once and opened once; on this host both agents
    # share all the cores, so that work alone bounds a migration at:
    ncpu = os.cpu_count() or 1
    res["bound_all_cores_MBps"] = round(ncpu / (1 / res["encrypt_MBps"] + 1 / res["decrypt_MBps"]))
    res["cores"] = ncpu
    return res


# --- certificates -----------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d):
    """QEMU's tls-creds-x509 layout: ca-cert.pem, server-{cert,key}.pem,
    client-{cert,key}.pem in one directory."""
    os.makedirs(d)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca-key.pem", "-out", "ca-cert.pem",
            "-days", "2", "-subj", "/CN=peer-qemu bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for who, cn, eku, san in (
            ("server", "localhost", "serverAuth", "DNS:localhost,IP:127.0.0.1"),
            ("client", "peer-qemu source", "clientAuth", None)):
        openssl("req", *key, "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        ext = os.path.join(d, f"{who}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage={eku}\n")
            if san:
                f.write(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca-cert.pem", "-CAkey",
                "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", ext,
                "-out", f"{who}-cert.pem", cwd=d)
    return d


class Guest(qemu_peer.RamData):
    """The halting BIOS and the RAM data, made once per run of the script."""

    def __init__(self, tmp, mem):
        super().__init__(tmp, mem)
        self.bios = os.path.join(tmp, "halt.bin")
        rom = bytearray(65536)
        rom[0xFFF0:0xFFF4] = bytes((0xFA, 0xF4, 0xEB, 0xFD))   # cli; 1: hlt; jmp 1b
        with open(self.bios, "wb") as f:
            f.write(rom)

    def args(self, source):
        return ["-bios", self.bios] + (self.loader_args() if source else [])


def start_peer(tmp, name, guest, source, tls, opts):
    args = guest.args(source)
    if tls:
        obj = (f"tls-creds-x509,id=tls0,dir={tls},verify-peer=on,"
               f"endpoint={'client' if source else 'server'}")
        if opts.tls_priority:
            obj += f",priority={opts.tls_priority}"
        args += ["-object", obj]
    return start_qemu(tmp, name, guest.mem, args, incoming=not source,
                      prealloc=opts.prealloc)


def check_ram(q, guest, n=64):
    """Compare n random 4-byte words of the destination's RAM with the data
    the source was loaded with. Returns the number of mismatches."""
    rng = random.Random()
    bad = 0
    for _ in range(n):
        if rng.random() < 0.01:
            addr = rng.randrange(0, LOW_END - 4, 4)
        else:
            addr = rng.randrange(HIGH_START, guest.mem - 4, 4)
        out = hmp(q, f"xp /1xw {addr:#x}")
        m = re.search(r":\s*0x([0-9a-f]+)", out)
        want = int.from_bytes(guest.expect(addr), "little")
        if not m or int(m.group(1), 16) != want:
            bad += 1
    return bad


def run_qemu(tmp, guest, channels, tls, opts):
    name = "tls" if tls else "plain"
    dst = src = None
    res = {"kind": "qemu-tls" if tls else "qemu-plain", "channels": channels}
    try:
        dst, dq = start_peer(tmp, f"dst-{name}", guest, False, tls, opts)
        src, sq = start_peer(tmp, f"src-{name}", guest, True, tls, opts)
        dst = (dst, dq)
        src = (src, sq)
        for q in (dq, sq):
            q.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "multifd", "state": True}])
            params = {"multifd-channels": channels}
            if tls:
                params["tls-creds"] = "tls0"
            q.cmd("migrate-set-parameters", **params)
        # QEMU's default cap is 32 MiB/s; lift it as migratectl has none
        sq.cmd("migrate-set-parameters", **{"max-bandwidth": 100 * 10**9})
        if tls:
            sq.cmd("migrate-set-parameters", **{"tls-hostname": "localhost"})
        port = free_port()
        dq.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        res["guest_dirty_rate_MBps"] = dirty_rate(sq)
        st = hmp(sq, "info status").strip()
        res["guest_status_before"] = st
        c0 = (cpu_s(src[0].pid), cpu_s(dst[0].pid))
        sq.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        end = time.monotonic() + opts.timeout
        while True:
            info = sq.cmd("query-migrate")
            if info.get("status") in ("failed", "cancelled"):
                break
            # QEMU shows "completed" a moment before it fills in
            # total-time and downtime (0 until then)
            if info.get("status") == "completed" and info.get("total-time"):
                break
            if time.monotonic() > end:
                sq.cmd("migrate_cancel")
                info = {"status": "timeout"}
                break
            time.sleep(0.02)
        c1 = (cpu_s(src[0].pid), cpu_s(dst[0].pid))
        res["result"] = info.get("status")
        if info.get("error-desc"):
            res["error"] = info["error-desc"]
        ram = info.get("ram", {})
        for k_out, k_in in (("total_ms", "total-time"), ("downtime_ms", "downtime"),
                            ("setup_ms", "setup-time")):
            res[k_out] = info.get(k_in)
        res["transferred_bytes"] = ram.get("transferred")
        res["multifd_bytes"] = ram.get("multifd-bytes")
        res["normal_pages"] = ram.get("normal")
        res["zero_pages"] = ram.get("duplicate")
        res["rounds"] = ram.get("dirty-sync-count")
        # every page is sent once, as data or as a zero page, unless the
        # guest wrote it during the migration
        if ram.get("total") is not None and ram.get("normal") is not None:
            res["ram_bytes"] = ram["total"]
            res["pages_sent_again"] = (ram["normal"] + ram.get("duplicate", 0)
                                       - ram["total"] // ram.get("page-size", 4096))
        res["qemu_mbps"] = ram.get("mbps")
        if res["result"] == "completed" and res["total_ms"]:
            span = (res["total_ms"] - (res["setup_ms"] or 0)) / 1e3
            res["throughput_bps"] = round(res["transferred_bytes"] / span)
            end = time.monotonic() + 30
            while dq.cmd("query-status").get("status") != "running":
                if time.monotonic() > end:
                    res["result"] = "destination not running"
                    break
                time.sleep(0.05)
            res["ram_mismatches"] = check_ram(dq, guest)
            if res["ram_mismatches"]:
                res["result"] = "RAM differs"
        res["src_cpu_s"] = round(c1[0] - c0[0], 2)
        res["dst_cpu_s"] = round(c1[1] - c0[1], 2)
    except (RuntimeError, OSError) as e:
        res["result"] = "error"
        res["error"] = str(e)
    finally:
        for pq in (src, dst):
            if isinstance(pq, tuple):
                stop_qemu(*pq)
        qemu_peer.kill_children()
    return res


# --- migratectl -------------------------------------------------------------

def has_encrypt(migratectl):
    out = subprocess.run([migratectl, "start", "--help"], capture_output=True, text=True)
    return "--encrypt" in out.stdout + out.stderr


def run_ours(migratectl, mem, streams, encrypt, timeout):
    kind = "ours-enc" if encrypt else "ours-plain"
    # a copy: between two local agents, auto would hand RAM over instead
    cmd = [migratectl, "start", "local", "local", "--json", "--no-verify",
           "--handover", "never", "--streams", str(streams), "--compress", "none",
           "--lab", f"mem={mem >> 20}M,vcpus=1,wss=0"]
    if encrypt:
        cmd += ["--encrypt", "always"]
    res = {"kind": kind, "channels": streams}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        res["result"] = "timeout"
        return res
    j = None
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                pass
    if not j:
        res["result"] = "error"
        res["error"] = (out.stderr.strip().splitlines() or ["no JSON"])[-1]
        return res
    res["result"] = j.get("result")
    for k in ("total_ms", "downtime_ms", "setup_ms", "prepare_ms", "throughput_bps",
              "rounds", "checksum"):
        res[k] = j.get(k)
    res["transferred_bytes"] = j.get("ram", {}).get("wire_bytes")
    res["src_cpu_s"] = round(j.get("src_cpu_ms", 0) / 1e3, 2)
    res["dst_cpu_s"] = round(j.get("dst_cpu_ms", 0) / 1e3, 2)
    if encrypt:
        res["encrypt"] = j.get("encrypt")
    return res


# --- the run ----------------------------------------------------------------

def markdown(out):
    lim = out["aes_gcm_limit"]
    lines = ["| limit | MB/s |", "|---|---|",
             f"| AES-256-GCM encrypt, 1 core, 1 MiB buffers | {lim['encrypt_MBps']} |",
             f"| AES-256-GCM decrypt, 1 core, 1 MiB buffers | {lim['decrypt_MBps']} |",
             f"| seal + open of every byte on all {lim['cores']} cores | "
             f"{lim['bound_all_cores_MBps']} |", "",
             "| channels | migration | total ms | downtime ms | setup ms | throughput MB/s "
             "| MiB sent | rounds | src CPU s | dst CPU s | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in out["cells"]:
        r = c["median"]
        if r.get("result") == "pending":
            lines.append(f"| {c['channels']} | {c['kind']} | | | | | | | | | pending: "
                         "migratectl has no --encrypt yet |")
            continue

        def f(k, fmt="{}"):
            v = r.get(k)
            return "" if v is None else fmt.format(v)
        thr = r.get("throughput_bps")
        lines.append(
            f"| {c['channels']} | {c['kind']} | {f('total_ms')} | {f('downtime_ms')} | "
            f"{f('setup_ms')} | {'' if thr is None else round(thr / 1e6)} | "
            f"{'' if r.get('transferred_bytes') is None else r['transferred_bytes'] >> 20} | "
            f"{f('rounds')} | {f('src_cpu_s')} | {f('dst_cpu_s')} | {r.get('result')} |")
    if out.get("ratios"):
        lines += ["", "| channels | ratio | value |", "|---|---|---|"]
        for r in out["ratios"]:
            lines.append(f"| {r['channels']} | {r['what']} | {r['value']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", type=parse_size, default=parse_size("2G"),
                    help="guest RAM, both migratectl's lab guest and QEMU's (default 2G)")
    ap.add_argument("--channels", type=parse_channels, default=[1, 2, 4],
                    help="streams / multifd channels, comma-separated (default 1,2,4)")
    ap.add_argument("--kinds", type=lambda s: parse_list(s, KINDS, "--kinds"),
                    default=list(KINDS), help="which migrations (default all: %s)"
                    % ",".join(KINDS))
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per cell, alternating; the median total time stands (1-9)")
    ap.add_argument("--migratectl", default=None,
                    help="migratectl binary (default build/migratectl next to bench/)")
    ap.add_argument("--timeout", type=float, default=120,
                    help="seconds one migration may take before it is cancelled (default 120)")
    ap.add_argument("--tls-priority", default="NORMAL:-CIPHER-ALL:+AES-256-GCM",
                    help="GnuTLS priority for QEMU's TLS; the default pins AES-256-GCM, "
                    "the cipher migratectl uses; '' leaves QEMU's default")
    ap.add_argument("--prealloc", action="store_true",
                    help="start QEMU's destination with -mem-prealloc, as migratectl's "
                    "destination pre-faults its RAM before the migration")
    ap.add_argument("--aes-seconds", type=int, default=3)
    ap.add_argument("--markdown", action="store_true", help="tables instead of JSON")
    ap.add_argument("--render", metavar="FILE",
                    help="print the tables of a JSON result saved before, and run nothing")
    opts = ap.parse_args()
    if opts.render:
        with open(opts.render) as f:
            print(markdown(json.load(f)))
        return
    if not 1 <= opts.repeat <= 9:
        ap.error("--repeat takes 1 to 9")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    migratectl = opts.migratectl or os.path.join(root, "build", "migratectl")
    want_ours = any(k.startswith("ours") for k in opts.kinds)
    want_qemu = any(k.startswith("qemu") for k in opts.kinds)
    if want_ours and not os.access(migratectl, os.X_OK):
        sys.exit(f"peer-qemu: {migratectl} is not there: build first "
                 "(meson setup build && ninja -C build) or pass --migratectl")
    if want_qemu:
        qemu_peer.check_host()
    enc = want_ours and "ours-enc" in opts.kinds and has_encrypt(migratectl)

    tmp = tempfile.mkdtemp(prefix="peer-qemu.")
    cleanup = qemu_peer.install_cleanup(tmp)
    try:
        out = {"mem_bytes": opts.mem, "channels": opts.channels, "repeat": opts.repeat,
               "qemu": qemu_peer.qemu_version() if want_qemu else None,
               "tls_priority": opts.tls_priority or "QEMU's default",
               "qemu_dst_prealloc": opts.prealloc,
               "encrypt_available": enc}
        log("AES-256-GCM limit (openssl speed)")
        out["aes_gcm_limit"] = aes_gcm_limit(opts.aes_seconds)
        guest = certs = None
        if want_qemu:
            log(f"writing {opts.mem >> 20} MiB of guest data")
            guest = Guest(tmp, opts.mem)
            if "qemu-tls" in opts.kinds:
                certs = make_certs(os.path.join(tmp, "certs"))
        runs = {}
        for i in range(opts.repeat):
            for ch in opts.channels:
                for kind in opts.kinds:
                    if kind == "ours-enc" and not enc:
                        r = {"kind": kind, "channels": ch, "result": "pending"}
                    elif kind.startswith("ours"):
                        r = run_ours(migratectl, opts.mem, ch, kind == "ours-enc",
                                     opts.timeout + 60)
                    else:
                        r = run_qemu(tmp, guest, ch, certs if kind == "qemu-tls" else None,
                                     opts)
                    log(f"run {i + 1}/{opts.repeat} {kind} x{ch}: {r.get('result')} "
                        f"{r.get('total_ms')} ms {r.get('error', '')}")
                    runs.setdefault((ch, kind), []).append(r)
        out["cells"] = [{"channels": ch, "kind": kind, "runs": rs, "median": median_run(rs)}
                        for (ch, kind), rs in runs.items()]
        med = {(c["channels"], c["kind"]): c["median"] for c in out["cells"]}
        out["ratios"] = []
        for ch in opts.channels:
            def thr(kind):
                r = med.get((ch, kind), {})
                return r.get("throughput_bps") if r.get("result") == "completed" else None
            for what, a, b in (("ours-enc / ours-plain (target >= 0.60)", "ours-enc", "ours-plain"),
                               ("ours-enc / qemu-tls (target >= 2.0)", "ours-enc", "qemu-tls"),
                               ("ours-plain / qemu-plain", "ours-plain", "qemu-plain"),
                               ("qemu-tls / qemu-plain", "qemu-tls", "qemu-plain")):
                ta, tb = thr(a), thr(b)
                out["ratios"].append({"channels": ch, "what": what,
                                      "value": round(ta / tb, 2) if ta and tb else "pending"
                                      if a == "ours-enc" and not enc else None})
        print(markdown(out) if opts.markdown else json.dumps(out, indent=1))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
