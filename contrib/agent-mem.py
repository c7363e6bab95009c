#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What the two agents of `migratectl start local local` hold beyond guest
RAM, at its peak during the migration (docs/performance.md).

    contrib/agent-mem.py [--migratectl PATH] [--cancel-after S] START-ARGS...

START-ARGS go to `migratectl start local local --json` and must include
`--lab mem=SIZE,...`.  Every 20 ms each child of migratectl (its two
agents) is read from /proc/PID/smaps: the guest's mapping is the one at
least as large as guest RAM, and the Rss and Pss of all the others are what
the agent adds.  With --cancel-after, migratectl gets SIGINT (a cancel)
after S seconds, for settings too slow to finish.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time


def ram_kib(args):
    for a in args:
        for part in a.split(','):
            if part.startswith('mem='):
                v = part[4:]
                return int(v[:-1]) * {'M': 1 << 10, 'G': 1 << 20}[v[-1].upper()]
    sys.exit('agent-mem: START-ARGS need --lab mem=SIZE (M or G)')


def children(pid):
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def sample(pid, guest_kib):
    """(Rss, Pss) of every mapping but guest RAM, and guest RAM's Rss, in KiB."""
    rss = pss = guest = size = 0
    try:
        with open(f'/proc/{pid}/smaps') as f:
            for line in f:
                key, _, rest = line.partition(':')
                if key == 'Size':
                    size = int(rest.split()[0])
                elif key == 'Rss':
                    if size >= guest_kib:
                        guest += int(rest.split()[0])
                    else:
                        rss += int(rest.split()[0])
                elif key == 'Pss' and size < guest_kib:
                    pss += int(rest.split()[0])
    except (OSError, ValueError):
        return None
    return rss, pss, guest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--migratectl', default='build/migratectl')
    ap.add_argument('--cancel-after', type=float, default=0)
    o, o.start = ap.parse_known_args()
    guest_kib = ram_kib(o.start)
    p = subprocess.Popen([o.migratectl, 'start', 'local', 'local', '--json'] + o.start,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    t0, peak = time.time(), {}
    while p.poll() is None:
        if o.cancel_after and time.time() - t0 > o.cancel_after:
            p.send_signal(signal.SIGINT)
            o.cancel_after = 0
        for k in children(p.pid):
            s = sample(k, guest_kib)
            if s:
                pk = peak.setdefault(k, [0, 0, 0])
                for i in range(3):
                    pk[i] = max(pk[i], s[i])
        time.sleep(0.02)
    out = p.stdout.read().decode()
    res = json.loads(out) if out.startswith('{') else {}
    print(f"{res.get('result')}: guest {guest_kib >> 10} MiB, budget (3 %) "
          f"{guest_kib * 3 / 100 / 1024:.1f} MiB")
    for k, (rss, pss, guest) in sorted(peak.items()):
        print(f"  agent {k}: beyond guest RAM Rss {rss / 1024:.1f} MiB "
              f"({100 * rss / guest_kib:.2f} %), Pss {pss / 1024:.1f} MiB; "
              f"guest RAM Rss {guest >> 10} MiB")


main()
