"""clap_ros.control."""
