#!/usr/bin/env python3
"""A webhook receiver for benches/run: checks every signature, counts events
once by id, and measures the delay from a message's commit (its `timestamp`)
to its arrival. On SIGTERM it writes its numbers as one JSON line to OUT.

    webhook_receiver.py PORT SECRET OUT LABEL
"""
import hashlib
import hmac
import json
import signal
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, SECRET, OUT, LABEL = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], sys.argv[4]
lock = threading.Lock()
seen = set()
delays_ms = []
bad = 0
duplicates = 0
first = last = None


def commit_time(ts):
    # "2026-11-30T05:20:00.123Z"
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=__import__("datetime").timezone.utc).timestamp()


class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        global bad, duplicates, first, last
        now = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        parts = dict(p.split("=", 1) for p in self.headers.get("Stampede-Signature", "").split(",") if "=" in p)
        want = hmac.new(SECRET, parts.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(want, parts.get("v1", ""))
        with lock:
            if not ok:
                bad += 1
            else:
                event = json.loads(body)
                if event["id"] in seen:
                    duplicates += 1
                else:
                    seen.add(event["id"])
                    if event["type"] == "message.created":
                        delays_ms.append((now - commit_time(event["data"]["timestamp"])) * 1000)
                        first = now if first is None else first
                        last = now
        self.send_response(204 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()


def finish(*_):
    with lock:
        d = sorted(delays_ms)
        pct = lambda q: round(d[min(len(d) - 1, int(q * len(d)))], 1) if d else None
        span = (last - first) if first is not None and last is not None and last > first else None
        line = {"label": LABEL, "webhook": {
            "delivered": len(d), "bad_signatures": bad, "duplicates": duplicates,
            "delivered_per_s": round(len(d) / span, 1) if span else None,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(d[-1], 1) if d else None}}
    with open(OUT, "a") as f:
        f.write(json.dumps(line) + "\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, finish)
server = ThreadingHTTPServer(("127.0.0.1", PORT), Hook)
print("listening", flush=True)
server.serve_forever()
