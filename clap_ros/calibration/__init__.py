"""clap_ros.calibration: camera intrinsics and hand-eye calibration (numpy + OpenCV, no ROS).

``board`` (chessboard / ChArUco geometry and detection), ``intrinsics`` (cv2.calibrateCamera with
coverage and RMS checks), ``handeye`` (cv2.calibrateHandEye / calibrateRobotWorldHandEye with
per-view residuals), ``yaml_io`` (camera_info_manager YAML, transform YAML, poses files),
``sources`` (image folders, rosbag2 bags), ``simboard`` (MuJoCo ground truth), ``cli``
(``clap-ros calibrate``). Outputs go to the top-level ``calibration/`` folder. See
docs/INTERFACES.md.
"""
