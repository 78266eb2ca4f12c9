"""Run the real Onionprobe once (no exporter, so no listener on 0.0.0.0) and
write its metrics exactly as its /metrics endpoint would serve them
(prometheus_client's generate_latest on the default registry).

usage: onionprobe_dump.py OUT_FILE [onionprobe options, e.g. -c config.yaml]
"""
import sys

from prometheus_client import REGISTRY, generate_latest
from onionprobe.app import Onionprobe
from onionprobe.config import cmdline_parser

out = sys.argv[1]
args = cmdline_parser().parse_args(sys.argv[2:])
probe = Onionprobe(args)
status = 1
try:
    if probe.initialize() is not False:
        status = 0 if probe.run() else 1
finally:
    with open(out, "wb") as f:
        f.write(generate_latest(REGISTRY))
    try:
        probe.close()
    except Exception:
        pass
sys.exit(status)
