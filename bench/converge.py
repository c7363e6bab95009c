#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""converge: the migration that does not converge, migratectl's ways of
finishing it next to QEMU's, in one run (issue 20, item 5;
docs/performance.md, "Convergence").

The case: a guest of --mem (2G) with --vcpus (2) writing a working set of
--wss (1G) as fast as it can, over a link capped at --bandwidth (256 MiB/s),
downtime limit --downtime-limit (300 ms), on loopback. Each kind, once per
--repeat, alternating:

  ours-none      migratectl start local local --json --lab mem=,vcpus=,wss=
                 --max-bandwidth --downtime-limit --timeout, and --converge
                 none when start has the option (its default is auto):
                 expected to give up at --timeout
  ours-throttle  the same with --converge throttle   } once `migratectl start
  ours-postcopy  the same with --converge postcopy   } --help` lists the
                 and --postcopy-after (below)        } option; until then,
  ours-auto      the same with --converge auto       } or while start says
                                                       the mode is "not
                                                       available yet",
                                                       "pending"
  qemu-plain          QEMU 7.2 (qemu-system-x86_64, KVM) to QEMU over tcp,
                      max-bandwidth and downtime-limit as above: expected
                      not to finish within --timeout (then cancelled)
  qemu-auto-converge  the same with the auto-converge capability (QEMU's
                      default cpu-throttle-initial 20, increment 10)
  qemu-postcopy       the same with postcopy-ram (both sides) and
                      postcopy-blocktime (destination), max-postcopy-bandwidth
                      = --bandwidth; migrate-start-postcopy once the source's
                      dirty-sync-count reaches --postcopy-after (2: after
                      the first full pass over RAM)

When each post-copy row switches: --postcopy-after N is meant for both.
QEMU's switch is the script's migrate-start-postcopy once the source's
dirty-sync-count reaches N (query-migrate polled every 0.1 s). QEMU syncs
the dirty log once at setup, before any page went (count 1), and again at
the end of each pass over RAM (once less than the measured bandwidth x
downtime-limit of the pass is left): N means after N - 1 full passes.
Ours is the engine's own decision: `start --postcopy-after R` switches
once R pre-copy rounds are done, the bulk copy (round 0, the one full pass
over RAM) counted first; so ours gets R = N - 1. The default N = 2 is, on
both sides, "after the first full pass" (QEMU at dirty-sync-count 2; ours
R = 1, start's own default). N = 1 (QEMU switches before its first pass
is over) has no equal on our side, which sends the bulk copy first: ours
then runs with R = 1, and the result says so (postcopy_after_note); above
65, R stays at start's 64. Neither side switches when what is left
already fits the downtime limit: both then finish with an ordinary
stop-and-copy.

