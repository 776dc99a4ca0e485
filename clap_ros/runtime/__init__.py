"""ROS-free runtime cores of the CLAP nodes (no rclpy import anywhere in this package).

- ``params``: the parameter schemas (one dataclass per node) and their checks.
- ``messages``: wire formats read through fields only (/clap/latent, joint states, /clap/plan).
- ``encoder_core`` / ``planner_core`` / ``action_core`` (+ its parts): the nodes' logic.
- ``virtual_stack``: the three cores on a virtual clock (eval-bag offline, eval-sim direct).
"""
