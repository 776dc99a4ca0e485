"""Bring up the simulated arm: the MuJoCo sim_driver (and optionally the scripted expert).

    ros2 launch clap_ros sim.launch.py robot:=fr3 task:=pick_place
    ros2 launch clap_ros sim.launch.py robot:=ur5e task:=push seed:=3 expert:=true

Every node parameter lives in config/sim_driver.yaml (params_file:=...); the arguments below
override the few that are changed most often.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    # (name, default, description)
    ("robot", "fr3", "robot profile: fr3, panda, ur5e or a profile YAML path"),
    ("task", "pick_place", "sim task"),
    ("seed", "0", "layout/appearance seed (the driver's ~/reset uses the current value)"),
    ("randomize", "true", "visual randomisation per seed"),
    ("use_sim_time", "false", "publish and follow /clock (needed for real_time_factor 0)"),
    ("real_time_factor", "1.0", "sim seconds per wall second; 0 = as fast as possible"),
    ("camera_width", "128", "scene camera width, px"),
    ("camera_height", "128", "scene camera height, px"),
    ("camera_rate_hz", "15.0", "scene camera rate, Hz"),
    ("wrist_camera", "false", "also publish the wrist camera"),
    ("expert", "false", "also run the scripted expert for this seed"),
    ("command_mode", "joint_trajectory", "expert commands: joint_trajectory or forward_position"),
]


def generate_launch_description():
    default_params = PathJoinSubstitution(
        [FindPackageShare("clap_ros"), "config", "sim_driver.yaml"])
    args = [DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in ARGUMENTS]
    args.append(DeclareLaunchArgument(
        "params_file", default_value=default_params,
        description="ros__parameters YAML for sim_driver and expert_node"))

    def arg(name, value_type):
        return ParameterValue(LaunchConfiguration(name), value_type=value_type)

    shared = {
        "robot": arg("robot", str),
        "task": arg("task", str),
        "seed": arg("seed", int),
        "randomize": arg("randomize", bool),
        "use_sim_time": arg("use_sim_time", bool),
    }
    params_file = LaunchConfiguration("params_file")
    sim_driver = Node(
        package="clap_ros", executable="sim_driver", name="sim_driver", output="screen",
        emulate_tty=True,
        parameters=[params_file, dict(shared, **{
            "real_time_factor": arg("real_time_factor", float),
            "camera_width": arg("camera_width", int),
            "camera_height": arg("camera_height", int),
            "camera_rate_hz": arg("camera_rate_hz", float),
            "wrist_camera": arg("wrist_camera", bool),
        })],
    )
    expert = Node(
        package="clap_ros", executable="expert_node", name="expert_node", output="screen",
        emulate_tty=True, condition=IfCondition(LaunchConfiguration("expert")),
        parameters=[params_file, dict(shared, command_mode=arg("command_mode", str))],
    )
    return LaunchDescription(args + [sim_driver, expert])
