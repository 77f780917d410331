"""The lander's default topics are the shipper's: rows, application events and dead letters (no servers)."""
import re

from pipeline.lander.__main__ import config_from_args, parse_args
from pipeline.lander.service import LanderConfig, shipper_topics_regex

SHIPPED = ["engage.members", "engage.campaign_audience", "engage.sales.orders",
           "engage.mallory.Bad_Name.eca8911f066af918", "engage-app.campaign.sent", "engage-app.wl",
           "engage-dead_letter", "engage-control"]
OTHERS = ["engage", "engage_members", "engage-appx.wl", "engage-app", "engage-dead_letter2",
          "engage-dead_letters", "engage-controls", "other.members", "xengage.members", "__consumer_offsets"]


def test_default_regex_lands_every_shipper_topic():
    """LanderConfig's default regex matches every kind of topic the shipper writes, and nothing else."""
    regex = re.compile(LanderConfig(bootstrap="b", target="t").topics_regex)
    assert [t for t in SHIPPED if not regex.search(t)] == []
    assert [t for t in OTHERS if regex.search(t)] == []


def test_prefix_and_dead_letter_topic_from_the_command_line():
    """--topic-prefix and --dead-letter-topic build the regex; dots in them match only dots."""
    cfg = config_from_args(parse_args(["--bootstrap", "b", "--topic-prefix", "my.app",
                                       "--dead-letter-topic", "my.dlq"]))
    regex = re.compile(cfg.topics_regex)
    assert all(regex.search(t) for t in ["my.app.members", "my.app-app.wl", "my.app-control", "my.dlq"])
    assert not any(regex.search(t) for t in ["myxapp.members", "my.app_members", "my.dlqx", "myxdlq",
                                             "engage-dead_letter"])
    assert cfg.topics_regex == shipper_topics_regex("my.app", "my.dlq")


def test_topics_regex_wins():
    """--topics-regex is used as given."""
    assert config_from_args(parse_args(["--bootstrap", "b", "--topics-regex", "^x$"])).topics_regex == "^x$"
