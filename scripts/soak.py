#!/usr/bin/env python3
"""The load generators, the sampler and the report of scripts/soak (run by it;
standard library only). Every subcommand stops by itself after --duration
seconds; the load generators are rate-limited and write what they really did
(cumulative counters, JSON, replaced every second) to --count, so a starved
run shows in the figures.

  soak.py write-logs --count F --duration S [--rate 2000] [--circuits 100000] [--rotate 60] LOG...
  soak.py gateway --count F --duration S --target 127.0.0.1:P [--rate 500] [--circuits 1000]
  soak.py poll --count F --duration S NAME=URL...
  soak.py sample --out CSV --duration S [--interval 10] --tor-parent PID --counts DIR NAME=PID[:STATE_PATH]...
  soak.py report --csv CSV --minutes M [--png FILE]
"""

import argparse
import asyncio
import csv
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
PATHS = ["/", "/index.html", "/static/css/main.css", "/static/js/app.js", "/static/img/logo.png",
         "/favicon.ico", "/news/2026/12/02/onion-services", "/search?q=tor&page=2", "/api/v1/items?limit=50"]
STATUSES = [200] * 16 + [304, 301, 404, 500]
AGENT = "Mozilla/5.0 (Windows NT 10.0; rv:128.0) Gecko/20100101 Firefox/128.0"


def circuit_addr(cid):
    """A circuit id as tor's HiddenServiceExportCircuitID haproxy writes it."""
    return "fc00:dead:beef:4dad::%x:%x" % (cid >> 16, cid & 0xFFFF)


def save_count(path, counts):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(counts, f)
    os.replace(tmp, path)


