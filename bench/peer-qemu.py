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
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

QEMU = "qemu-system-x86_64"
KINDS = ("ours-plain", "ours-enc", "qemu-plain", "qemu-tls")
LOW_END = 0xA0000        # conventional memory, filled
HIGH_START = 0x100000    # RAM above the legacy hole, filled to the end
CLK_TCK = os.sysconf("SC_CLK_TCK")

children = []            # every QEMU this script started, killed on exit


def log(*a):
    print("peer-qemu:", *a, file=sys.stderr, flush=True)


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", s.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(
            f"--mem {s!r} is not a size: give bytes or a number with K, M or G, e.g. 2G")
    n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]
    if n < 64 << 20 or n > (3 << 30):
        raise argparse.ArgumentTypeError(
            f"--mem {s}: give 64M to 3G (the guest's RAM sits below 4 GiB, "
            "in one piece)")
    return n


def parse_list(s, allowed=None, name="list"):
    out = [x.strip() for x in s.split(",") if x.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"{name} is empty")
    if allowed:
        bad = [x for x in out if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(
                f"{name}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    return out


def parse_channels(s):
    out = []
    for x in parse_list(s, name="--channels"):
        if not x.isdigit() or not 1 <= int(x) <= 16:
            raise argparse.ArgumentTypeError(
                f"--channels: {x!r} is not a channel count from 1 to 16")
        out.append(int(x))
    return out


def cpu_s(pid):
    """utime + stime of a process, all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


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


# --- QMP --------------------------------------------------------------------

class QMP:
    def __init__(self, path, deadline):
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"QMP socket {path} never came up")
                time.sleep(0.05)
        self.s.settimeout(60)
        self.f = self.s.makefile("rwb")
        self._read()                       # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            r = self._read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error'].get('desc')}")
            # an event: skip

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Guest:
    """The halting BIOS and the RAM data, made once per run of the script."""

    def __init__(self, tmp, mem):
        self.mem = mem
        self.bios = os.path.join(tmp, "halt.bin")
        rom = bytearray(65536)
        rom[0xFFF0:0xFFF4] = bytes((0xFA, 0xF4, 0xEB, 0xFD))   # cli; 1: hlt; jmp 1b
        with open(self.bios, "wb") as f:
            f.write(rom)
        rng = random.Random(20261206)
        self.low = os.path.join(tmp, "low.bin")
        self.high = os.path.join(tmp, "high.bin")
        with open(self.low, "wb") as f:
            f.write(rng.randbytes(LOW_END))
        with open(self.high, "wb") as f:
            left = mem - HIGH_START
            while left:
                n = min(left, 64 << 20)
                f.write(rng.randbytes(n))
                left -= n

    def args(self, source):
        a = ["-bios", self.bios]
        if source:
            a += ["-device", f"loader,file={self.low},addr=0",
                  "-device", f"loader,file={self.high},addr={HIGH_START:#x}"]
        return a

    def expect(self, addr):
        if addr < LOW_END:
            path, off = self.low, addr
        else:
            path, off = self.high, addr - HIGH_START
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(4)


def start_qemu(tmp, name, guest, source, tls, opts):
    qmp = os.path.join(tmp, f"{name}.qmp")
    if os.path.exists(qmp):
        os.unlink(qmp)
    cmd = [QEMU, "-accel", "kvm", "-machine", "pc", "-m", str(guest.mem >> 20), "-smp", "1",
           "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
           "-qmp", f"unix:{qmp},server=on,wait=off"] + guest.args(source)
    if tls:
        obj = (f"tls-creds-x509,id=tls0,dir={tls},verify-peer=on,"
               f"endpoint={'client' if source else 'server'}")
        if opts.tls_priority:
            obj += f",priority={opts.tls_priority}"
        cmd += ["-object", obj]
    if not source:
        cmd += ["-incoming", "defer"]
        if opts.prealloc:
            cmd += ["-mem-prealloc"]
    errf = open(os.path.join(tmp, f"{name}.log"), "ab")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    errf.close()
    children.append(p)
    return p, QMP(qmp, time.monotonic() + 60)


def stop_qemu(p, q):
    try:
        q.cmd("quit")
    except (OSError, RuntimeError, ValueError):
        pass
    q.close()
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    if p in children:
        children.remove(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dirty_rate(q):
    """The guest's dirty rate over one second, MB/s (page sampling)."""
    q.cmd("calc-dirty-rate", **{"calc-time": 1})
    end = time.monotonic() + 10
    while time.monotonic() < end:
        r = q.cmd("query-dirty-rate")
        if r.get("status") == "measured":
            return r.get("dirty-rate")
        time.sleep(0.1)
    return None


def hmp(q, line):
    return q.cmd("human-monitor-command", **{"command-line": line})


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
        dst, dq = start_qemu(tmp, f"dst-{name}", guest, False, tls, opts)
        src, sq = start_qemu(tmp, f"src-{name}", guest, True, tls, opts)
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
        for p in list(children):
            p.kill()
            p.wait()
            children.remove(p)
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

def median_run(runs):
    ok = [r for r in runs if r.get("result") == "completed" and r.get("total_ms")]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r["total_ms"])
    return ok[(len(ok) - 1) // 2]


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
        if not shutil.which(QEMU):
            sys.exit(f"peer-qemu: {QEMU} not found: run contrib/build.sh "
                     "(it installs qemu-system-x86)")
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            sys.exit("peer-qemu: /dev/kvm is not usable: QEMU's peer runs need KVM")
    enc = want_ours and "ours-enc" in opts.kinds and has_encrypt(migratectl)

    tmp = tempfile.mkdtemp(prefix="peer-qemu.")

    def cleanup(*_):
        for p in list(children):
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(143)))
    signal.signal(signal.SIGINT, lambda *a: (cleanup(), sys.exit(130)))
    try:
        out = {"mem_bytes": opts.mem, "channels": opts.channels, "repeat": opts.repeat,
               "qemu": subprocess.run([QEMU, "--version"], capture_output=True,
                                      text=True).stdout.splitlines()[0] if want_qemu else None,
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
