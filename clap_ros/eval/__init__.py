"""clap_ros.eval."""
