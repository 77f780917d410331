#!/usr/bin/env python3
"""Lander throughput: events/s landing N messages already in Kafka (target >= 50,000/s).

    bench/pipeline_lander.py [--messages 1000000] [--bootstrap HOST:PORT] [--s3]

Without --bootstrap it starts its own broker (scripts/kafka.sh, port 19492) in a temp dir and stops
it at the end. It produces N realistic change events (~330-byte JSON records with the shipper's key
and engage.* headers, lz4 like the shipper) into a fresh 3-partition topic, then times
`python -m pipeline.lander --once` landing them into a local directory (and, with --s3, into an
s3proxy bucket started on port 19580). Prints events/s and the ratio to the target; exits 1 if a
run landed a different number of records. Run it with the pipeline venv's python (pipeline/test.sh
creates it).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE = 50_000
KAFKA_PORT, KAFKA_CONTROLLER_PORT, S3_PORT = 19492, 20492, 19580
S3_ID, S3_SECRET = "pg_engage", "pg_engage-secret"


def event(i: int) -> tuple[bytes, bytes, list]:
    """Return (key, value, headers) of the i-th synthetic change event (~330-byte value)."""
    cid, mid = i % 97, i
    lsn = f"0/{0x1A000000 + i * 64:X}"
    eid = f"{lsn}:{i % 5 + 1}"
    value = (
        f'{{"v":1,"id":"{eid}","lsn":"{lsn}","xid":{735 + i // 5},'
        f'"ts":"2026-11-25T09:00:00.{i % 1000000:06d}Z","op":"update",'
        f'"table":"engage.campaign_audience","pk":{{"campaign_id":{cid},"member_id":{mid}}},'
        f'"new":{{"campaign_id":{cid},"member_id":{mid},"email":"member{mid}@example.com",'
        f'"opened":true,"clicked":false,"converted":false,'
        f'"opened_at":"2026-11-25T09:00:00.123456Z","clicked_at":null,"amount":12345.6789}}}}')
    key = f'{{"campaign_id":{cid},"member_id":{mid}}}'
    headers = [("engage.id", eid.encode()), ("engage.op", b"update"),
               ("engage.table", b"engage.campaign_audience"), ("engage.lsn", lsn.encode())]
    return key.encode(), value.encode(), headers


def produce(bootstrap: str, topic: str, n: int) -> float:
    """Create topic with 3 partitions and produce n events; return the seconds it took."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        f.result()
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "linger.ms": 20,
                  "enable.idempotence": True, "queue.buffering.max.messages": 500000,
                  "batch.num.messages": 10000})
    t0 = time.monotonic()
    for i in range(n):
        key, value, headers = event(i)
        while True:
            try:
                p.produce(topic, value, key, headers=headers)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120):
        raise SystemExit("producer could not deliver every message within 120 s")
    return time.monotonic() - t0


def land(bootstrap: str, topic: str, target: str, extra: list[str], env: dict) -> dict:
    """Run the lander --once on topic into target; return its summary plus the wall time."""
    cmd = [sys.executable, "-m", "pipeline.lander", "--bootstrap", bootstrap, "--once",
           "--topics-regex", f"^{topic}$", "--group", f"bench-{topic}-{len(extra)}",
           "--target", target, "--log-level", "WARNING", *extra]
    t0, r0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    summary["wall_seconds"] = round(time.monotonic() - t0, 2)
    summary["cpu_seconds"] = round(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, 2)
    return summary


def report(name: str, n: int, s: dict) -> bool:
    """Print one run's figures; return whether it landed exactly n records."""
    rate = n / s["wall_seconds"]
    print(f"lander {name}: {n:,} events in {s['wall_seconds']:.2f} s (process, incl. start-up and "
          f"group join; loop {s['seconds']:.2f} s) = {rate:,.0f} events/s, "
          f"{rate / TARGET_RATE:.2f}x the {TARGET_RATE:,}/s target; {s['objects']} objects, "
          f"{s['bytes'] / 1e6:.1f} MB gzip; lander CPU {s['cpu_seconds']:.1f} s "
          f"({n / s['cpu_seconds']:,.0f} events per CPU-second)")
    if s["records"] != n:
        print(f"ERROR: landed {s['records']} records, expected {n}")
    return s["records"] == n


def start(script: str, workdir: Path, port: int, env: dict) -> str:
    """Start a server with scripts/<script> start; return what it prints."""
    out = subprocess.run([str(ROOT / "scripts" / script), "start", str(workdir), str(port)],
                         env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def main() -> int:
    """Produce, land, report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--s3", action="store_true", help="also land into s3proxy")
    args = ap.parse_args()
    env = dict(os.environ, KAFKA_CONTROLLER_PORT=str(KAFKA_CONTROLLER_PORT),
               AWS_ACCESS_KEY_ID=S3_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-lander-"))
    started = []
    try:
        bootstrap = args.bootstrap
        if not bootstrap:
            bootstrap = start("kafka.sh", work / "kafka", KAFKA_PORT, env)
            started.append(("kafka.sh", work / "kafka"))
        topic = f"engage.bench_{int(time.time())}"
        secs = produce(bootstrap, topic, args.messages)
        print(f"produced {args.messages:,} events into {topic} (3 partitions) in {secs:.1f} s")
        ok = report("local dir", args.messages,
                    land(bootstrap, topic, str(work / "landing"), [], env))
        if args.s3:
            endpoint = start("s3proxy.sh", work / "s3", S3_PORT, env)
            started.append(("s3proxy.sh", work / "s3"))
            sys.path.insert(0, str(ROOT))
            from pipeline.lander.targets import S3Target
            os.environ.update(AWS_ACCESS_KEY_ID=S3_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET)
            S3Target("bench", endpoint=endpoint).create_bucket()
            ok &= report("s3proxy", args.messages,
                         land(bootstrap, topic, "s3://bench/landing",
                              ["--s3-endpoint", endpoint], env))
        print(f"machine: {os.cpu_count()} cores, load average before the run "
              f"{load_before:.2f}; broker on the same machine")
        return 0 if ok else 1
    finally:
        for script, d in reversed(started):
            subprocess.run([str(ROOT / "scripts" / script), "stop", str(d)], env=env, check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
