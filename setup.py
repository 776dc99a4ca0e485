"""clap_ros: installable both with colcon (ament_python) and with pip into a virtual environment."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "clap_ros"
# Executables `ros2 run clap_ros <name>` resolves: name -> module with a main().
NODES = {
    "sim_driver": "clap_ros.nodes.sim_driver",
    "expert_node": "clap_ros.nodes.expert_node",
    "encoder_node": "clap_ros.nodes.encoder_node",
    "planner_node": "clap_ros.nodes.planner_node",
    "action_node": "clap_ros.nodes.action_node",
}


def _node_wrappers():
    """Write tiny lib/clap_ros/<node> launchers for pip installs (pip ignores setup.cfg's
    install_scripts). They run the prefix's own python, so a venv's interpreter is used."""
    out_dir = os.path.join("build", "node_wrappers")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, module in NODES.items():
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write(
                "#!/bin/sh\n"
                "# Installed by clap_ros for `ros2 run clap_ros %s` on pip installs.\n"
                'prefix="$(cd "$(dirname "$0")/../.." && pwd)"\n'
                'py="$prefix/bin/python3"; [ -x "$py" ] || py=python3\n'
                'exec "$py" -m %s "$@"\n' % (name, module)
            )
        os.chmod(path, 0o755)
        paths.append(path)
    return paths


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["clap_ros", "clap_ros.*"]),
    package_data={"clap_ros": ["robots/*.yaml", "sim/assets/*", "sim/textures/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
        # Every shipped bundle (models/<name>/), so the defaults work after a colcon or pip
        # install from any directory: nodes look relative model paths up in the ament index's
        # share/clap_ros and in <prefix>/share/clap_ros (clap_ros.inference.model_paths).
    ]
    + [
        (
            "share/%s/%s" % (PACKAGE, d.rstrip("/")),
            sorted(f for f in glob(d + "*") if os.path.isfile(f)),
        )
        for d in sorted(glob("models/*/"))
    ]
    + [
        ("lib/" + PACKAGE, _node_wrappers()),
    ],
    install_requires=["numpy", "pyyaml"],
    zip_safe=False,
    maintainer="clap_ros developers",
    maintainer_email="clap-ros@example.com",
    description="Real-time ROS 2 control stack for CLAP latent-action policies",
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["clap-ros = clap_ros.cli:main"]
        + ["%s = %s:main" % (n, m) for n, m in NODES.items()],
    },
)
