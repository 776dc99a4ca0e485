"""Default topic names and message types shared by every node, the recorder and the bag tools.

One place for these strings (DESIGN.md section 2). Robot-specific driver topics (joint_states,
controllers, gripper) come from the robot profile, not from here.
"""

CAMERA_IMAGE = "/camera/image_raw"
CAMERA_INFO = "/camera/camera_info"
WRIST_IMAGE = "/wrist_camera/image_raw"
WRIST_INFO = "/wrist_camera/camera_info"
CLOCK = "/clock"
INSTRUCTION = "/clap/instruction"
LATENT = "/clap/latent"
PLAN_TOKENS = "/clap/plan_tokens"
PLAN = "/clap/plan"
DIAGNOSTICS = "/clap/diagnostics"
# Sim-only: the sim driver's task status (std_msgs/String holding JSON: task, instruction, seed,
# success, sim time, appearance factors). Transient-local so a late subscriber gets the latest.
SIM_STATUS = "/sim/status"
# One std_msgs/String (JSON) per recorded episode, written last: outcome, seed, timing, robot.
EPISODE_OUTCOME = "/clap/episode_outcome"

# ROS 2 type names as rosbag2 writes them.
TYPES = {
    "image": "sensor_msgs/msg/Image",
    "compressed_image": "sensor_msgs/msg/CompressedImage",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "joint_state": "sensor_msgs/msg/JointState",
    "joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "float64_array": "std_msgs/msg/Float64MultiArray",
    "string": "std_msgs/msg/String",
    "int32_array": "std_msgs/msg/Int32MultiArray",
    "clock": "rosgraph_msgs/msg/Clock",
    "diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
