"""ros2 launch stops the whole graph when a node exits (issue 16 item 2).

launch / launch_ros are not installable from PyPI (no ros-jazzy-launch wheel), so the translation
is run against the recording stand-ins of test_sim_launch.py; each node's ``on_exit`` is then
called the way launch's OnProcessExit calls it, with a ProcessExited-like event and a context.
The ``on_exit`` signature and Shutdown(reason=...) are those of launch 3.4.3 (Jazzy).
"""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from clap_ros.launching.graph import GRAPHS


def _stand_ins(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "_sim_launch_tests_on_exit", Path(__file__).with_name("test_sim_launch.py")
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    classes = {}
    for module, names in helpers.STANDARD_API.items():
        mod = types.ModuleType(module)
        for name in names:
            cls = type(name, (helpers._Recorded,), {})
            setattr(mod, name, cls)
            classes[name] = cls
        monkeypatch.setitem(sys.modules, module, mod)
    return types.SimpleNamespace(**classes)


def _exit(handler, code, shutting_down=False):
    event = types.SimpleNamespace(returncode=code)
    context = types.SimpleNamespace(is_shutdown=shutting_down)
    return handler(event, context)


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
def test_every_node_exit_shuts_the_graph_down_with_a_reason(monkeypatch, graph_name):
    L = _stand_ins(monkeypatch)
    from clap_ros.launching.ros_launch import launch_description

    graph = GRAPHS[graph_name]
    nodes = [e for e in launch_description(graph_name).args[0] if isinstance(e, L.Node)]
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in graph.nodes]
    for spec, node in zip(graph.nodes, nodes):
        on_exit = node.kwargs["on_exit"]
        assert callable(on_exit), spec.name
        for code in (1, 2, -11):
            actions = _exit(on_exit, code)
            assert len(actions) == 1 and isinstance(actions[0], L.Shutdown), (spec.name, code)
            reason = actions[0].kwargs["reason"]
            assert spec.name in reason and str(code) in reason and graph_name in reason
        # exit 0 of a core node is a failure too (it should run until stopped)...
        clean = _exit(on_exit, 0)
        if spec.may_finish:
            assert clean is None, spec.name  # ...except the expert finishing its plan
        else:
            assert isinstance(clean[0], L.Shutdown), spec.name
        # during a Ctrl-C shutdown the exits are expected: no second Shutdown
        assert _exit(on_exit, 0, shutting_down=True) is None
        assert _exit(on_exit, 1, shutting_down=True) is None


def test_may_finish_is_only_the_expert():
    finishing = {(g.name, n.name) for g in GRAPHS.values() for n in g.nodes if n.may_finish}
    assert finishing == {("sim", "expert_node")}
