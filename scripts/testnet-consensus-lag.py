#!/usr/bin/env python3
"""For each private-network start under ROOT (scripts/testnet-starts.sh with
OUT=ROOT, run beside it), poll the 3 authorities' DirPorts every 0.1 s and print
when each one's microdesc consensus first lists N relays as Running, Stable and
HSDir (seconds after the first authority did) and, for each that lagged, what
it served last before: (relays with those flags, valid-after), or None for no
consensus. Runs until interrupted.

    python3 scripts/testnet-consensus-lag.py ROOT 5
"""
import os, re, socket, sys, time, glob
root, n = sys.argv[1], int(sys.argv[2])
seen = set()
def fetch(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b: break
            data += b
        s.close()
    except OSError:
        return None
    t = data.decode("latin1")
    if not t.startswith("HTTP/1.0 200"): return None
    va = re.search(r"^valid-after (.*)$", t, re.M)
    cnt = sum(1 for l in t.splitlines() if l.startswith("s ") and all(f in l.split() for f in ("Running","Stable","HSDir")))
    return cnt, va.group(1) if va else "?"
while True:
    runs = sorted(glob.glob(os.path.join(root, "run-*/auth2/torrc")), key=os.path.getmtime)
    new = [r for r in runs if r not in seen]
    if not new:
        time.sleep(0.5); continue
    torrc = new[-1]; seen.update(runs)
    d = os.path.dirname(os.path.dirname(torrc))
    ports = []
    for i in range(3):
        m = re.search(r"^DirPort 127\.0\.0\.1:(\d+)", open(os.path.join(d, f"auth{i}", "torrc")).read(), re.M)
        ports.append(int(m.group(1)))
    first = {}; states = {}; t0 = time.time()
    while len(first) < 3 and time.time() - t0 < 120 and os.path.exists(d):
        for i, p in enumerate(ports):
            r = fetch(p)
            if r and r[0] >= n and i not in first:
                first[i] = time.time()
            if i not in first:
                states[i] = r
        time.sleep(0.1)
    base = min(first.values()) if first else t0
    print(os.path.basename(d), " ".join(f"auth{i}:" + (f"+{first[i]-base:.1f}s" if i in first else f"never({states.get(i)})") for i in range(3)),
          "| behind when first full:", {f"auth{i}": states.get(i) for i in range(3) if i in first and first[i] - base > 0.15}, flush=True)
