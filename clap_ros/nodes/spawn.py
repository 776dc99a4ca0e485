"""Start clap_ros nodes as separate processes and stop them cleanly.

``python -m <module> --ros-args -r __node:=<name> -p k:=v ... --params-file f`` in its own process
(its own DDS participant, as under `ros2 launch`), with ROS_DOMAIN_ID and the discovery range set,
stdout+stderr captured to a log file, and a stop that escalates SIGINT -> SIGTERM -> SIGKILL.
Used by the ROS tests, the episode recorder and the `clap-ros launch` runner. No rclpy import here.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

_RUNNING: List["NodeProcess"] = []


def format_param(value) -> str:
    """A ``-p name:=value`` value that ROS parses (as YAML) back to the same type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # quoted: "1.0" stays a string, not a double
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(format_param(v) for v in value)
    raise TypeError("unsupported parameter value %r (%s)" % (value, type(value).__name__))


def node_command(
    module: str,
    params: Optional[Mapping] = None,
    params_file: Optional[Union[str, Path]] = None,
    name: Optional[str] = None,
    remaps: Optional[Mapping[str, str]] = None,
) -> List[str]:
    cmd = [sys.executable, "-m", module, "--ros-args"]
    if name:
        cmd += ["-r", "__node:=%s" % name]
    for src, dst in (remaps or {}).items():
        cmd += ["-r", "%s:=%s" % (src, dst)]
    if params_file:
        cmd += ["--params-file", str(params_file)]
    for k, v in (params or {}).items():
        cmd += ["-p", "%s:=%s" % (k, format_param(v))]
    return cmd


def _child_setup(nice: int, own_group: bool = False, process_group: Optional[int] = None):
    def setup():
        # Linux: the child gets SIGTERM if the process that spawned it dies (crashed test
        # runner), so no orphaned sim keeps a core busy.
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if nice:
            os.nice(nice)
        if own_group:
            # A terminal's Ctrl-C then reaches only the launcher, which forwards it once.
            os.setpgid(0, 0)
        elif process_group is not None:
            # Join an existing group, as the nodes under `ros2 launch` share the terminal's:
            # a Ctrl-C there reaches every one of them at once.
            os.setpgid(0, process_group)

    return setup


class NodeProcess:
    """One node in its own process. Use as a context manager or call start()/stop().

    ``nice`` lowers the child's CPU priority (e.g. for a helper whose start-up burst must not
    starve a real-time sim on a small machine). ``own_group`` puts the child in its own process
    group, so signals sent to the parent's group (Ctrl-C) reach it only through the parent;
    ``process_group`` instead puts it in that existing group (with own_group, the first node of a
    graph leads the group the others join).
    """

    def __init__(
        self,
        module: str,
        params: Optional[Mapping] = None,
        params_file: Optional[Union[str, Path]] = None,
        name: Optional[str] = None,
        remaps: Optional[Mapping[str, str]] = None,
        domain_id: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
        log_path: Optional[Union[str, Path]] = None,
        nice: int = 0,
        own_group: bool = False,
        process_group: Optional[int] = None,
    ):
        self.module = module
        self.nice = int(nice)
        self.own_group = bool(own_group)
        self.process_group = process_group
        self.name = name or module.rsplit(".", 1)[-1]
        self.cmd = node_command(module, params, params_file, name, remaps)
        self.env: Dict[str, str] = dict(os.environ)
        self.env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        if domain_id is not None:
            self.env["ROS_DOMAIN_ID"] = str(int(domain_id))
        self.env["PYTHONUNBUFFERED"] = "1"
        # The child imports the same clap_ros as this process, however it was installed (or a
        # source checkout run from elsewhere).
        import clap_ros

        root = str(Path(clap_ros.__file__).resolve().parent.parent)
        paths = [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in paths:
            self.env["PYTHONPATH"] = os.pathsep.join([root] + paths)
        self.env.update(env or {})
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="clap_ros_%s_" % self.name, suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    def start(self) -> "NodeProcess":
        if self.proc is not None:
            raise RuntimeError("%s already started" % self.name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            preexec_fn=_child_setup(self.nice, self.own_group, self.process_group),
        )
        _RUNNING.append(self)
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll() if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Exit code, or None if still running after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` if the process still runs; False if it had already exited."""
        if not self.running():
            return False
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            return False
        return True

    def log_text(self, tail: Optional[int] = None) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[-tail:] if tail else text

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGINT (rclpy shuts down cleanly), then SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        for sig, wait_s in ((signal.SIGINT, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        code = self.proc.poll()
        self._close()
        return code

    def _close(self):
        if self._log is not None:
            self._log.close()
            self._log = None
        if self in _RUNNING:
            _RUNNING.remove(self)

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    def __repr__(self) -> str:
        return "NodeProcess(%s, pid=%s, rc=%s)" % (self.name, self.pid, self.returncode)


def spawn_node(module: str, **kw) -> NodeProcess:
    """Start ``module`` as a node process now; see NodeProcess for the arguments."""
    return NodeProcess(module, **kw).start()


@atexit.register
def _stop_all() -> None:
    for p in list(_RUNNING):
        p.stop(timeout=2.0)


def wait_for(predicate, timeout: float, period: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())
