"""Command line of the lander: `python -m pipeline.lander --bootstrap HOST:PORT --target URL [--once]`.

Prints a one-line JSON summary of the run on stdout (objects, existing_objects, records, bytes,
partitions, seconds); logs go to stderr. Exit status 0 on success, 1 on an error, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from confluent_kafka import KafkaException

from .service import Lander, LanderConfig, LanderError, install_signal_handlers, shipper_topics_regex
from .targets import TargetError

log = logging.getLogger("pipeline.lander")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(
        prog="python -m pipeline.lander",
        description="Land Kafka topics as write-once gzip JSON-lines objects (pipeline/LANDING.md).")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port[,...]")
    p.add_argument("--target", default="file://./landing",
                   help="file:///dir, a directory path, or s3://bucket[/prefix] (default ./landing)")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL for S3-compatible servers (path-style)")
    topics = p.add_mutually_exclusive_group()
    topics.add_argument("--topic-prefix", default="engage",
                        help="land the topics <prefix>.* (rows) and <prefix>-app.* (application events) "
                             "and the dead-letter topic (default engage, like engage.topic_prefix)")
    topics.add_argument("--topics-regex", help="land the topics matching this regex (starts with ^)")
    p.add_argument("--dead-letter-topic", default="engage-dead_letter",
                   help="with --topic-prefix, also land this topic (default engage-dead_letter, like "
                        "engage.dead_letter_topic)")
    p.add_argument("--group", default="engage-lander", help="consumer group (default engage-lander)")
    p.add_argument("--instance-id",
                   help="static group member id (default: none). A static member that rejoins gets "
                        "its previous assignment back, so new topics wait for a metadata refresh: "
                        "not for --once")
    p.add_argument("--max-records", type=int, default=100_000,
                   help="records per object at most (default 100000)")
    p.add_argument("--compression-level", type=int, default=3, choices=range(1, 10), metavar="1-9",
                   help="gzip level (default 3: 2.7x faster than 6, objects ~15%% larger)")
    p.add_argument("--once", action="store_true",
                   help="land everything available, then exit (the hourly cycle's mode)")
    p.add_argument("--idle-flush", type=float, default=60.0, metavar="SECONDS",
                   help="service mode: flush a partition's partial object after it sat at its end "
                        "this long (default 60)")
    p.add_argument("--assign-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="--once: fail if no partition is assigned within this time (default 60)")
    p.add_argument("--consumer-property", action="append", default=[], metavar="NAME=VALUE",
                   help="extra librdkafka consumer property (repeatable)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace) -> LanderConfig:
    """Build the LanderConfig from parsed arguments."""
    props = {}
    for item in a.consumer_property:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise LanderError(f"--consumer-property {item!r} is not NAME=VALUE")
        props[name.strip()] = value.strip()
    regex = a.topics_regex or shipper_topics_regex(a.topic_prefix, a.dead_letter_topic)
    return LanderConfig(
        bootstrap=a.bootstrap, target=_target_url(a.target), s3_endpoint=a.s3_endpoint,
        topics_regex=regex, group=a.group, instance_id=a.instance_id, max_records=a.max_records,
        compression_level=a.compression_level, once=a.once, idle_flush_s=a.idle_flush,
        assign_timeout_s=a.assign_timeout, consumer_properties=props)


def _target_url(url: str) -> str:
    """Accept file://./relative as a relative directory."""
    return url[len("file://"):] if url.startswith("file://.") else url


def main(argv: list[str] | None = None) -> int:
    """Run the lander; print the summary; return the exit status."""
    a = parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s lander %(levelname)s %(message)s")
    try:
        lander = Lander(config_from_args(a))
        install_signal_handlers(lander)
        stats = lander.run()
    except (LanderError, TargetError, KafkaException) as e:
        log.error("%s", e)
        return 1
    print(json.dumps(stats.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
