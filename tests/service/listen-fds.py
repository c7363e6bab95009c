#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs a program with a socket passed the way systemd's socket activation
passes it: the socket at fd 3, LISTEN_FDS=1 and LISTEN_PID the program's own
pid (this process execs it, so the pid stays), LISTEN_FDNAMES its name.

usage: listen-fds.py (--unix PATH | --tcp PORT) [--port-file F]
                     [--fd listening|connected|file] [--pid self|other]
                     [--fds N] [--name NAME] -- PROG ARG...

--tcp 0 binds a free port on 127.0.0.1; "@PORT@" in PROG's arguments becomes
that port, and --port-file F gets it.  --fd connected passes one end of a
connected socket pair, --fd file a regular file, instead of the listener;
--pid other sets LISTEN_PID to another process (the parent); --fds N claims
N sockets."""
import argparse
import os
import socket
import sys

ap = argparse.ArgumentParser()
g = ap.add_mutually_exclusive_group(required=True)
g.add_argument('--unix')
g.add_argument('--tcp', type=int)
ap.add_argument('--port-file')
ap.add_argument('--fd', choices=['listening', 'connected', 'file'], default='listening')
ap.add_argument('--pid', choices=['self', 'other'], default='self')
ap.add_argument('--fds', type=int, default=1)
ap.add_argument('--name', default='migratectl-agent.socket')
ap.add_argument('argv', nargs='+')
a = ap.parse_args()

port = 0
if a.unix:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(a.unix):
        os.unlink(a.unix)
    s.bind(a.unix)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', a.tcp))
    port = s.getsockname()[1]
s.listen(64)
if a.port_file:
    with open(a.port_file + '.tmp', 'w') as f:
        f.write('%d\n' % port)
    os.rename(a.port_file + '.tmp', a.port_file)

if a.fd == 'listening':
    fd = s.fileno()
elif a.fd == 'connected':
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = pair[0].fileno()
else:
    fd = os.open('/dev/null', os.O_RDONLY)
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)   # also when the socket already was fd 3

os.environ['LISTEN_FDS'] = str(a.fds)
os.environ['LISTEN_PID'] = str(os.getpid() if a.pid == 'self' else os.getppid())
os.environ['LISTEN_FDNAMES'] = a.name
argv = [x.replace('@PORT@', str(port)) for x in a.argv]
sys.stdout.flush()
os.execv(argv[0], argv)