def write_logs(a):
    """RATE combined lines a second spread over the LOG files, circuit ids
    from a block of CIRCUITS ids that changes every minute (each id of the
    block in turn, so each block's ids are all distinct and all used), plus
    1 % of the lines from 5 busy circuits (over any per-minute policy limit
    of 100); every ROTATE seconds every file is rotated, by rename (the
    file moves to FILE.1 and a new one is created) and by copytruncate
    (copied to FILE.1, then truncated) alternately. With --truncate-settle S
    no line is written for S seconds before a copytruncate, so the readers
    have read every line when the file is truncated: the run that shows what
    copytruncate alone loses (a reader's unread tail goes only to the copy)."""
    files = a.logs
    handles = [open(f, "a") for f in files]
    start = time.monotonic()
    end = start + a.duration
    counts = {"lines": 0, "rotations": 0, "rename": 0, "copytruncate": 0, "late_batches": 0}
    rng = random.Random(19)
    tick = 0.1
    per_tick = a.rate * tick
    owed = 0.0
    seq = 0
    next_rotate = start + a.rotate
    next_save = start
    t = start
    k = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_rotate:
            how = "rename" if counts["rotations"] % 2 == 0 else "copytruncate"
            for i, f in enumerate(files):
                if how == "rename":
                    handles[i].close()
                    os.replace(f, f + ".1")
                    handles[i] = open(f, "a")
                else:
                    handles[i].flush()
                    if i == 0 and a.truncate_settle > 0:
                        time.sleep(a.truncate_settle)
                    shutil.copyfile(f, f + ".1")
                    os.truncate(f, 0)
            counts["rotations"] += 1
            counts[how] += 1
            next_rotate += a.rotate
        owed += per_tick
        n = int(owed)
        owed -= n
        minute = int((now - start) // 60)
        g = time.gmtime()
        stamp = "%02d/%s/%04d:%02d:%02d:%02d +0000" % (g.tm_mday, MONTHS[g.tm_mon - 1], g.tm_year, g.tm_hour, g.tm_min, g.tm_sec)
        bufs = [[] for _ in files]
        for _ in range(n):
            if rng.random() < 0.01:
                cid = 0x10 + rng.randrange(5)
            else:
                cid = 0x1000 + minute * a.circuits + seq % a.circuits
                seq += 1
            st = rng.choice(STATUSES)
            bufs[k % len(files)].append('%s - - [%s] "GET %s HTTP/1.1" %d %d "-" "%s"\n' % (
                circuit_addr(cid), stamp, rng.choice(PATHS), st, 0 if st == 304 else rng.randint(150, 80000), AGENT))
            k += 1
        for h, b in zip(handles, bufs):
            if b:
                h.write("".join(b))
                h.flush()
        counts["lines"] += n
        t += tick
        if now >= next_save:
            save_count(a.count, counts)
            next_save += 1
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1:
            # More than a second behind: drop what is owed instead of bursting.
            counts["late_batches"] += 1
            t = time.monotonic()
    for h in handles:
        h.close()
    save_count(a.count, counts)


async def gateway_load(a):
    """RATE requests a second through the gateway, each connection starting
    with tor's PROXY line for one circuit of a block of CIRCUITS ids that
    changes every minute (as circuits come and go), 1 to 9 keep-alive
    requests per connection, plus 2 % of the requests from 2 busy circuits
    (about 5 requests/s each: over a per-circuit rate of 2, so the gateway
    answers them 429 and its abuse tracking works). CONCURRENCY connections
    at most at once."""
    host, port = a.target.rsplit(":", 1)
    port = int(port)
    counts = {"sent": 0, "ok": 0, "status_429": 0, "status_other": 0, "errors": 0, "connections": 0, "late": 0}
    start = time.monotonic()
    end = start + a.duration
    state = {"next": start}
    rng = random.Random(17)

    async def slot():
        # The global pace: one request every 1/RATE s; more than a second
        # behind (a starved machine) skips the lost slots, counted as late.
        now = time.monotonic()
        if state["next"] < now - 1:
            counts["late"] += int((now - state["next"]) * a.rate)
            state["next"] = now
        t = state["next"]
        state["next"] = t + 1 / a.rate
        if t > now:
            await asyncio.sleep(t - now)

    async def worker():
        while time.monotonic() < end:
            minute = int((time.monotonic() - start) // 60)
            hot = rng.random() < 0.02
            cid = (7 + rng.randrange(2)) if hot else 0x100000 + minute * a.circuits + rng.randrange(a.circuits)
            n = 1 if hot else rng.randint(1, 9)
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            except (OSError, asyncio.TimeoutError):
                counts["errors"] += 1
                await asyncio.sleep(0.1)
                continue
            counts["connections"] += 1
            try:
                w.write(("PROXY TCP6 %s ::1 %d 80\r\n" % (circuit_addr(cid), cid & 0xFFFF)).encode())
                for _ in range(n):
                    await slot()
                    if time.monotonic() >= end:
                        break
                    w.write(b"GET /soak HTTP/1.1\r\nHost: soak.onion\r\nUser-Agent: soak\r\n\r\n")
                    counts["sent"] += 1
                    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                    status = int(head.split(b" ", 2)[1])
                    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                    if m:
                        await asyncio.wait_for(r.readexactly(int(m.group(1))), 10)
                    if status == 200:
                        counts["ok"] += 1
                    elif status == 429:
                        counts["status_429"] += 1
                    else:
                        counts["status_other"] += 1
                    if not m or re.search(rb"(?i)\r\nconnection: *close", head):
                        break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                counts["errors"] += 1
            finally:
                w.close()

    async def saver():
        while time.monotonic() < end:
            save_count(a.count, counts)
            await asyncio.sleep(1)

    tasks = [asyncio.create_task(worker()) for _ in range(a.concurrency)]
    s = asyncio.create_task(saver())
    await asyncio.gather(*tasks)
    s.cancel()
    save_count(a.count, counts)


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def poll(a):
    """GET every URL once a second (each with a 5 s timeout); count answers
    and failures per name, and keep the lines counted
    (onionwatch_log_requests_total) of the /metrics pages that have them."""
    targets = [t.split("=", 1) for t in a.urls]
    counts = {"ok": 0, "failed": 0}
    start = time.monotonic()
    end = start + a.duration
    t = start
    while t < end:
        for name, url in targets:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    body = resp.read()
                counts["ok"] += 1
                counts[name + "_ok"] = counts.get(name + "_ok", 0) + 1
                if url.endswith("/metrics"):
                    n = metric_sum(body.decode("utf-8", "replace"), "onionwatch_log_requests_total")
                    if n:
                        counts[name + "_log_requests"] = n
            except Exception:  # noqa: BLE001 - any failure is a failed poll
                counts["failed"] += 1
                counts[name + "_failed"] = counts.get(name + "_failed", 0) + 1
        save_count(a.count, counts)
        t += 1
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            t = time.monotonic()


HZ = os.sysconf("SC_CLK_TCK")


def proc_sample(pid):
    """(rss KiB, cpu seconds, open fds, threads) of a live process, or None
    (gone, or a zombie)."""
    try:
        status = open("/proc/%d/status" % pid).read()
        stat = open("/proc/%d/stat" % pid).read()
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None
    rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
    threads = re.search(r"^Threads:\s+(\d+)", status, re.M)
    if not rss or not threads:
        return None  # a zombie (a tor just killed) has no memory left
    rss, threads = int(rss.group(1)), int(threads.group(1))
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / HZ
    return rss, cpu, fds, threads


def tree_bytes(path):
    if not path:
        return 0
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def read_count(d, name):
    try:
        return json.load(open(os.path.join(d, name + ".json")))
    except (OSError, ValueError):
        return {}


LOAD_COLUMNS = ["log_lines_per_s", "gw_requests_per_s", "gw_ok_per_s", "gw_429_per_s", "gw_errors_per_s",
                "gw_late_per_s", "polls_ok_per_s", "polls_failed_per_s", "watch_counted_per_s", "logs_counted_per_s"]


def sample(a):
    """Every INTERVAL s: each process's RSS, CPU seconds, open fds, threads
    and the bytes under its state path; the sum of the network's tors' RSS;
    the load's rates since the last sample. One CSV row each."""
    procs = []
    for spec in a.procs:
        name, rest = spec.split("=", 1)
        pid, _, state = rest.partition(":")
        procs.append((name, int(pid), state))
    cols = ["t_s"]
    for name, _, _ in procs:
        cols += ["%s_%s" % (name, m) for m in ("rss_kib", "cpu_s", "fds", "threads", "state_bytes")]
    cols += ["tor_rss_kib", "tors"] + LOAD_COLUMNS
    out = open(a.out, "w", newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    out.flush()
    start = time.monotonic()
    end = start + a.duration
    prev = None
    t = start
    while True:
        t += a.interval
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        if now > end + 1:
            break
        row = [round(now - start, 1)]
        for name, pid, state in procs:
            s = proc_sample(pid)
            row += list(s) if s else ["", "", "", ""]
            row.append(tree_bytes(state))
        tor_rss, tors = 0, 0
        try:
            children = open("/proc/%d/task/%d/children" % (a.tor_parent, a.tor_parent)).read().split()
        except OSError:
            children = []
        for c in children:
            s = proc_sample(int(c))
            if s:
                tor_rss += s[0]
                tors += 1
        row += [tor_rss, tors]
        logs, gw, polls = (read_count(a.counts, n) for n in ("write-logs", "gateway", "poll"))
        cur = {
            "log_lines": logs.get("lines", 0), "gw_requests": gw.get("sent", 0), "gw_ok": gw.get("ok", 0),
            "gw_429": gw.get("status_429", 0), "gw_errors": gw.get("errors", 0) + gw.get("status_other", 0),
            "gw_late": gw.get("late", 0), "polls_ok": polls.get("ok", 0), "polls_failed": polls.get("failed", 0),
            "watch_counted": polls.get("watch-metrics_log_requests", 0),
            "logs_counted": polls.get("logs-metrics_log_requests", 0),
        }
        dt = now - prev[0] if prev else now - start
        for c in LOAD_COLUMNS:
            k = c[: -len("_per_s")]
            before = prev[1].get(k, 0) if prev else 0
            row.append(round(max(cur[k] - before, 0) / dt, 1))
        prev = (now, cur)
        w.writerow(row)
        out.flush()


def report(a):
    """The soak: lines, and the plot."""
    rows = list(csv.DictReader(open(a.csv)))
    names = [c[: -len("_rss_kib")] for c in rows[0] if c.endswith("_rss_kib") and c != "tor_rss_kib"] if rows else []
    first = next((r for r in rows if float(r["t_s"]) >= 60), rows[0] if rows else None)
    ok = True
    for n in names:
        live = [r for r in rows if r[n + "_rss_kib"] != ""]
        if not live or first is None:
            print("soak: cmd=%s minutes=%s no samples" % (n, a.minutes))
            ok = False
            continue
        start = first if first[n + "_rss_kib"] != "" else live[0]
        end = rows[-1]
        if end[n + "_rss_kib"] == "":
            print("soak: %s exited before the end (last sample at %s s)" % (n, live[-1]["t_s"]), file=sys.stderr)
            ok = False
            end = live[-1]
        print("soak: cmd=%s minutes=%s rss_start_kib=%s rss_end_kib=%s rss_max_kib=%d fds_start=%s fds_end=%s state_bytes=%s" % (
            n, a.minutes, start[n + "_rss_kib"], end[n + "_rss_kib"], max(int(r[n + "_rss_kib"]) for r in live),
            start[n + "_fds"], end[n + "_fds"], end[n + "_state_bytes"]))
    if rows:
        table(rows, names)
    if a.png and rows:
        plot(a.csv, a.png, names, a.title)
    return 0 if ok else 1


def table(rows, names):
    """RELIABILITY.md's table: RSS at 1, 5, 10, 30 minutes and the end,
    fds, threads, mean CPU after the first minute; then the load's rates
    per 10 s sample (mean, min, max)."""
    def at(t):
        return next((r for r in rows if float(r["t_s"]) >= t), rows[-1])
    end = float(rows[-1]["t_s"])
    marks = [m for m in (60, 300, 600, 1800) if m < end] + [end]
    print("| process | RSS (MiB) at %s min | max | open fds | threads | CPU (%% of a core) | state bytes |" % " / ".join(
        "%g" % round(m / 60, 1) for m in marks))
    print("| --- | --- | ---: | --- | --- | ---: | ---: |")
    for n in names:
        live = [r for r in rows if r[n + "_rss_kib"] != ""]
        if not live:
            continue
        after = [r for r in live if float(r["t_s"]) >= 60] or live
        rss = " / ".join("%.1f" % (int(at(m)[n + "_rss_kib"] or 0) / 1024) for m in marks)
        fds = [int(r[n + "_fds"]) for r in after]
        th = [int(r[n + "_threads"]) for r in after]
        t0, t1 = after[0], live[-1]
        dt = float(t1["t_s"]) - float(t0["t_s"])
        cpu = (float(t1[n + "_cpu_s"]) - float(t0[n + "_cpu_s"])) / dt * 100 if dt > 0 else 0
        print("| %s | %s | %.1f | %d–%d | %d–%d | %.1f | %s |" % (
            n, rss, max(int(r[n + "_rss_kib"]) for r in live) / 1024, min(fds), max(fds), min(th), max(th), cpu,
            t1[n + "_state_bytes"]))
    tor = [int(r["tor_rss_kib"]) for r in rows]
    print("soak: tors' RSS (sum, MiB): %.0f at 1 min, %.0f at the end, %.0f at most" % (
        int(at(60)["tor_rss_kib"]) / 1024, tor[-1] / 1024, max(tor) / 1024))
    for c in LOAD_COLUMNS:
        v = [float(r[c]) for r in rows[1:]] or [0.0]
        print("soak: %s mean %.1f min %.1f max %.1f" % (c, sum(v) / len(v), min(v), max(v)))


def plot(csv_path, png, names, title):
    """Six panels with gnuplot: RSS, CPU, fds, threads, state bytes, load."""
    colors = {"watch": "#1f77b4", "logs": "#2ca02c", "gateway": "#d62728", "tor": "#7f7f7f"}
    with open(csv_path) as f:
        header = f.readline().strip().split(",")
    col = {c: i + 1 for i, c in enumerate(header)}

    def lines(measure, scale="", extra=None):
        parts = []
        for n in names:
            parts.append("'%s' using ($%d/60):($%d%s) with lines lw 2 lc rgb '%s' title '%s'" % (
                csv_path, col["t_s"], col["%s_%s" % (n, measure)], scale, colors.get(n, "black"), n))
        return ", ".join(parts + (extra or []))

    cpu = []
    for n in names:
        c = col["%s_cpu_s" % n]
        # CPU % of one core between samples: the difference of CPU seconds.
        cpu.append("'%s' using ($%d/60):(d=($%d-prev_%s)/($%d-prevt_%s)*100, prev_%s=$%d, prevt_%s=$%d, d) "
                   "with lines lw 1.5 lc rgb '%s' title '%s'" % (
                       csv_path, col["t_s"], c, n, col["t_s"], n, n, c, n, col["t_s"], colors.get(n, "black"), n))
    init = "; ".join("prev_%s=0; prevt_%s=0" % (n, n) for n in names)
    tor = "'%s' using ($%d/60):($%d/1024) with lines lw 1.5 dt 2 lc rgb '%s' title 'tor (all, ref.)' axes x1y2" % (
        csv_path, col["t_s"], col["tor_rss_kib"], colors["tor"])
    load = ["'%s' using ($%d/60):($%d) with lines lw 1.5 lc rgb '%s' title '%s' axes x1%s" % (
        csv_path, col["t_s"], col[c], color, label, axis) for c, color, label, axis in [
        ("log_lines_per_s", "#2ca02c", "log lines written/s", "y1"),
        ("watch_counted_per_s", "#1f77b4", "lines counted/s by watch", "y1"),
        ("logs_counted_per_s", "#17becf", "by logs", "y1"),
        ("gw_ok_per_s", "#d62728", "gateway 200/s", "y1"),
        ("gw_429_per_s", "#ff7f0e", "gateway 429/s (right)", "y2"),
        ("polls_ok_per_s", "#9467bd", "polls answered/s (right)", "y2"),
    ]]
    script = """
set terminal png size 800,1100 font ',8'
set output '{png}'
set datafile separator ','
set key autotitle columnhead
set key top left horizontal font ',8'
set grid
set multiplot layout 6,1 title '{title}'
set lmargin 10
set rmargin 10
set xlabel 'minutes'
set ylabel 'RSS (MiB)'
set y2label 'tor RSS, sum (MiB)'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot {rss}, {tor}
unset y2label
unset y2tics
set ylabel 'CPU (% of a core)'
{init}
plot {cpu}
set ylabel 'open fds'
plot {fds}
set ylabel 'threads'
plot {threads}
set ylabel 'state dir (MiB)'
plot {state}
set ylabel 'load (per second)'
set y2label '429s, polls (per second)'
set y2tics
plot {load}
unset multiplot
""".format(png=png, title=title.replace("'", ""), rss=lines("rss_kib", "/1024"), tor=tor, init=init,
           cpu=", ".join(cpu), fds=lines("fds"), threads=lines("threads"), state=lines("state_bytes", "/1048576"),
           load=", ".join(load))
    gp = png + ".gp"
    with open(gp, "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        print("soak: gnuplot failed (%s): %s" % (gp, r.stderr.strip()[-500:]), file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("write-logs")
    s.add_argument("--count", required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--rate", type=float, default=2000)
    s.add_argument("--circuits", type=int, default=100000)
    s.add_argument("--rotate", type=float, default=60)
    s.add_argument("--truncate-settle", type=float, default=0)
    s.add_argument("logs", nargs="+")
    s = sub.add_parser("gateway")
    s.add_argument("--count", required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--rate", type=float, default=500)
    s.add_argument("--circuits", type=int, default=1000)
    s.add_argument("--concurrency", type=int, default=64)
    s = sub.add_parser("poll")
    s.add_argument("--count", required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("urls", nargs="+")
    s = sub.add_parser("sample")
    s.add_argument("--out", required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--interval", type=float, default=10)
    s.add_argument("--tor-parent", type=int, required=True)
    s.add_argument("--counts", required=True)
    s.add_argument("procs", nargs="+")
    s = sub.add_parser("report")
    s.add_argument("--csv", required=True)
    s.add_argument("--minutes", required=True)
    s.add_argument("--png")
    s.add_argument("--title", default="onionwatch soak")
    a = p.parse_args()
    if a.cmd == "write-logs":
        write_logs(a)
    elif a.cmd == "gateway":
        asyncio.run(gateway_load(a))
    elif a.cmd == "poll":
        poll(a)
    elif a.cmd == "sample":
        sample(a)
    elif a.cmd == "report":
        sys.exit(report(a))


if __name__ == "__main__":
    main()
