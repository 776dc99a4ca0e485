"""Bring up the CLAP runtime: encoder_node, planner_node and action_node (and the sim driver).

    ros2 launch clap_ros bringup.launch.py use_sim:=true instruction:="pick up the red cube"
    ros2 launch clap_ros bringup.launch.py robot:=ur5e command_mode:=forward_position
    ros2 launch clap_ros bringup.launch.py --show-args

The graph (arguments, nodes, parameters) is declared once in clap_ros.launching.graph (BRINGUP)
and shared with `clap-ros launch bringup ...`, which starts the same nodes without the ros2 CLI.
The CLAP nodes' parameters live in config/clap_nodes.yaml (params_file:=...), the sim driver's in
config/sim_driver.yaml (sim_params_file:=...); the arguments override the few changed most often.
The action node holds the arm still until its ~/enable service is called (or enable_on_start:=true).
"""

from clap_ros.launching.ros_launch import launch_description

GRAPH = "bringup"


def generate_launch_description():
    return launch_description(GRAPH)
