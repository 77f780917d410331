"""The lander's consumer loop: Kafka topics → write-once objects, offsets committed after upload.

One `Lander` subscribes to the topics matching a regex (read_committed, no auto commit, a 10 s
session timeout so a successor gets the partitions of a killed lander quickly), buffers each partition's lines in a `Chunk` that rolls on record-time hour or record
count, hands full chunks to the `Writer` and commits each partition's offset once its objects exist.

`--once` (what the hourly cycle runs): land everything up to each assigned partition's end (the last
stable offset under read_committed, reported by librdkafka as partition EOF), flush the partial
chunks, commit, exit. Service mode: run until SIGTERM/SIGINT; a partition that sat at its end for
`idle_flush_s` has its partial chunk flushed, so a quiet topic does not hold its last records back.
On stop or revocation unfinished chunks are dropped, not flushed: the next owner reads them again
from the committed offset and builds the same objects.

Static group membership (`instance_id`) is off by default: Kafka hands a static member that rejoins
its previous assignment, so a --once run would not get the partitions of a topic created since
(seen with Kafka 4.1.2 and librdkafka 2.16); a clean close leaves the group, so the next run joins
at once anyway.
"""
from __future__ import annotations

import logging
import re
import signal
import time
from dataclasses import asdict, dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from .landing import HOUR_MS
from .records import encode, line_prefix
from .targets import Target, open_target
from .writer import Chunk, Landed, Writer

log = logging.getLogger("pipeline.lander")

# Properties the guarantees rest on: --consumer-property may not change them.
FIXED_PROPERTIES = ("enable.auto.commit", "isolation.level", "enable.partition.eof", "group.id",
                    "bootstrap.servers", "group.instance.id")


class LanderError(Exception):
    """The lander cannot do its job (no assignment, fatal consumer error, bad configuration)."""


def shipper_topics_regex(prefix: str = "engage", dead_letter_topic: str = "engage-dead_letter") -> str:
    """Return the regex of the shipper's topics: rows <prefix>.*, events <prefix>-app.*, gap records
    <prefix>-control, dead letters.

    Topic names have only A-Za-z0-9._- (README, "Topic names"): "." is the one character to quote,
    as "[.]", which both Python and librdkafka's regex engines read the same way.
    """
    p, d = prefix.replace(".", "[.]"), dead_letter_topic.replace(".", "[.]")
    return f"^({p}[.]|{p}-app[.]).*|^{p}-control$|^{d}$"


@dataclass
class LanderConfig:
    """What to land, from where, to where, and how objects roll."""

    bootstrap: str
    target: str
    s3_endpoint: str | None = None
    topics_regex: str = shipper_topics_regex()
    group: str = "engage-lander"
    instance_id: str | None = None
    max_records: int = 100_000
    compression_level: int = 3
    once: bool = False
    idle_flush_s: float = 60.0
    assign_timeout_s: float = 60.0
    batch_size: int = 10_000
    consumer_properties: dict[str, str] = field(default_factory=dict)


@dataclass
class Stats:
    """What a run did."""

    objects: int = 0
    existing_objects: int = 0
    records: int = 0
    bytes: int = 0
    partitions: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        """Return the stats as a plain dict (for the JSON summary)."""
        return asdict(self)


@dataclass
class PartitionState:
    """A partition's line prefix, unfinished chunk and when it reached its end (None: not at end)."""

    prefix: str
    chunk: Chunk | None = None
    eof_since: float | None = None


