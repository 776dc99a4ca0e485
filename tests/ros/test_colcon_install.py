"""A colcon-style install works from any directory (issue 16 items 1 and 4).

The package is installed into a temporary prefix with the command colcon's ament_python build
runs (colcon-core's PythonBuildTask: ``setup.py egg_info --egg-base B build --build-base B/build
install --prefix P --record B/install.log --single-version-externally-managed`` with
P/lib/pythonX.Y/site-packages on PYTHONPATH). With AMENT_PREFIX_PATH=P, as sourcing the install's
setup script gives, a node started from an unrelated directory with default parameters finds its
bundle in P/share/clap_ros through ament_index_python; robot:=ur5e (no UR5e bundle shipped yet)
exits 2 with a message naming every place looked and the model:= to pass.
"""

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from ros_harness import fresh_domain_id

pytestmark = [pytest.mark.ros]
REPO = Path(__file__).resolve().parents[2]
SOURCES = (
    "setup.py",
    "setup.cfg",
    "package.xml",
    "resource",
    "launch",
    "config",
    "models",
    "clap_ros",
)


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    root = tmp_path_factory.mktemp("colcon")
    src, build, prefix = root / "src" / "clap_ros", root / "build" / "clap_ros", root / "install"
    src.mkdir(parents=True)
    for name in SOURCES:
        s = REPO / name
        if s.is_dir():
            shutil.copytree(s, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(s, src / name)
    rel_lib = Path(sysconfig.get_path("purelib", vars={"base": "", "platbase": ""}).lstrip("/"))
    lib = prefix / rel_lib
    lib.mkdir(parents=True)
    build.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(lib))
    cmd = [
        sys.executable,
        "setup.py",
        "egg_info",
        "--egg-base",
        os.path.relpath(build, src),
        "build",
        "--build-base",
        str(build / "build"),
        "install",
        "--prefix",
        str(prefix),
        "--record",
        str(build / "install.log"),
        "--single-version-externally-managed",
    ]
    r = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return {"prefix": prefix, "lib": lib, "cwd": elsewhere}


def _env(inst, **extra):
    env = dict(
        os.environ,
        PYTHONPATH=str(inst["lib"]),
        AMENT_PREFIX_PATH=str(inst["prefix"]),
        ROS_DOMAIN_ID=str(fresh_domain_id()),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def test_the_install_has_the_package_layout(install):
    p = install["prefix"]
    assert (p / "share" / "ament_index" / "resource_index" / "packages" / "clap_ros").is_file()
    share = p / "share" / "clap_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "bringup.launch.py").is_file()
    assert (share / "config" / "clap_nodes.yaml").is_file()
    assert (share / "models" / "default" / "manifest.yaml").is_file()
    for node in ("encoder_node", "planner_node", "action_node", "sim_driver", "expert_node"):
        assert os.access(p / "lib" / "clap_ros" / node, os.X_OK), node  # `ros2 run` looks here
    probe = (
        "import clap_ros; from ament_index_python.packages import get_package_share_directory"
        " as g; from clap_ros.launching.graph import package_share;"
        " print(clap_ros.__file__); print(g('clap_ros')); print(package_share())"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=install["cwd"],
        env=_env(install),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    module, indexed, graph_share = r.stdout.split()
    assert Path(module).is_relative_to(install["lib"])  # the installed copy, not the repo
    assert Path(indexed) == share and Path(graph_share) == share


def test_a_node_with_default_parameters_finds_its_bundle_through_the_index(install):
    exe = install["prefix"] / "lib" / "clap_ros" / "planner_node"
    p = subprocess.Popen(
        [str(exe), "--ros-args", "-p", "backend:=cpu"],
        cwd=install["cwd"],
        env=_env(install),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = p.stdout.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            if "on backend" in line:
                break
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=30)[0].decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
    text = "".join(lines) + rest
    bundle = install["prefix"] / "share" / "clap_ros" / "models" / "default"
    assert "model %s (found in the ament index share" % bundle in text, text[-3000:]
    assert p.returncode == 0 and "Traceback" not in text, text[-3000:]


def test_ur5e_without_a_bundle_says_where_it_looked(install):
    exe = install["prefix"] / "lib" / "clap_ros" / "planner_node"
    r = subprocess.run(
        [str(exe), "--ros-args", "-p", "robot:=ur5e"],
        cwd=install["cwd"],
        env=_env(install),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr
    assert "Traceback" not in err and "models/ur5e" in err and "model:=" in err, err
    assert str(install["cwd"] / "models" / "ur5e") in err
    assert str(install["prefix"] / "share" / "clap_ros" / "models" / "ur5e") in err
