"""Bring up the simulated arm: the MuJoCo sim_driver (and optionally the scripted expert).

    ros2 launch clap_ros sim.launch.py robot:=fr3 task:=pick_place
    ros2 launch clap_ros sim.launch.py robot:=ur5e task:=push seed:=3 expert:=true
    ros2 launch clap_ros sim.launch.py --show-args

The graph (arguments, nodes, parameters) is declared once in clap_ros.launching.graph (SIM) and
shared with `clap-ros launch sim ...`, which starts the same nodes without the ros2 CLI. Every node
parameter lives in config/sim_driver.yaml (params_file:=...); the arguments override the few that
are changed most often.
"""

from clap_ros.launching.ros_launch import launch_description

GRAPH = "sim"


def generate_launch_description():
    return launch_description(GRAPH)
