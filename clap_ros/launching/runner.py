"""Start a launch graph as separate node processes and keep it up, without the ros2 CLI.

What `ros2 launch` does for clap_ros's graphs: each enabled node in its own process (via
clap_ros.nodes.spawn), started with the parameters the graph gives it, its output streamed with a
``[node]`` prefix (and kept in ``<log_dir>/<node>.log``), SIGINT / SIGTERM forwarded to every node,
and the whole graph stopped if a node dies: a node that exits (unless it is marked ``may_finish``
and exits 0) takes the others down, and the runner exits non-zero naming it.

Each node gets one params file, ``<log_dir>/<node>.params.yaml``, holding exactly the merged
parameters of clap_ros.launching.graph.node_parameters, so what the node runs with is on disk.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Mapping, Optional, Tuple

import yaml

from clap_ros.launching.graph import Graph, NodeSpec, enabled_nodes, node_parameters, node_remaps
from clap_ros.nodes.spawn import NodeProcess

PREFIX = "[clap-ros launch]"


def default_log_dir() -> Path:
    """A fresh directory under the ROS log location (ROS_LOG_DIR, else ROS_HOME/log, else
    ~/.ros/log), as ros2 launch uses."""
    if os.environ.get("ROS_LOG_DIR"):
        base = Path(os.environ["ROS_LOG_DIR"])
    else:
        base = Path(os.environ.get("ROS_HOME", Path.home() / ".ros")) / "log"
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
    return base / ("clap-ros-launch-%s-%d" % (stamp, os.getpid()))


def describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return "exit code %d, killed by %s" % (code, signal.Signals(-code).name)
        except ValueError:
            return "exit code %d" % code
    return "exit code %d" % code


class _Tail:
    """Follows a node's log file and hands back complete new lines."""

    def __init__(self, path: Path):
        self.path = path
        self.pos = 0
        self.partial = b""

    def lines(self, flush: bool = False) -> List[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except FileNotFoundError:
            data = b""
        data = self.partial + data
        parts = data.split(b"\n")
        self.partial = parts.pop()
        if flush and self.partial:
            parts.append(self.partial)
            self.partial = b""
        return [p.decode(errors="replace").rstrip("\r") for p in parts]


class GraphRunner:
    """Runs ``graph`` with resolved argument ``values`` (graph.resolve_arguments)."""

    def __init__(
        self,
        graph: Graph,
        values: Mapping[str, Any],
        log_dir: Optional[Path] = None,
        out: IO[str] = None,
        stop_timeout: float = 5.0,
        poll_s: float = 0.05,
        env: Optional[Mapping[str, str]] = None,
    ):
        self.graph = graph
        self.values = dict(values)
        self.log_dir = Path(log_dir) if log_dir else default_log_dir()
        self.out = out or sys.stdout
        self.stop_timeout = float(stop_timeout)
        self.poll_s = float(poll_s)
        self.env = dict(env or {})
        self.specs: List[NodeSpec] = enabled_nodes(graph, self.values)
        # Built before anything starts, so a bad params file fails with no process left behind.
        self.plans: List[Tuple[NodeSpec, Dict[str, Any], Dict[str, str]]] = [
            (s, node_parameters(s, self.values), node_remaps(s, self.values)) for s in self.specs
        ]
        self.procs: List[NodeProcess] = []
        self._tails: Dict[str, _Tail] = {}
        self._signals: List[int] = []

    # -- output --------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print("%s %s" % (PREFIX, text), file=self.out, flush=True)

    def pump(self, flush: bool = False) -> None:
        for p in self.procs:
            for line in self._tails[p.name].lines(flush):
                print("[%s] %s" % (p.name, line), file=self.out)
        self.out.flush()

    # -- lifecycle -----------------------------------------------------------------------------
    def params_path(self, spec: NodeSpec) -> Path:
        return self.log_dir / ("%s.params.yaml" % spec.name)

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec, params, remaps in self.plans:
                path = self.params_path(spec)
                path.write_text(
                    yaml.safe_dump({spec.name: {"ros__parameters": params}}, sort_keys=False)
                )
                proc = NodeProcess(
                    spec.module,
                    params_file=path,
                    name=spec.name,
                    remaps=remaps,
                    env=self.env,
                    log_path=self.log_dir / ("%s.log" % spec.name),
                    own_group=True,
                )
                self._tails[spec.name] = _Tail(proc.log_path)
                self.procs.append(proc)
                proc.start()
                self.say("started %s (pid %d)" % (spec.name, proc.pid))
        except BaseException:
            self.stop_all(signal.SIGINT)
            raise
        skipped = [n.name for n in self.graph.nodes if n not in self.specs]
        self.say(
            "graph %s up; logs and parameters in %s%s"
            % (
                self.graph.name,
                self.log_dir,
                ("; not started (condition false): %s" % ", ".join(skipped)) if skipped else "",
            )
        )

    def stop_all(self, sig: int = signal.SIGINT) -> Dict[str, Optional[int]]:
        """Signal every running node at once, wait ``stop_timeout`` for all of them, then
        escalate (SIGTERM, SIGKILL) for those left; returns each node's exit code."""
        for p in self.procs:
            p.send_signal(sig)
        deadline = time.monotonic() + self.stop_timeout
        n_signals = len(self._signals)
        while time.monotonic() < deadline and any(p.running() for p in self.procs):
            if len(self._signals) > n_signals:
                break  # a second Ctrl-C: do not wait politely any longer
            self.pump()
            time.sleep(self.poll_s)
        codes = {}
        for p in self.procs:
            if p.running():
                self.say("%s did not stop within %.1f s; escalating" % (p.name, self.stop_timeout))
            codes[p.name] = p.stop(timeout=0.0)
        self.pump(flush=True)
        return codes

    def _on_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        """Start the graph, supervise it until a signal, a node's death or every node finishing;
        return 0 on a clean stop, 1 when a node died or did not stop cleanly."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            return self._supervise()
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _supervise(self) -> int:
        finished = set()
        by_name = {s.name: s for s in self.specs}
        while True:
            self.pump()
            if self._signals:
                sig = self._signals[0]
                self.say(
                    "%s received: stopping %s"
                    % (
                        signal.Signals(sig).name,
                        ", ".join(p.name for p in self.procs if p.running()) or "nothing",
                    )
                )
                codes = self.stop_all(sig)
                return self._report(codes, finished)
            for p in self.procs:
                code = p.returncode
                if code is None or p.name in finished:
                    continue
                finished.add(p.name)
                if code == 0 and by_name[p.name].may_finish:
                    self.say("%s finished (exit code 0)" % p.name)
                    continue
                self.say("node %s died (%s); stopping the graph" % (p.name, describe_exit(code)))
                self.stop_all(signal.SIGINT)
                self.say(
                    "graph %s stopped because %s exited (%s)"
                    % (self.graph.name, p.name, describe_exit(code))
                )
                return 1
            if len(finished) == len(self.procs):
                self.say("every node finished")
                return 0
            time.sleep(self.poll_s)

    def _report(self, codes: Mapping[str, Optional[int]], finished) -> int:
        bad = {n: c for n, c in codes.items() if n not in finished and c != 0}
        for name, code in codes.items():
            if name not in finished:
                self.say("%s stopped (%s)" % (name, describe_exit(code)))
        return 1 if bad else 0
