"""Which parameters a node's source declares, for the launch/config consistency tests.

Reading the source (rather than starting every node) keeps these checks instant; a parameter
counts as declared when its quoted name appears in the node's module, or through the shared
helpers in clap_ros/nodes/common.py that declare a fixed name.
"""
from pathlib import Path

NODES_DIR = Path(__file__).resolve().parents[2] / "clap_ros" / "nodes"
# Shared declaring helpers -> the parameter each one declares.
HELPERS = {"declare_robot(": "robot"}


def declares(source_files, key: str) -> bool:
    if key == "use_sim_time":
        return True  # declared by rclpy itself
    for name in source_files:
        path = NODES_DIR / name
        if not path.is_file():
            continue
        text = path.read_text()
        if '"%s"' % key in text:
            return True
        if any(h in text and p == key for h, p in HELPERS.items()):
            return True
    return False