class Lander:
    """Consumes the matching topics and lands them; `run()` returns the run's Stats."""

    def __init__(self, cfg: LanderConfig, target: Target | None = None):
        """Open the target and build (not yet start) the consumer."""
        if cfg.max_records < 1:
            raise LanderError("max_records must be at least 1")
        self.cfg = cfg
        self.target = target or open_target(cfg.target, cfg.s3_endpoint)
        self.writer = Writer(self.target, cfg.compression_level)
        self.parts: dict[tuple[str, int], PartitionState] = {}
        self.stats = Stats()
        self.stopping = False
        self.consumer = Consumer(consumer_config(cfg))

    def run(self) -> Stats:
        """Land until done (--once) or stopped; always close the consumer and the writer."""
        t0 = time.monotonic()
        try:
            if self.cfg.once and not self._matching_topics():
                log.info("no topic matches %s: nothing to land", self.cfg.topics_regex)
            else:
                self._subscribe()
                self._loop()
                if self.cfg.once:
                    self._flush_all()
                self._commit(self.writer.drain())
        finally:
            self.writer.close()
            self.consumer.close()
            self.stats.seconds = round(time.monotonic() - t0, 3)
        return self.stats

    def stop(self, *_args) -> None:
        """Ask the loop to stop after the current batch (signal handler)."""
        self.stopping = True

    def _matching_topics(self) -> list[str]:
        """Return the existing topics that the regex matches."""
        regex = re.compile(self.cfg.topics_regex)
        meta = self.consumer.list_topics(timeout=30)
        return sorted(t for t in meta.topics if regex.search(t) and not t.startswith("__"))

    def _subscribe(self) -> None:
        """Subscribe to the topic regex with rebalance callbacks."""
        self.consumer.subscribe([self.cfg.topics_regex], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _loop(self) -> None:
        """Consume batches until stopped, or in --once mode until every partition is at its end."""
        deadline = time.monotonic() + self.cfg.assign_timeout_s
        while not self.stopping:
            msgs = self.consumer.consume(self.cfg.batch_size, timeout=0.5)
            if msgs:
                self._handle(msgs)
            self._commit(self.writer.results())
            if self.cfg.once:
                if self.parts and all(p.eof_since is not None for p in self.parts.values()):
                    log.info("every assigned partition is at its end: %s", self._positions())
                    return
                if not self.parts and time.monotonic() > deadline:
                    raise LanderError(
                        f"no partition assigned within {self.cfg.assign_timeout_s:g}s "
                        f"(group {self.cfg.group!r}: is another lander holding them?)")
            else:
                self._flush_idle()

    def _positions(self) -> str:
        """Return 'topic[partition]@position' of the assigned partitions, for the log."""
        tps = [TopicPartition(t, p) for t, p in self.parts]
        return ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}"
                         for tp in self.consumer.position(tps))

    def _handle(self, msgs: list) -> None:
        """Append a batch of messages to their partitions' chunks, rolling chunks as needed."""
        max_records, last_tp, state = self.cfg.max_records, None, None
        for m in msgs:
            err = m.error()
            if err is not None:
                self._on_error(m, err)
                last_tp = None
                continue
            tp = (m.topic(), m.partition())
            if tp != last_tp:
                state, last_tp = self.parts.get(tp), tp
                if state is None:
                    raise LanderError(f"message for unassigned partition {tp[0]}[{tp[1]}]")
                state.eof_since = None
            offset, ts, line = encode(state.prefix, m)
            hour, chunk = ts // HOUR_MS, state.chunk
            if chunk is None or chunk.hour != hour or len(chunk.offsets) >= max_records:
                if chunk is not None:
                    self.writer.submit(chunk)
                chunk = state.chunk = Chunk(tp[0], tp[1], hour)
            chunk.offsets.append(offset)
            chunk.lines.append(line)

    def _on_error(self, msg, err: KafkaError) -> None:
        """Note a partition's end; raise fatal errors; log the rest (librdkafka retries them)."""
        if err.code() == KafkaError._PARTITION_EOF:
            state = self.parts.get((msg.topic(), msg.partition()))
            if state is not None and state.eof_since is None:
                state.eof_since = time.monotonic()
            return
        if err.fatal():
            raise LanderError(f"fatal consumer error: {err}")
        log.warning("consumer error: %s", err)

    def _flush_all(self) -> None:
        """Hand every unfinished chunk to the writer (end of a --once run)."""
        for state in self.parts.values():
            if state.chunk is not None:
                self.writer.submit(state.chunk)
                state.chunk = None

    def _flush_idle(self) -> None:
        """Flush the chunks of partitions that have been at their end for idle_flush_s."""
        now = time.monotonic()
        for state in self.parts.values():
            if (state.chunk is not None and state.eof_since is not None
                    and now - state.eof_since >= self.cfg.idle_flush_s):
                self.writer.submit(state.chunk)
                state.chunk = None

    def _commit(self, results: list[Landed]) -> None:
        """Commit the offsets after landed chunks (synchronously) and count them."""
        if not results:
            return
        offsets: dict[tuple[str, int], int] = {}
        for r in results:
            offsets[(r.topic, r.partition)] = r.commit_offset
            self.stats.objects += len(r.created)
            self.stats.existing_objects += len(r.existing)
            self.stats.records += r.records
            self.stats.bytes += r.bytes
            for key in r.created:
                log.info("landed %s", key)
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                             asynchronous=False)

    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        """Start fresh state for newly assigned partitions."""
        for tp in partitions:
            self.parts[(tp.topic, tp.partition)] = PartitionState(line_prefix(tp.topic, tp.partition))
        self.stats.partitions = max(self.stats.partitions, len(self.parts))
        log.info("assigned %d partition(s)", len(partitions))

    def _on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is landed, then drop the revoked partitions' unfinished chunks."""
        self._commit(self.writer.drain())
        self._drop(partitions)

    def _on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        """Drop lost partitions' state without committing (another member owns them now)."""
        self.writer.drain()
        self._drop(partitions)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        """Forget the given partitions' buffers."""
        for tp in partitions:
            self.parts.pop((tp.topic, tp.partition), None)
            self.writer.forget(tp.topic, tp.partition)


def consumer_config(cfg: LanderConfig) -> dict:
    """Return the librdkafka configuration of the lander's consumer."""
    for name in cfg.consumer_properties:
        if name in FIXED_PROPERTIES:
            raise LanderError(f"consumer property {name!r} cannot be overridden")
    conf = {
        "auto.offset.reset": "earliest",
        # A lander killed without leaving the group holds its partitions until this expires.
        "session.timeout.ms": 10000,
        "topic.metadata.refresh.interval.ms": 30000,
        "error_cb": lambda err: log.warning("kafka: %s", err),
    }
    conf.update(cfg.consumer_properties)
    conf.update({
        "bootstrap.servers": cfg.bootstrap,
        "group.id": cfg.group,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    if cfg.instance_id:
        conf["group.instance.id"] = cfg.instance_id
    return conf


def install_signal_handlers(lander: Lander) -> None:
    """Make SIGTERM and SIGINT stop the lander cleanly."""
    signal.signal(signal.SIGTERM, lander.stop)
    signal.signal(signal.SIGINT, lander.stop)
