"""Node graphs described once (graph.py), launched by `ros2 launch` (ros_launch.py, used by
launch/*.launch.py) or, without the ros2 CLI, by `clap-ros launch` (runner.py, cli.py)."""
