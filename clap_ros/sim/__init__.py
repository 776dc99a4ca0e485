"""clap_ros.sim: the MuJoCo world that stands in for the robot, its camera and human videos.

``SimWorld`` (robot + scene + task, reset per seed), ``TASKS`` (the task registry),
``make_expert`` (scripted IK experts with open-loop joint-space plans) and ``run_plan`` (execute a
plan directly, without ROS). See docs/INTERFACES.md.
"""

import os

# Everything here renders off-screen (drivers, recorders, CI): default to EGL unless the user
# chose a GL backend. MuJoCo reads this when it is first imported, so it is set here, before any
# sim module can import mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

from clap_ros.sim.expert import ArmExpert, ExpertError, HandExpert, Plan, make_expert, run_plan
from clap_ros.sim.tasks import TASKS, Task, get_task, register_task
from clap_ros.sim.world import SimWorld

__all__ = [
    "SimWorld",
    "TASKS",
    "Task",
    "get_task",
    "register_task",
    "make_expert",
    "run_plan",
    "Plan",
    "ArmExpert",
    "HandExpert",
    "ExpertError",
]
