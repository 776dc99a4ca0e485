"""clap_ros.nodes."""
