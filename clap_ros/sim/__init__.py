"""clap_ros.sim."""
