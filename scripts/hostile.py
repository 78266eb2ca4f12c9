#!/usr/bin/env python3
"""Hostile peers for the fault scripts (scripts/fault-*.sh), on 127.0.0.1 only.

Servers (each listens on PORT, serves every connection in a thread of its
own, and writes its counters as JSON to STATS every 0.5 s and at SIGTERM):

  hostile.py serve MODE PORT STATS
    big        a MetricsPort answer of 1 GiB, close-delimited (no Content-Length)
    biglen     the same announced with `Content-Length: 1073741824`
    series     1,000,000 distinct `tor_*` series (~31 MB)
    series50k  50,000 distinct `tor_*` series: watch's default per-target
               limit (max_samples), so the largest page it accepts
    series199k 199,999 distinct `tor_*` series: just under the parser's
               200,000-sample limit (refused by watch's default max_samples)
    types      wrong types: a histogram named onionwatch_scrape_up (our own
               name), a counter with `_bucket` samples, tor's counter
               tor_hs_app_write_bytes_total typed gauge, NaN and +Inf
               values, a summary's samples under a gauge
    badvalue   `types` plus a value that is not a number
    duptype    `types` plus a second TYPE line for one family
    trickle    a valid 200 head, then one byte of body every 0.5 s, forever
    silent     accept, read whatever comes, never answer (a control port or
               MetricsPort that hangs)

  hostile.py slow-clients N HOST:PORT SECONDS [reconnect]
    open N connections to HOST:PORT and send a request head one byte per
    second on each, for SECONDS; prints how many connections the server
    closed before the end. With `reconnect`, each connection the server
    closes is opened again (N stay open as long as the server lets them),
    as a persistent attacker would.

  hostile.py circuits FIRST COUNT HOST:PORT SECONDS
    one connection per circuit id FIRST..FIRST+COUNT-1, each a PROXY v1
    header from that circuit (as tor writes it) and one GET with
    `Connection: close`, read to the end; stops after SECONDS; prints how
    many were sent and the statuses seen.

  hostile.py free-port       print a free TCP port on 127.0.0.1
"""

import json
import signal
import socket
import sys
import threading
import time

GIB = 1 << 30
HEAD_CLOSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\r\n"

stats = {"connections": 0, "open": 0, "max_open": 0, "bytes_sent": 0, "closed_by_peer": 0}
lock = threading.Lock()


def bump(key, n=1):
    with lock:
        stats[key] += n
        if key == "open":
            stats["max_open"] = max(stats["max_open"], stats["open"])


def series_page(n):
    out = bytearray(b"# HELP tor_hs_fake Fake series.\n# TYPE tor_hs_fake gauge\n")
    for i in range(n):
        out += b'tor_hs_fake{onion="%d"} 1\n' % i
    return bytes(out)


TYPES_PAGE = b"""# TYPE onionwatch_scrape_up histogram
onionwatch_scrape_up_bucket{le="1"} 1
onionwatch_scrape_up_bucket{le="+Inf"} 1
onionwatch_scrape_up_sum 1
onionwatch_scrape_up_count 1
# TYPE tor_relay_load_onionskins_total counter
tor_relay_load_onionskins_total_bucket{le="1"} 3
# TYPE tor_hs_app_write_bytes_total gauge
tor_hs_app_write_bytes_total{onion="x"} 12
# TYPE tor_hs_fake_gauge gauge
tor_hs_fake_gauge{onion="a"} NaN
tor_hs_fake_gauge{onion="b"} +Inf
# TYPE tor_hs_fake_summary gauge
tor_hs_fake_summary{quantile="0.5"} 1
tor_hs_fake_summary_sum 2
tor_hs_fake_summary_count 3
"""

TYPES_BAD_VALUE = TYPES_PAGE + b'tor_hs_fake_gauge{onion="c"} abc\n'
TYPES_DUPLICATE = TYPES_PAGE + b"# TYPE tor_hs_fake_gauge counter\n"


def read_some(conn):
    conn.settimeout(2)
    try:
        conn.recv(65536)
    except OSError:
        pass
    conn.settimeout(None)


def send(conn, data):
    conn.sendall(data)
    bump("bytes_sent", len(data))


