#!/usr/bin/env python3
"""Write a deterministic synthetic nginx access log in the `combined` format,
as Onionspray writes it with `tor_export_circuit_id haproxy`: every client
address is a circuit id (`fc00:dead:beef:4dad::HI:LO`).

Usage: scripts/gen-access-log.py LINES [CIRCUITS] > access.log
       (defaults: CIRCUITS = 50000; the same arguments give the same bytes)

Requests per circuit are skewed (a few busy circuits, a long tail), times
advance evenly over six hours from 2024-01-11 00:00:00 UTC, and paths, user
agents, statuses and sizes follow a plausible mix. About one line in 2,000 has
an escaped quote in its user agent.
"""

import random
import sys
import time

PATHS = [
    ("/", 8),
    ("/index.html", 2),
    ("/static/css/main.css", 6),
    ("/static/js/app.js", 6),
    ("/static/fonts/fontawesome/webfonts/fa-brands-400.woff2", 3),
    ("/static/img/logo.png", 5),
    ("/favicon.ico", 4),
    ("/robots.txt", 1),
    ("/news/2024/01/11/onion-services-are-great", 3),
    ("/search?q=tor+onion+service&page=2", 2),
    ("/api/v1/items?limit=50", 3),
    ("/login", 1),
    ("/wp-login.php", 1),
]
USER_AGENTS = [
    ("Mozilla/5.0 (Windows NT 10.0; rv:109.0) Gecko/20100101 Firefox/115.0", 14),
    ("Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0", 10),
    ("Mozilla/5.0 (Android 10; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0", 3),
    ("curl/8.5.0", 1),
    ("python-requests/2.31.0", 1),
]
STATUSES = [(200, 80), (304, 8), (301, 2), (302, 2), (404, 5), (403, 1), (499, 1), (500, 1), (502, 1), (503, 1)]
METHODS = [("GET", 95), ("POST", 3), ("HEAD", 2)]
REFERERS = [("-", 6), ("http://exampleexampleexampleexampleexampleexampleexamplead.onion/", 3)]
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def weighted(rng, items):
    values = [v for v, _ in items]
    weights = [w for _, w in items]
    return lambda: rng.choices(values, weights)[0]


def main():
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    lines = int(sys.argv[1])
    circuits = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    rng = random.Random(20240111)
    path, ua, status, method, referer = (
        weighted(rng, PATHS),
        weighted(rng, USER_AGENTS),
        weighted(rng, STATUSES),
        weighted(rng, METHODS),
        weighted(rng, REFERERS),
    )
    # tor hands out global circuit ids roughly in order, with gaps.
    ids = []
    cid = 0x2A
    for _ in range(circuits):
        cid += rng.randint(1, 40)
        ids.append(cid)
    start = 1704931200  # 2024-01-11T00:00:00Z
    span = 6 * 3600
    out = sys.stdout.buffer
    buf = []
    for i in range(lines):
        c = ids[int(circuits * rng.random() ** 2)]
        t = time.gmtime(start + span * i // lines)
        stamp = "%02d/%s/%04d:%02d:%02d:%02d +0000" % (
            t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)
        st = status()
        size = 0 if st in (304, 499) else rng.randint(150, 80000)
        agent = ua()
        if i % 2000 == 1999:
            agent += ' \\"compatible\\"'
        buf.append('fc00:dead:beef:4dad::%x:%x - - [%s] "%s %s HTTP/1.1" %d %d "%s" "%s"\n' % (
            c >> 16, c & 0xFFFF, stamp, method(), path(), st, size, referer(), agent))
        if len(buf) == 10000:
            out.write("".join(buf).encode())
            buf.clear()
    out.write("".join(buf).encode())


if __name__ == "__main__":
    main()
