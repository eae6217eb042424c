"""Sends events to weir with the real Python fluent-logger and exits 0 when every emit
succeeded. Driven by weir's end-to-end tests.

Usage: py_send.py '<json spec>'
spec: {host, port, tag_prefix, nanosecond: bool, events: [{label, record, sec, nsec}]}
"""
import json
import sys

from fluent import sender


def main() -> int:
    spec = json.loads(sys.argv[1])
    s = sender.FluentSender(
        spec["tag_prefix"],
        host=spec["host"],
        port=spec["port"],
        nanosecond_precision=spec.get("nanosecond", True),
        timeout=10.0,
    )
    for e in spec["events"]:
        if spec.get("nanosecond", True):
            t = sender.EventTime(e["sec"], e["nsec"])
        else:
            t = e["sec"]
        if not s.emit_with_time(e["label"], t, e["record"]):
            print("python client: emit failed: %r" % (s.last_error,), file=sys.stderr)
            return 1
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
