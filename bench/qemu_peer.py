# SPDX-License-Identifier: MIT
"""What bench/peer-qemu.py and bench/converge.py share: QEMU under KVM as the
peer, its QMP socket, the guest RAM's pseudo-random data, option parsing,
and the bookkeeping that kills every QEMU a script started when it exits.

Not a program: the scripts next to it import it (their directory is on
sys.path when they run).
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

QEMU = "qemu-system-x86_64"
LOW_END = 0xA0000        # conventional memory
HIGH_START = 0x100000    # RAM above the legacy hole
CLK_TCK = os.sysconf("SC_CLK_TCK")

children = []            # every process started through start_qemu() (or added), killed on exit
prog = "qemu-peer"       # the calling script's name, for log()


def log(*a):
    print(f"{prog}:", *a, file=sys.stderr, flush=True)


def size_arg(opt, lo, hi, hint):
    """An argparse type: a size in bytes or with K, M or G, from lo to hi."""
    def parse(s):
        m = re.fullmatch(r"(\d+)([KMG]?)", s.strip().upper())
        if not m:
            raise argparse.ArgumentTypeError(
                f"{opt} {s!r} is not a size: give bytes or a number with K, M or G, e.g. 2G")
        n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]
        if n < lo or n > hi:
            raise argparse.ArgumentTypeError(f"{opt} {s}: {hint}")
        return n
    return parse


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


def cpu_s(pid):
    """utime + stime of a process, all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def check_host(what="QEMU's peer runs"):
    """Exits with a clear message when QEMU or KVM is missing."""
    if not shutil.which(QEMU):
        sys.exit(f"{prog}: {QEMU} not found: run contrib/build.sh "
                 "(it installs qemu-system-x86)")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        sys.exit(f"{prog}: /dev/kvm is not usable: {what} need KVM")


def qemu_version():
    return subprocess.run([QEMU, "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]


def kill_children():
    for p in list(children):
        p.kill()
        p.wait()
        children.remove(p)


def install_cleanup(tmp):
    """Kills every QEMU and removes tmp on exit, SIGINT and SIGTERM; returns
    the function to call in the script's finally."""
    def cleanup(*_):
        kill_children()
        shutil.rmtree(tmp, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(143)))
    signal.signal(signal.SIGINT, lambda *a: (cleanup(), sys.exit(130)))
    return cleanup


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


def hmp(q, line):
    return q.cmd("human-monitor-command", **{"command-line": line})


def start_qemu(tmp, name, mem, args, smp=1, incoming=False, prealloc=False):
    """qemu-system-x86_64 under KVM, no default devices, a QMP socket in tmp,
    stderr to tmp/NAME.log; the destination waits for migrate-incoming.
    Returns (Popen, QMP)."""
    qmp = os.path.join(tmp, f"{name}.qmp")
    if os.path.exists(qmp):
        os.unlink(qmp)
    cmd = [QEMU, "-accel", "kvm", "-machine", "pc", "-m", str(mem >> 20), "-smp", str(smp),
           "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
           "-qmp", f"unix:{qmp},server=on,wait=off"] + list(args)
    if incoming:
        cmd += ["-incoming", "defer"]
        if prealloc:
            cmd += ["-mem-prealloc"]
    errf = open(os.path.join(tmp, f"{name}.log"), "ab")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf)
    errf.close()
    children.append(p)
    try:
        return p, QMP(qmp, time.monotonic() + 60)
    except (RuntimeError, OSError) as e:
        raise RuntimeError(f"{e}; {name}'s log: {qemu_log(tmp, name)}") from None


def qemu_log(tmp, name):
    try:
        with open(os.path.join(tmp, f"{name}.log")) as f:
            return f.read().strip()[-500:] or "(empty)"
    except OSError:
        return "(none)"


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


def dirty_rate(q, mode=None, seconds=1):
    """The guest's dirty rate over `seconds`, MB/s: QEMU's page sampling by
    default, or mode "dirty-bitmap" (the dirty log, as a migration sees it)."""
    args = {"calc-time": seconds}
    if mode:
        args["mode"] = mode
    q.cmd("calc-dirty-rate", **args)
    end = time.monotonic() + seconds + 10
    while time.monotonic() < end:
        r = q.cmd("query-dirty-rate")
        if r.get("status") == "measured":
            return r.get("dirty-rate")
        time.sleep(0.1)
    return None


def wait_running(q, timeout=30):
    end = time.monotonic() + timeout
    while q.cmd("query-status").get("status") != "running":
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


# --- guest RAM --------------------------------------------------------------

class RamData:
    """Pseudo-random data for all of a guest's RAM but the legacy hole
    (640 KiB-1 MiB), loaded into the source with two `-device loader`
    blobs before its vCPUs start: QEMU does not send zero pages, so a blank
    guest would measure nothing."""

    def __init__(self, tmp, mem, seed=20261206):
        self.mem = mem
        rng = random.Random(seed)
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

    def loader_args(self):
        return ["-device", f"loader,file={self.low},addr=0",
                "-device", f"loader,file={self.high},addr={HIGH_START:#x}"]

    def expect(self, addr):
        if addr < LOW_END:
            path, off = self.low, addr
        else:
            path, off = self.high, addr - HIGH_START
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(4)


def median_run(runs):
    """The run that stands for a cell: the completed one with the median
    total time, else the first."""
    ok = [r for r in runs if r.get("result") == "completed" and r.get("total_ms")]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r["total_ms"])
    return ok[(len(ok) - 1) // 2]
