"""clap_ros.inference."""
