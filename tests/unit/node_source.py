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
        if key in _schema_names(text):
            return True
    return False


def _schema_names(text: str) -> set:
    """Parameters declared from a schema (``declare_params(node, XParams, ...)``, see
    clap_ros/nodes/schema_params.py): the schema class is looked up in the modules the node
    imports from."""
    import importlib
    import re

    names = set()
    modules = ["clap_ros.runtime.params"] + re.findall(r"^from (clap_ros[\w.]*) import", text, re.M)
    for cls_name in re.findall(r"declare_params\(\s*\w+\s*,\s*(\w+)", text):
        for mod in modules:
            cls = getattr(importlib.import_module(mod), cls_name, None)
            if cls is not None and hasattr(cls, "names"):
                names.update(cls.names())
                break
    return names
