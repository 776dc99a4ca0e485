"""clap_ros.calibration."""