def handle(mode, conn, pages):
    bump("connections")
    bump("open")
    try:
        if mode == "silent":
            while conn.recv(65536):
                pass
            return
        read_some(conn)
        if mode in ("big", "biglen"):
            head = HEAD_CLOSE
            if mode == "biglen":
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % GIB
            send(conn, head)
            chunk = pages["chunk"]
            sent = 0
            while sent < GIB:
                send(conn, chunk)
                sent += len(chunk)
        elif mode == "trickle":
            send(conn, HEAD_CLOSE)
            line = b'tor_hs_fake{onion="trickle"} 1\n' * 1000
            for b in line:
                send(conn, bytes([b]))
                time.sleep(0.5)
        else:
            body = pages[mode]
            send(conn, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body))
            send(conn, body)
    except OSError:
        bump("closed_by_peer")
    finally:
        bump("open", -1)
        try:
            conn.close()
        except OSError:
            pass


def write_stats(path):
    with lock:
        data = json.dumps(stats)
    with open(path + ".tmp", "w") as f:
        f.write(data)
    import os

    os.replace(path + ".tmp", path)


def serve(mode, port, stats_path):
    pages = {}
    if mode in ("big", "biglen"):
        pages["chunk"] = b"".join(b'tor_hs_fake{onion="%07d"} 1\n' % i for i in range(40000))
    elif mode == "series":
        pages["series"] = series_page(1_000_000)
    elif mode == "series50k":
        pages["series50k"] = series_page(50_000)
    elif mode == "series199k":
        pages["series199k"] = series_page(199_999)
    elif mode == "types":
        pages["types"] = TYPES_PAGE
    elif mode == "badvalue":
        pages["badvalue"] = TYPES_BAD_VALUE
    elif mode == "duptype":
        pages["duptype"] = TYPES_DUPLICATE
    elif mode not in ("trickle", "silent"):
        sys.exit(f"unknown mode {mode}")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(256)

    def stop(*_):
        write_stats(stats_path)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)

    def ticker():
        while True:
            write_stats(stats_path)
            time.sleep(0.5)

    threading.Thread(target=ticker, daemon=True).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(mode, conn, pages), daemon=True).start()


def slow_clients(n, target, seconds, reconnect=False):
    host, port = target.rsplit(":", 1)
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10000
    failed_connects = 0

    def connect():
        nonlocal failed_connects
        try:
            s = socket.create_connection((host, int(port)), timeout=1)
        except OSError:
            failed_connects += 1
            return None
        s.setblocking(False)
        try:
            s.send(head[:1])
        except OSError:
            pass
        return s

    socks = [s for s in (connect() for _ in range(n)) if s]
    closed = 0
    reopened = 0
    end = time.monotonic() + seconds
    i = 1
    while time.monotonic() < end and (socks or reconnect):
        b = head[i % len(head) : i % len(head) + 1]
        alive = []
        for s in socks:
            try:
                s.send(b)
                alive.append(s)
            except OSError:
                closed += 1
                s.close()
        if reconnect:
            while len(alive) < n and time.monotonic() < end:
                s = connect()
                if s is None:
                    break
                reopened += 1
                alive.append(s)
        socks = alive
        i += 1
        time.sleep(1)
    print(json.dumps({"clients": n, "closed_by_server": closed, "reopened": reopened,
                      "failed_connects": failed_connects, "seconds": seconds}))
    for s in socks:
        s.close()


def circuits(first, count, target, seconds):
    host, port = target.rsplit(":", 1)
    end = time.monotonic() + seconds
    statuses = {}
    done = 0
    for c in range(first, first + count):
        if time.monotonic() > end:
            break
        s = socket.create_connection((host, int(port)))
        s.sendall(b"PROXY TCP6 fc00:dead:beef:4dad::%x:%x ::1 %d 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                  % (c >> 16, c & 0xFFFF, c & 0xFFFF))
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        st = data[9:12].decode() if data.startswith(b"HTTP/") else "none"
        statuses[st] = statuses.get(st, 0) + 1
        done += 1
    print(json.dumps({"sent": done, "statuses": statuses}))


def main():
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "slow-clients":
        slow_clients(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]),
                     len(sys.argv) > 5 and sys.argv[5] == "reconnect")
    elif cmd == "circuits":
        circuits(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    elif cmd == "free-port":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
