"""clap_ros: real-time ROS 2 control stack for CLAP latent-action policies (runtime, no torch)."""

__version__ = "0.1.0"
