"""`clap-ros launch`: start a clap_ros node graph without the ros2 CLI."""

from __future__ import annotations

import argparse
import sys
from typing import List, Sequence, Tuple

from clap_ros.launching.graph import (
    GRAPHS,
    PACKAGE,
    Graph,
    LaunchError,
    PackageFile,
    default_value,
    enabled_nodes,
    get_graph,
    node_parameters,
    node_remaps,
    parse_assignments,
    resolve_arguments,
)

DESCRIPTION = """\
Start one of clap_ros's node graphs as separate processes, as `ros2 launch clap_ros
<graph>.launch.py` does on a ROS 2 install: the same arguments (name:=value), the same nodes and
parameters (both read clap_ros.launching.graph). Node output is streamed with a [node] prefix and
kept with each node's effective parameters in --log-dir. Ctrl-C / SIGTERM stop every node; if a
node dies the whole graph is stopped and the exit status is 1.

graphs:
%s

exit status: 0 after a clean stop (Ctrl-C, SIGTERM, or every node finished), 1 if a node died or
did not stop cleanly, 2 for a bad graph name, argument or params file.

examples:
  clap-ros launch sim robot:=fr3 task:=pick_place
  clap-ros launch sim robot:=ur5e task:=push seed:=3 expert:=true
  clap-ros launch clap_ros sim.launch.py --show-args
"""


def _graph_lines() -> str:
    return "\n".join("  %-10s %s" % (g.name, g.description) for g in GRAPHS.values())


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "launch",
        help="start a node graph (sim, ...) without the ros2 CLI",
        description=DESCRIPTION % _graph_lines(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "graph",
        metavar="GRAPH",
        help="graph name (or `clap_ros <graph>.launch.py`, as for ros2 launch)",
    )
    p.add_argument(
        "assignments",
        nargs="*",
        metavar="name:=value",
        help="launch arguments (--show-args lists them)",
    )
    p.add_argument(
        "--show-args",
        "-s",
        action="store_true",
        help="list the graph's arguments with descriptions and defaults, then exit",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the arguments and print each node's parameters; start nothing",
    )
    p.add_argument(
        "--log-dir",
        default=None,
        help="where node logs and parameter files go (default: a new directory under "
        "$ROS_LOG_DIR or ~/.ros/log)",
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=5.0,
        help="seconds each node gets to exit after SIGINT before SIGTERM/SIGKILL",
    )
    p.set_defaults(func=run)


def split_target(tokens: Sequence[str]) -> Tuple[str, List[str]]:
    """``[clap_ros] <graph>[.launch.py] name:=value ...`` -> (graph, assignments)."""
    words = [t for t in tokens if ":=" not in t]
    assignments = [t for t in tokens if ":=" in t]
    if words and words[0] == PACKAGE and len(words) > 1:
        words = words[1:]
    if len(words) != 1:
        raise LaunchError("expected one graph name, got %s" % (words or "none"))
    return words[0], assignments


def show_args(graph: Graph) -> str:
    lines = ["Arguments of graph %s (pass arguments as '<name>:=<value>'):" % graph.name, ""]
    for a in graph.arguments:
        lines.append("    '%s' (%s):" % (a.name, a.type))
        lines.append("        %s" % a.description)
        if a.choices:
            lines.append("        one of: %s" % ", ".join(a.choices))
        default = default_value(a)
        if isinstance(a.default, PackageFile):
            default += "  (share/%s/%s)" % (PACKAGE, "/".join(a.default.parts))
        lines.append("        (default: '%s')" % default)
        lines.append("")
    return "\n".join(lines)


def run(args) -> int:
    from clap_ros.launching.runner import GraphRunner

    try:
        name, assignments = split_target([args.graph] + list(args.assignments))
        graph = get_graph(name)
        if args.show_args:
            print(show_args(graph))
            return 0
        values = resolve_arguments(graph, parse_assignments(assignments))
        if args.dry_run:
            for spec in enabled_nodes(graph, values):
                print("%s  (python -m %s)" % (spec.name, spec.module))
                for k, v in node_parameters(spec, values).items():
                    print("    %s: %r" % (k, v))
                for src, dst in node_remaps(spec, values).items():
                    print("    remap %s -> %s" % (src, dst))
            return 0
        runner = GraphRunner(graph, values, log_dir=args.log_dir, stop_timeout=args.stop_timeout)
    except LaunchError as e:
        print("clap-ros launch: error: %s" % e, file=sys.stderr)
        return 2
    return runner.run()
