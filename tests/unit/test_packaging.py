"""Both install paths: package.xml for colcon, and a pip wheel that still lets `ros2 run` resolve.

`ros2 run clap_ros <node>` looks for executables under <prefix>/lib/clap_ros/ and finds the package
through the ament index; pip ignores setup.cfg's install_scripts, so setup.py ships wrappers there
as data files. Here a real wheel is built, installed into a fresh prefix, and the wrappers run.
"""

import configparser
import os
import subprocess
import sys
import venv
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _nodes():
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no NODES dict")


def test_package_xml_is_format3_ament_python_with_message_deps():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "clap_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    # Every ROS package the code imports must be declared.
    imported = set()
    for py in (ROOT / "clap_ros").rglob("*.py"):
        for line in py.read_text().splitlines():
            line = line.strip()
            for pkg in (
                "rclpy",
                "std_msgs",
                "std_srvs",
                "sensor_msgs",
                "trajectory_msgs",
                "diagnostic_msgs",
                "rosgraph_msgs",
                "builtin_interfaces",
                "rcl_interfaces",
            ):
                if line.startswith(("import %s" % pkg, "from %s" % pkg)):
                    imported.add(pkg)
    assert imported <= deps, "undeclared exec_depends: %s" % (imported - deps)


def test_setup_cfg_puts_colcon_scripts_where_ros2_run_looks():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/clap_ros"
    assert cfg["install"]["install_scripts"] == "$base/lib/clap_ros"


@pytest.fixture(scope="module")
def installed_prefix(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    wheel_dir = tmp / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        cwd=tmp,
    )
    wheel = next(wheel_dir.glob("clap_ros-*.whl"))
    prefix = tmp / "venv"
    # A bare venv that sees our venv's dependencies through a .pth file, so only clap_ros is new.
    venv.EnvBuilder(with_pip=False).create(prefix)
    site = next((prefix / "lib").glob("python3*/site-packages"))
    deps_site = [p for p in sys.path if p.endswith("site-packages")]
    (site / "zz_deps.pth").write_text("\n".join(deps_site) + "\n")
    subprocess.run(
        # --ignore-installed: without it pip would first uninstall the running venv's clap_ros.
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            "--prefix",
            str(prefix),
            str(wheel),
        ],
        check=True,
        cwd=tmp,
    )
    return wheel, prefix


def test_wheel_carries_ament_resources_and_node_wrappers(installed_prefix):
    wheel, _ = installed_prefix
    names = zipfile.ZipFile(wheel).namelist()
    data = "clap_ros-0.1.0.data/data/"
    assert data + "share/ament_index/resource_index/packages/clap_ros" in names
    assert data + "share/clap_ros/package.xml" in names
    for node in _nodes():
        assert data + "lib/clap_ros/" + node in names
    assert "clap_ros/robots/fr3.yaml" in names


def test_pip_install_lets_ros2_run_and_ament_index_resolve(installed_prefix):
    _, prefix = installed_prefix
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix))
    # Run from a directory without the source tree, so the installed copy is what imports.
    out = subprocess.run(
        [
            str(prefix / "bin" / "python"),
            "-c",
            "from ament_index_python.packages import get_package_share_directory as g;"
            "import clap_ros; print(g('clap_ros')); print(clap_ros.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=prefix,
        check=True,
    ).stdout.split()
    assert Path(out[0]) == prefix / "share" / "clap_ros"
    assert (Path(out[0]) / "package.xml").is_file()
    assert out[1].startswith(str(prefix))
    for node in _nodes():
        exe = prefix / "lib" / "clap_ros" / node
        assert os.access(exe, os.X_OK)
        res = subprocess.run(
            [str(exe), "--help"], capture_output=True, text=True, env=env, cwd=prefix, timeout=60
        )
        assert res.returncode == 0, res.stderr
        assert "robot" in res.stdout  # the node's parameter help, from the installed module


def test_clap_ros_console_script_help():
    res = subprocess.run(
        [sys.executable, "-m", "clap_ros.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0
    for word in ("sim", "robots"):
        assert word in res.stdout
