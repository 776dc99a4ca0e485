"""The runtime cores (clap_ros.runtime) import without ROS: every module of the package imports
in a fresh interpreter in which importing rclpy (or any ROS message package) fails."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import clap_ros.runtime

BLOCKER = r"""
import sys, importlib.abc
BLOCKED = ("rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "trajectory_msgs",
           "builtin_interfaces", "diagnostic_msgs", "std_srvs", "torch")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked in this test: %s" % name)
        return None
sys.meta_path.insert(0, Block())
for m in BLOCKED:
    sys.modules.pop(m, None)
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("ok", len(sys.argv) - 1)
"""


def runtime_modules():
    path = Path(clap_ros.runtime.__file__).parent
    return ["clap_ros.runtime"] + [
        "clap_ros.runtime.%s" % m.name for m in pkgutil.iter_modules([str(path)])
    ]


def test_every_runtime_module_imports_with_rclpy_blocked():
    mods = runtime_modules()
    assert {
        "clap_ros.runtime.params",
        "clap_ros.runtime.virtual_stack",
        "clap_ros.runtime.action_core",
        "clap_ros.runtime.encoder_core",
        "clap_ros.runtime.planner_core",
    } <= set(mods)
    r = subprocess.run(
        [sys.executable, "-c", BLOCKER] + mods, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "ok %d" % len(mods)


def test_the_blocker_does_block_rclpy():
    # the check above means something only if importing rclpy really fails under the blocker
    r = subprocess.run(
        [sys.executable, "-c", BLOCKER, "rclpy"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode != 0 and "blocked in this test: rclpy" in r.stderr
