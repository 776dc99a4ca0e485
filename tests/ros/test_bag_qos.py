"""The QoS our bags record is what the RMW (Fast DDS, Jazzy) reports for our publishers, which is
what rosbag2 records (issue 16 item 5): reliability, durability, and the infinite deadline,
lifespan and lease duration the publishers leave unset. rmw does not report history and depth
(UNKNOWN / 0); the bag keeps the profile's own keep_last depth there."""

import time

import pytest
from ros_harness import RosHarness, fresh_domain_id

from clap_ros.data import bags
from clap_ros.nodes.common import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS

pytestmark = [pytest.mark.ros]

KINDS = {"sensor_data": SENSOR_QOS, "transient_local": LATCHED_QOS, "reliable": COMMAND_QOS}


def test_recorded_qos_matches_what_rmw_offers():
    from rclpy.qos import DurabilityPolicy, LivelinessPolicy, ReliabilityPolicy
    from std_msgs.msg import String

    h = RosHarness(fresh_domain_id(), "qos_probe")
    try:
        for kind, profile in KINDS.items():
            h.node.create_publisher(String, "/qos_probe/" + kind, profile)
        time.sleep(0.3)
        for kind, profile in KINDS.items():
            (info,) = h.node.get_publishers_info_by_topic("/qos_probe/" + kind)
            offered = info.qos_profile
            ours = bags.make_qos(kind)
            rel = {
                ReliabilityPolicy.RELIABLE: "RELIABLE",
                ReliabilityPolicy.BEST_EFFORT: "BEST_EFFORT",
            }[offered.reliability]
            dur = {
                DurabilityPolicy.VOLATILE: "VOLATILE",
                DurabilityPolicy.TRANSIENT_LOCAL: "TRANSIENT_LOCAL",
            }[offered.durability]
            assert ours.reliability.name == rel and ours.durability.name == dur, kind
            assert offered.liveliness == LivelinessPolicy.AUTOMATIC
            assert ours.liveliness.name == "AUTOMATIC"
            for field in ("deadline", "lifespan", "liveliness_lease_duration"):
                ns = getattr(offered, field).nanoseconds
                t = getattr(ours, field)
                assert t.sec * 10**9 + t.nsec == ns, (kind, field)
            assert ours.depth == profile.depth, kind
    finally:
        h.close()
