"""A clap_ros.launching.graph Graph as a standard `ros2 launch` description.

Used by launch/*.launch.py on a ROS 2 Jazzy install. Only the stable launch / launch_ros API:
DeclareLaunchArgument, LaunchConfiguration, PathJoinSubstitution, FindPackageShare, Node,
ParameterValue, IfCondition / UnlessCondition, Shutdown. launch is imported inside the functions,
so this module imports (and its argument tables can be inspected) where launch is not installed.

A node's exit stops the whole graph (``on_exit`` -> ``Shutdown`` with a reason naming the node and
its exit code), as `clap-ros launch` does, so the user sees one clear failure instead of a
half-alive graph; a node marked ``may_finish`` (the expert when its plan is done) may exit 0.
"""

from __future__ import annotations

from clap_ros.launching.graph import Arg, Argument, Graph, NodeSpec, PackageFile, get_graph

_VALUE_TYPES = {"str": str, "path": str, "int": int, "float": float, "bool": bool}


def launch_argument(arg: Argument):
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    if isinstance(arg.default, PackageFile):
        default = PathJoinSubstitution([FindPackageShare("clap_ros"), *arg.default.parts])
    else:
        default = arg.default
    kw = {"default_value": default, "description": arg.description}
    if arg.choices is not None:
        kw["choices"] = list(arg.choices)
    return DeclareLaunchArgument(arg.name, **kw)


def exit_handler(graph: Graph, node: NodeSpec):
    """``on_exit`` for ``node``: a callable (ProcessExited, LaunchContext) -> actions that shuts
    the graph down with a reason, unless the graph is already stopping (Ctrl-C) or the node may
    finish and exited 0."""

    def on_exit(event, context):
        from launch.actions import Shutdown

        if getattr(context, "is_shutdown", False):
            return None
        code = getattr(event, "returncode", None)
        if node.may_finish and code == 0:
            return None
        return [
            Shutdown(
                reason="%s exited with code %s; stopping graph %s" % (node.name, code, graph.name)
            )
        ]

    return on_exit


def launch_node(graph: Graph, node: NodeSpec):
    from launch.conditions import IfCondition, UnlessCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    def value(v):
        if isinstance(v, Arg):
            value_type = _VALUE_TYPES[graph.argument(v.name).type]
            return ParameterValue(LaunchConfiguration(v.name), value_type=value_type)
        return v

    parameters = []
    if node.params_file_arg:
        parameters.append(LaunchConfiguration(node.params_file_arg))
    parameters.append({k: value(v) for k, v in node.parameters.items()})
    remappings = [
        (src, LaunchConfiguration(d.name) if isinstance(d, Arg) else d) for src, d in node.remaps
    ]
    condition = None
    if node.condition is not None:
        cls = UnlessCondition if node.condition.unless else IfCondition
        condition = cls(LaunchConfiguration(node.condition.arg))
    return Node(
        package=node.package,
        executable=node.executable,
        name=node.name,
        output="screen",
        emulate_tty=True,
        parameters=parameters,
        remappings=remappings,
        condition=condition,
        on_exit=exit_handler(graph, node),
    )


def launch_description(graph_name: str):
    """The LaunchDescription for graph ``graph_name``: its arguments, then its nodes."""
    from launch import LaunchDescription

    graph = get_graph(graph_name)
    return LaunchDescription(
        [launch_argument(a) for a in graph.arguments] + [launch_node(graph, n) for n in graph.nodes]
    )
