"""clap_ros.data."""