QEMU's guest is bench/converge-guest.S, assembled here (gcc, ld): a -bios
image that takes every vCPU to paged CPL3 code (the only code PVM runs
natively), where vCPU i writes one word into each 4 KiB page of its share
of the working set, pass after pass, counts its passes in RAM, and logs
every gap over about 1 ms between two of its stores (a stall) with the
TSC. RAM outside the working set holds pseudo-random data, as the lab
guest's does, so both migrations carry all of it. The script reads the
counters with HMP `xp` and the stall logs with `pmemsave`: before the
migration (the guest's own pace), at its start, every --sample seconds
during it (on the source, or the destination once post-copy runs), and at
its end (on the destination when it completed).

Columns: total and downtime (QEMU's total-time and downtime; our total_ms
and downtime_ms, post-copy included on both sides), bytes sent
(ram.transferred; our ram.wire_bytes), the guest's passes per second
before and during the migration and their ratio (ours: the summary's
convergence.guest_rate, which covers PRECOPY on the source only, so for
ours-postcopy it leaves the post-copy part out and is marked
"(pre-copy)"), the worst stall a vCPU saw during the migration, the
highest throttle applied, and post-copy's figures. The worst stall is not
measured the same way on both sides. QEMU's is the guest's own log: the
longest gap between two of its stores, whatever caused it (the
stop-and-copy, a page fetched, the host's scheduler); QEMU 7.2 has no
longest single wait for a page, only postcopy-vcpu-blocktime, the total
time each vCPU waited, shown next to it. Ours, for post-copy, is
convergence.postcopy.worst_stall_us, the longest one fault of any vCPU
waited from its request to its page placed on the destination, marked
"(longest page wait)": it leaves out the downtime and anything outside a
fault. Post-copy's column: when it started (s into the migration; ours
the "postcopy" phase's start, QEMU's when the script issued
migrate-start-postcopy), for how long (ours convergence.postcopy
.duration_ms, from the start to the last page; QEMU's from
migrate-start-postcopy until the script saw "completed"), and the pages
asked for (ours pages_requested, and how many of them went ahead of the
background push, pages_served_first; QEMU's ram.postcopy-requests).

Usage: bench/converge.py [--mem SIZE] [--vcpus N] [--wss SIZE]
                         [--bandwidth SIZE] [--downtime-limit MS]
                         [--kinds LIST] [--repeat N] [--timeout S]
                         [--postcopy-after N] [--max-throttle PCT]
                         [--sample S] [--migratectl PATH] [--markdown]
                         [--save FILE]
       bench/converge.py --render FILE

Output: one JSON object on stdout (--markdown: a table; --save FILE: the
JSON in FILE too), with the load average at the start and as each run
ended. Progress on stderr.
Not a test: it is not in the meson suite.
"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import qemu_peer
from qemu_peer import hmp, log, median_run, parse_list, start_qemu, stop_qemu

qemu_peer.prog = "converge"

OURS = ("ours-none", "ours-throttle", "ours-postcopy", "ours-auto")
QEMUS = ("qemu-plain", "qemu-auto-converge", "qemu-postcopy")
KINDS = OURS + QEMUS

# bench/converge-guest.S
WSS_BASE = 16 << 20
MAILBOX = 0x8000
RINGS = 0x10000
RING_ENTRIES = 4096
PARAMS = 0xff00
STALL_TICKS = 2_500_000          # about 1 ms at this host's 2.6 GHz TSC
MAX_VCPUS = 8

parse_mem = qemu_peer.size_arg("--mem", 64 << 20, 3 << 30,
                               "give 64M to 3G (QEMU's guest RAM sits below 4 GiB, in one piece)")
parse_wss = qemu_peer.size_arg("--wss", 4096, 3 << 30, "give 4K to 3G")
parse_bw = qemu_peer.size_arg("--bandwidth", 1 << 20, 1 << 40,
                              "give bytes per second from 1M to 1T, e.g. 256M")


def int_arg(opt, lo, hi):
    def parse(s):
        try:
            n = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{opt} {s!r} is not a whole number") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"{opt} {n}: give {lo} to {hi}")
        return n
    return parse


def float_arg(opt, lo, hi):
    def parse(s):
        try:
            n = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{opt} {s!r} is not a number") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"{opt} {n}: give {lo} to {hi}")
        return n
    return parse


# --- QEMU's guest -----------------------------------------------------------

class Guest(qemu_peer.RamData):
    """The -bios image with its parameters, and the RAM data."""

    def __init__(self, tmp, opts):
        here = os.path.dirname(os.path.abspath(__file__))
        src = os.path.join(here, "converge-guest.S")
        obj = os.path.join(tmp, "guest.o")
        raw = os.path.join(tmp, "guest.raw")
        for cmd in (["gcc", "-c", "-o", obj, src],
                    ["ld", "-Ttext=0xf0000", "-e", "entry16", "--oformat=binary", "-o", raw,
                     obj]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"`{' '.join(cmd)}` failed: {r.stderr.strip()}")
        with open(raw, "rb") as f:
            rom = bytearray(f.read())
        if len(rom) != 65536:
            raise RuntimeError(f"{src} assembled to {len(rom)} bytes, not 65536")
        rom[PARAMS:PARAMS + 32] = struct.pack("<QQQQ", WSS_BASE, opts.wss, opts.vcpus,
                                              STALL_TICKS)
        self.bios = os.path.join(tmp, "converge.bin")
        with open(self.bios, "wb") as f:
            f.write(rom)
        self.vcpus = opts.vcpus
        self.tmp = tmp
        super().__init__(tmp, opts.mem)

    def args(self, source):
        # -no-reboot: a guest that faults dies instead of starting over
        return ["-bios", self.bios, "-no-reboot"] + (self.loader_args() if source else [])

    def mailbox(self, q):
        """Per vCPU: passes, TSC at the last pass, stalls logged, longest."""
        out = hmp(q, f"xp /{8 * self.vcpus}gx {MAILBOX:#x}")
        words = [int(x, 16) for x in re.findall(r"0x([0-9a-f]{16})", out)]
        if len(words) != 8 * self.vcpus:
            raise RuntimeError(f"cannot read the guest's counters: {out.strip()[:200]!r}")
        return [{"passes": words[8 * i], "tsc": words[8 * i + 1],
                 "stalls": words[8 * i + 2], "longest": words[8 * i + 3]}
                for i in range(self.vcpus)]

    def stall_log(self, q):
        """Per vCPU, the ring's entries as (TSC after the stall, ticks)."""
        path = os.path.join(self.tmp, "rings.bin")
        if os.path.exists(path):
            os.unlink(path)
        size = self.vcpus << 16
        q.cmd("pmemsave", val=RINGS, size=size, filename=path)
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != size:
            raise RuntimeError("pmemsave of the stall log came back short")
        return [[struct.unpack_from("<QQ", data, (i << 16) + 16 * k)
                 for k in range(RING_ENTRIES)] for i in range(self.vcpus)]


def passes(mb):
    return sum(v["passes"] for v in mb)


def worst_stall(log_, mb_from, mb_to):
    """The longest stall per vCPU (ticks) that the guest logged between two
    mailbox readings, and whether its ring wrapped in between (then only
    the last RING_ENTRIES are seen)."""
    out, wrapped = [], False
    for i, entries in enumerate(log_):
        first, last = mb_from[i]["stalls"], mb_to[i]["stalls"]
        wrapped |= last - first > RING_ENTRIES
        out.append(max((entries[k % RING_ENTRIES][1]
                        for k in range(max(first, last - RING_ENTRIES), last)), default=0))
    return out, wrapped


def fmt_size(n):
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def host_tsc_hz():
    """The host's TSC rate from the kernel's log, which PVM guests read
    unscaled; None when the log says nothing (then --tsc-mhz)."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = (re.search(r"tsc: Refined TSC clocksource calibration: ([0-9.]+) MHz", out)
         or re.search(r"tsc: Detected ([0-9.]+) MHz", out))
    return float(m.group(1)) * 1e6 if m else None


def wait_guest(q, guest, timeout):
    """Until every vCPU finished two passes (the first faults every page in)."""
    end = time.monotonic() + timeout
    while True:
        st = q.cmd("query-status").get("status")
        if st not in ("running", "prelaunch"):
            raise RuntimeError(f"the guest is {st}")
        mb = guest.mailbox(q)
        if all(v["passes"] >= 2 for v in mb):
            return mb
        if time.monotonic() > end:
            raise RuntimeError(f"the guest did not start writing within {timeout} s "
                               f"(passes per vCPU: {[v['passes'] for v in mb]})")
        time.sleep(0.5)


def run_qemu(tmp, guest, kind, opts):
    res = {"kind": kind}
    src = dst = None
    try:
        dst = start_qemu(tmp, f"dst-{kind}", opts.mem, guest.args(False), smp=opts.vcpus,
                         incoming=True)
        src = start_qemu(tmp, f"src-{kind}", opts.mem, guest.args(True), smp=opts.vcpus)
        sq, dq = src[1], dst[1]
        wait_guest(sq, guest, 120)
        # the guest's pace: the dirty log's view, then a quiet window
        try:
            res["dirty_MBps_before"] = qemu_peer.dirty_rate(sq, "dirty-bitmap")
        except RuntimeError as e:
            res["dirty_MBps_before"] = None
            log(f"{kind}: no dirty rate: {e}")
        t0, m0 = time.monotonic(), guest.mailbox(sq)
        time.sleep(opts.before)
        t1, m1 = time.monotonic(), guest.mailbox(sq)
        res["passes_per_s_before"] = round((passes(m1) - passes(m0)) / (t1 - t0), 1)
        # the TSC at each vCPU's last pass, against the clock: a check of
        # the rate stalls are converted with (it lags by a pass, or by a
        # stall if one is under way when the counters are read)
        res["guest_tsc_MHz_seen"] = [round((b["tsc"] - a["tsc"]) / (t1 - t0) / 1e6)
                                     for a, b in zip(m0, m1)]
        tsc_hz = opts.tsc_hz
        res["tsc_MHz"] = round(tsc_hz / 1e6, 1)
        st, _ = worst_stall(guest.stall_log(sq), m0, m1)
        res["stall_max_ticks_before"] = st
        res["stall_max_ms_before"] = round(max(st) / tsc_hz * 1e3, 1)

        caps = []
        if kind == "qemu-auto-converge":
            caps.append("auto-converge")
        if kind == "qemu-postcopy":
            caps += ["postcopy-ram", "postcopy-blocktime"]
        for q in (sq, dq):
            if caps:
                q.cmd("migrate-set-capabilities", capabilities=[
                    {"capability": c, "state": True} for c in caps])
        params = {"max-bandwidth": opts.bandwidth, "downtime-limit": opts.downtime_limit}
        if kind == "qemu-postcopy":
            params["max-postcopy-bandwidth"] = opts.bandwidth
        sq.cmd("migrate-set-parameters", **params)
        port = qemu_peer.free_port()
        dq.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        c0 = (qemu_peer.cpu_s(src[0].pid), qemu_peer.cpu_s(dst[0].pid))
        ts, ms = time.monotonic(), guest.mailbox(sq)
        sq.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        end = ts + opts.timeout
        samples = [[0.0, passes(ms), "source", 0]]
        next_sample = ts + opts.sample
        throttle_max, postcopy_at, dirty_max = 0, None, 0
        last_progress = ts
        while True:
            info = sq.cmd("query-migrate")
            status = info.get("status")
            now = time.monotonic()
            ram = info.get("ram", {})
            throttle_max = max(throttle_max, info.get("cpu-throttle-percentage", 0))
            dirty_max = max(dirty_max, ram.get("dirty-pages-rate", 0))
            if status in ("failed", "cancelled"):
                break
            if status == "completed" and info.get("total-time"):
                break
            if (kind == "qemu-postcopy" and postcopy_at is None and status == "active"
                    and ram.get("dirty-sync-count", 0) >= opts.postcopy_after):
                sq.cmd("migrate-start-postcopy")
                postcopy_at = now - ts
                log(f"{kind}: post-copy started at {postcopy_at:.1f} s "
                    f"(dirty-sync-count {ram.get('dirty-sync-count')})")
            if now >= next_sample and status in ("active", "postcopy-active"):
                side = "source" if status == "active" else "destination"
                try:
                    p = passes(guest.mailbox(sq if side == "source" else dq))
                    samples.append([round(now - ts, 2), p, side,
                                    info.get("cpu-throttle-percentage", 0)])
                except RuntimeError:
                    pass
                next_sample = now + opts.sample
            if now - last_progress > 10:
                log(f"{kind}: {status} {now - ts:.0f} s, round "
                    f"{ram.get('dirty-sync-count')}, throttle "
                    f"{info.get('cpu-throttle-percentage', 0)} %")
                last_progress = now
            if now > end:
                if status == "postcopy-active":
                    info = {"status": "timeout in post-copy", "ram": ram}
                else:
                    sq.cmd("migrate_cancel")
                    info = dict(info, status="timeout")
                break
            time.sleep(0.1)
        res["result"] = info.get("status")
        if info.get("error-desc"):
            res["error"] = info["error-desc"]
        ram = info.get("ram", {})
        res["total_ms"] = info.get("total-time")
        res["downtime_ms"] = info.get("downtime")
        res["setup_ms"] = info.get("setup-time")
        res["transferred_bytes"] = ram.get("transferred")
        res["rounds"] = ram.get("dirty-sync-count")
        res["postcopy_requests"] = ram.get("postcopy-requests")
        res["throttle_max_pct"] = throttle_max
        res["dirty_MBps_during_max"] = round(dirty_max * 4096 / 1e6)
        res["postcopy_started_s"] = None if postcopy_at is None else round(postcopy_at, 1)
        # from migrate-start-postcopy to the poll that saw "completed"
        # (within the 0.1 s polling): QEMU reports no such time itself
        if postcopy_at is not None and res["result"] == "completed":
            res["postcopy_ms"] = round((now - ts - postcopy_at) * 1e3)

        # where the guest runs now, and its counters there
        done = res["result"] == "completed"
        if done and not qemu_peer.wait_running(dq):
            res["result"] = "destination not running"
            done = False
        gq = dq if done or postcopy_at is not None else sq
        te, me = time.monotonic(), guest.mailbox(gq)
        res["seconds"] = round(te - ts, 1)
        c1 = (qemu_peer.cpu_s(src[0].pid), qemu_peer.cpu_s(dst[0].pid))
        res["src_cpu_s"] = round(c1[0] - c0[0], 1)
        res["dst_cpu_s"] = round(c1[1] - c0[1], 1)
        res["passes_per_s_during"] = round((passes(me) - passes(ms)) / (te - ts), 1)
        samples.append([round(te - ts, 2), passes(me), "destination" if gq is dq else "source",
                        0])
        res["samples"] = samples
        if res["passes_per_s_before"]:
            res["progress_ratio"] = round(res["passes_per_s_during"]
                                          / res["passes_per_s_before"], 3)
        # the lowest pace over any sampling interval
        paces = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(samples, samples[1:])
                 if b[0] > a[0]]
        if paces:
            res["passes_per_s_min_interval"] = round(min(paces), 1)
        st, wrapped = worst_stall(guest.stall_log(gq), ms, me)
        res["stall_max_ticks_during"] = st
        res["stall_max_ms_during"] = [round(x / tsc_hz * 1e3, 1) for x in st]
        if max(st) / tsc_hz > te - ts + 1:
            res["stall_note"] = "a stall longer than the migration: the TSC jumped"
        res["stall_log_wrapped"] = wrapped
        if kind == "qemu-postcopy" and done:
            di = dq.cmd("query-migrate")
            res["postcopy_blocktime_ms"] = di.get("postcopy-blocktime")
            res["postcopy_vcpu_blocktime_ms"] = di.get("postcopy-vcpu-blocktime")
        if done:
            # the guest goes on at its own pace on the destination
            a = guest.mailbox(dq)
            ta = time.monotonic()
            time.sleep(opts.before)
            b = guest.mailbox(dq)
            res["passes_per_s_after"] = round((passes(b) - passes(a))
                                              / (time.monotonic() - ta), 1)
            if passes(b) <= passes(a):
                res["result"] = "guest stopped on the destination"
    except (RuntimeError, OSError) as e:
        res["result"] = "error"
        res["error"] = str(e)
    finally:
        for pq in (src, dst):
            if pq:
                stop_qemu(*pq)
        qemu_peer.kill_children()
    return res


# --- migratectl -------------------------------------------------------------

def start_help(migratectl):
    out = subprocess.run([migratectl, "start", "--help"], capture_output=True, text=True)
    return out.stdout + out.stderr


def run_ours(migratectl, kind, opts, helptext):
    mode = kind.split("-", 1)[1]
    res = {"kind": kind}
    if mode != "none" and "--converge" not in helptext:
        res["result"] = "pending"
        res["error"] = "migratectl start has no --converge yet"
        return res
    throttles = mode in ("throttle", "auto") and opts.max_throttle is not None
    if throttles and "--max-throttle" not in helptext:
        res["result"] = "pending"
        res["error"] = "migratectl start has no --max-throttle yet"
        return res
    cmd = [migratectl, "start", "local", "local", "--json",
           "--lab", f"mem={fmt_size(opts.mem)},vcpus={opts.vcpus},wss={fmt_size(opts.wss)}",
           "--max-bandwidth", fmt_size(opts.bandwidth),
           "--downtime-limit", str(opts.downtime_limit),
           "--timeout", f"{opts.timeout:g}s"]
    # a copy over the link: two agents on one host would otherwise hand
    # guest RAM over (--handover auto) and move no page at all
    if "--handover" in helptext:
        cmd += ["--handover", "never"]
    # none explicitly once the option exists: its default is not none
    if "--converge" in helptext:
        cmd += ["--converge", mode]
        if throttles:
            cmd += ["--max-throttle", str(opts.max_throttle)]
    if mode == "postcopy":
        # the script's N is QEMU's dirty-sync-count, which is 1 before the
        # first pass and N after N - 1 passes; ours counts the rounds done,
        # the bulk copy (one full pass) first: N - 1, within start's 1-64
        after = min(max(opts.postcopy_after - 1, 1), 64)
        res["postcopy_after_asked"] = after
        if after != opts.postcopy_after - 1:
            res["postcopy_after_note"] = (
                f"QEMU switches at dirty-sync-count {opts.postcopy_after}, after "
                f"{opts.postcopy_after - 1} passes; ours takes 1 to 64 pre-copy rounds: "
                f"{after}")
        if "--postcopy-after" in helptext:
            cmd += ["--postcopy-after", str(after)]
        elif after != 1:
            res["postcopy_after_note"] = ("migratectl start has no --postcopy-after: its "
                                          "own default ran")
    res["command"] = " ".join(cmd[1:])
    t = time.monotonic()
    # in children, so that the script's exit takes it (and its private
    # agents, which die with it) down too
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    qemu_peer.children.append(p)
    try:
        stdout, stderr = p.communicate(timeout=opts.timeout + 300)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        res["result"] = "hung"
        return res
    finally:
        if p in qemu_peer.children:
            qemu_peer.children.remove(p)
    res["seconds"] = round(time.monotonic() - t, 1)
    res["exit"] = p.returncode
    j = None
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                pass
    if not j:
        res["error"] = (stderr.strip().splitlines() or ["no JSON"])[-1]
        # a mode the help lists but this build refuses to run yet
        res["result"] = "pending" if "not available yet" in res["error"] else "error"
        return res
    res["result"] = j.get("result")
    if j.get("error"):
        res["error"] = j["error"]
    for k in ("total_ms", "downtime_ms", "setup_ms", "prepare_ms", "rounds",
              "throughput_bps"):
        res[k] = j.get(k)
    ram = j.get("ram") or {}
    res["transferred_bytes"] = ram.get("wire_bytes")
    # the last round's dirty pages over its duration
    res["dirty_MBps_last_round"] = (round(ram["dirty_rate_bps"] / 1e6)
                                    if ram.get("dirty_rate_bps") is not None else None)
    res["src_cpu_s"] = round(j.get("src_cpu_ms", 0) / 1e3, 1)
    res["dst_cpu_s"] = round(j.get("dst_cpu_ms", 0) / 1e3, 1)
    # What --converge added to the summary (protocol.md, mig_event): the
    # most throttle applied, for how long, and the guest's progress per
    # second (pages the lab guest stamped) over PRECOPY and over the part
    # of it no throttle slowed, as passes (a vCPU's pass is its share of
    # the working set, as for QEMU's guest).
    conv = j.get("convergence") or {}
    share = opts.wss // 4096 // opts.vcpus
    res["converge_mode"] = conv.get("mode")
    res["throttle_max_pct"] = conv.get("throttle_pct")
    res["throttle_ms"] = conv.get("throttle_ms")
    res["stall"] = conv.get("stall")
    if conv.get("guest_rate") is not None:
        res["guest_pages_per_s_during"] = conv["guest_rate"]
        res["passes_per_s_during"] = round(conv["guest_rate"] / share, 1)
    if conv.get("guest_rate_unthrottled"):
        res["passes_per_s_unthrottled"] = round(conv["guest_rate_unthrottled"] / share, 1)
    # guest_rate is over PRECOPY, on the source; post-copy's own rate, on
    # the destination, is convergence.postcopy.guest_rate: the pace during
    # the migration is both, weighted by the phases' durations
    pc = conv.get("postcopy")
    if pc and pc.get("guest_rate") is not None and conv.get("guest_rate") is not None:
        dur = {ph.get("name"): ph.get("duration_ms") or 0 for ph in j.get("phases") or []}
        pre, post = dur.get("precopy", 0), dur.get("postcopy", 0)
        if pre + post:
            rate = (conv["guest_rate"] * pre + pc["guest_rate"] * post) / (pre + post)
            res["guest_pages_per_s_during"] = round(rate)
            res["passes_per_s_during"] = round(rate / share, 1)
            res["passes_per_s_postcopy"] = round(pc["guest_rate"] / share, 1)
    elif mode == "postcopy":
        res["passes_per_s_during_covers"] = "pre-copy"
    # Post-copy (null when the migration did not switch): the longest any
    # vCPU's fault waited for its page (the destination's measure, from
    # the fault's request to the page placed), the pages asked for and how
    # many of them went ahead of the push, start to last page.
    pc = conv.get("postcopy")
    if pc:
        res["postcopy_after_rounds"] = pc.get("after_rounds")
        res["postcopy_pages"] = pc.get("pages")
        res["postcopy_requests"] = pc.get("pages_requested")
        res["postcopy_served_first"] = pc.get("pages_served_first")
        res["postcopy_faults"] = pc.get("faults")
        res["postcopy_ms"] = pc.get("duration_ms")
        res["postcopy_links_recovered"] = pc.get("links_recovered")
        if pc.get("worst_stall_us") is not None:
            res["postcopy_worst_stall_ms"] = round(pc["worst_stall_us"] / 1e3, 1)
        for ph in j.get("phases") or []:
            if ph.get("name") == "postcopy" and ph.get("start_ms") is not None:
                res["postcopy_started_s"] = round(ph["start_ms"] / 1e3, 1)
    res["summary"] = j
    return res


# --- the run ----------------------------------------------------------------

def markdown(out):
    lines = ["| migration | result | total s | downtime ms | GiB sent | rounds | guest passes/s "
             "before | during | during / before | worst vCPU stall ms | throttle max % | "
             "post-copy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in out["cells"]:
        r = c["median"]
        if r.get("result") == "pending":
            lines.append(f"| {c['kind']} | pending: {r.get('error', '')} | | | | | | | | | | |")
            continue

        def f(k, fmt="{}"):
            v = r.get(k)
            return "" if v is None else fmt.format(v)
        tot = r.get("total_ms")
        sent = r.get("transferred_bytes")
        stall = r.get("stall_max_ms_during")
        if isinstance(stall, list):
            stall = max(stall) if stall else None
        stall = "" if stall is None else f"{stall:g}"
        if r.get("stall_max_ms_before") is not None:
            stall += f" (before: {r['stall_max_ms_before']:g})"
        if r.get("postcopy_vcpu_blocktime_ms"):
            stall += ("; blocktime per vCPU: "
                      + ", ".join(str(x) for x in r["postcopy_vcpu_blocktime_ms"]))
        if r.get("postcopy_worst_stall_ms") is not None:
            # ours: the engine's longest wait of one fault for its page
            stall = f"{r['postcopy_worst_stall_ms']:g} (longest page wait)"
        during = f("passes_per_s_during")
        if during and r.get("passes_per_s_during_covers"):
            during += f" ({r['passes_per_s_during_covers']})"
        pc = ""
        if r.get("postcopy_started_s") is not None:
            pc = f"from {r['postcopy_started_s']:g} s"
            if r.get("postcopy_ms") is not None:
                pc += f" for {r['postcopy_ms'] / 1e3:.1f} s"
            if r.get("postcopy_requests") is not None:
                pc += (f"; {r['postcopy_requests']} "
                       + ("pages asked for" if c["kind"] in OURS else "page requests"))
                if r.get("postcopy_served_first") is not None:
                    pc += f" ({r['postcopy_served_first']} ahead of the push)"
            if r.get("postcopy_pages") is not None:
                pc += f"; {r['postcopy_pages']} pages after the switch"
        result = r.get("result")
        if result != "completed" and r.get("seconds"):
            result = f"{result} after {r['seconds']} s"
        runs = c["runs"]
        if len(runs) > 1:
            ok = sum(1 for x in runs if x.get("result") == "completed")
            result += f" ({ok} of {len(runs)} runs completed)"
        lines.append(
            f"| {c['kind']} | {result} | {'' if not tot else f'{tot / 1e3:.1f}'} | "
            f"{f('downtime_ms')} | {'' if sent is None else f'{sent / 2**30:.2f}'} | "
            f"{f('rounds')} | {f('passes_per_s_before')} | {during} | "
            f"{f('progress_ratio')} | {stall} | {f('throttle_max_pct')} | {pc} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", type=parse_mem, default=parse_mem("2G"),
                    help="guest RAM, the lab guest's and QEMU's (default 2G)")
    ap.add_argument("--vcpus", type=int_arg("--vcpus", 1, MAX_VCPUS), default=2,
                    help=f"vCPUs, each writing its share of the working set (default 2, "
                    f"at most {MAX_VCPUS})")
    ap.add_argument("--wss", type=parse_wss, default=parse_wss("1G"),
                    help="the working set the vCPUs write (default 1G)")
    ap.add_argument("--bandwidth", type=parse_bw, default=parse_bw("256M"),
                    help="the link's cap in bytes/s: our --max-bandwidth, QEMU's "
                    "max-bandwidth (default 256M = 256 MiB/s)")
    ap.add_argument("--downtime-limit", type=int_arg("--downtime-limit", 1, 60000),
                    default=300, help="ms (default 300)")
    ap.add_argument("--kinds", type=lambda s: parse_list(s, KINDS, "--kinds"),
                    default=list(KINDS), help="which migrations (default all: %s)"
                    % ",".join(KINDS))
    ap.add_argument("--repeat", type=int_arg("--repeat", 1, 9), default=1,
                    help="runs per kind, alternating; the completed run with the median "
                    "total time stands (1-9)")
    ap.add_argument("--timeout", type=float_arg("--timeout", 5, 3600), default=60,
                    help="seconds a migration may take: our --timeout, and QEMU's are "
                    "cancelled after it (default 60)")
    ap.add_argument("--postcopy-after", type=int_arg("--postcopy-after", 1, 100), default=2,
                    help="qemu-postcopy switches once dirty-sync-count reaches this, "
                    "ours-postcopy after this - 1 pre-copy rounds (our --postcopy-after, "
                    "at least 1) (default 2: both after the first pass over RAM)")
    ap.add_argument("--max-throttle", type=int_arg("--max-throttle", 1, 99), default=None,
                    help="passed to our throttle and auto rows as --max-throttle "
                    "(default: not passed)")
    ap.add_argument("--sample", type=float_arg("--sample", 0.1, 10), default=0.5,
                    help="seconds between readings of QEMU's guest's counters during a "
                    "migration (default 0.5)")
    ap.add_argument("--before", type=float_arg("--before", 0.5, 30), default=2,
                    help="seconds the QEMU guest's pace is measured before and after "
                    "(default 2)")
    ap.add_argument("--tsc-mhz", type=float_arg("--tsc-mhz", 100, 10000), default=None,
                    help="the TSC rate QEMU's guest reads, to convert its stalls to ms "
                    "(default: the host's, from dmesg)")
    ap.add_argument("--migratectl", default=None,
                    help="migratectl binary (default build/migratectl next to bench/)")
    ap.add_argument("--markdown", action="store_true", help="a table instead of JSON")
    ap.add_argument("--save", metavar="FILE",
                    help="also write the JSON result to FILE (with --markdown: the runs "
                    "behind the table)")
    ap.add_argument("--render", metavar="FILE",
                    help="print the table of a JSON result saved before, and run nothing")
    opts = ap.parse_args()
    if opts.render:
        try:
            with open(opts.render) as f:
                print(markdown(json.load(f)))
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"converge: cannot render {opts.render}: {e}")
        return
    if opts.wss % 4096:
        ap.error("--wss must be a multiple of 4K (one page)")
    if opts.wss // opts.vcpus < 4096:
        ap.error("--wss gives each vCPU less than one page")
    if WSS_BASE + opts.wss > opts.mem:
        ap.error(f"--wss {opts.wss >> 20} MiB does not fit in --mem {opts.mem >> 20} MiB: "
                 f"QEMU's guest writes from {WSS_BASE >> 20} MiB up, so --mem must be at "
                 f"least --wss + {WSS_BASE >> 20}M")

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    migratectl = opts.migratectl or os.path.join(root, "build", "migratectl")
    want_ours = any(k in OURS for k in opts.kinds)
    want_qemu = any(k in QEMUS for k in opts.kinds)
    if want_ours and not os.access(migratectl, os.X_OK):
        sys.exit(f"converge: {migratectl} is not there: build first "
                 "(meson setup build && ninja -C build) or pass --migratectl")
    if want_qemu:
        qemu_peer.check_host()
        for tool in ("gcc", "ld"):
            if not shutil.which(tool):
                sys.exit(f"converge: {tool} not found: QEMU's guest is assembled at run "
                         "time; install build-essential")
    helptext = start_help(migratectl) if want_ours else ""
    opts.tsc_hz = opts.tsc_mhz * 1e6 if opts.tsc_mhz else None
    if want_qemu and not opts.tsc_hz:
        opts.tsc_hz = host_tsc_hz()
        if not opts.tsc_hz:
            sys.exit("converge: the host's TSC rate is not in dmesg: give --tsc-mhz")

    tmp = tempfile.mkdtemp(prefix="converge.")
    cleanup = qemu_peer.install_cleanup(tmp)
    try:
        out = {"mem_bytes": opts.mem, "vcpus": opts.vcpus, "wss_bytes": opts.wss,
               "bandwidth_Bps": opts.bandwidth, "downtime_limit_ms": opts.downtime_limit,
               "timeout_s": opts.timeout, "repeat": opts.repeat,
               "postcopy_after_syncs": opts.postcopy_after,
               "qemu": qemu_peer.qemu_version() if want_qemu else None,
               "converge_available": "--converge" in helptext,
               "max_throttle_available": "--max-throttle" in helptext,
               "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "load_avg_start": os.getloadavg()}
        guest = None
        if want_qemu:
            log(f"assembling QEMU's guest, writing {opts.mem >> 20} MiB of RAM data")
            try:
                guest = Guest(tmp, opts)
            except RuntimeError as e:
                sys.exit(f"converge: {e}")
        runs = {}
        for i in range(opts.repeat):
            for kind in opts.kinds:
                log(f"run {i + 1}/{opts.repeat} {kind} ...")
                if kind in OURS:
                    r = run_ours(migratectl, kind, opts, helptext)
                else:
                    r = run_qemu(tmp, guest, kind, opts)
                # the host's load as each run ended (1, 5, 15 min)
                r["load_avg"] = [round(x, 2) for x in os.getloadavg()]
                log(f"run {i + 1}/{opts.repeat} {kind}: {r.get('result')} "
                    f"total {r.get('total_ms')} ms, downtime {r.get('downtime_ms')} ms, "
                    f"passes/s {r.get('passes_per_s_before')} -> "
                    f"{r.get('passes_per_s_during')}, load {r['load_avg'][0]} "
                    f"{r.get('error', '')}")
                runs.setdefault(kind, []).append(r)
        out["cells"] = [{"kind": k, "runs": rs, "median": median_run(rs)}
                        for k, rs in runs.items()]
        out["load_avg"] = os.getloadavg()
        out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        if opts.save:
            with open(opts.save, "w") as f:
                json.dump(out, f, indent=1)
        print(markdown(out) if opts.markdown else json.dumps(out, indent=1))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
