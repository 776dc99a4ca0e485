"""Where a ``model`` parameter's bundle directory is: the one lookup every node and CLI uses.

A relative path is looked up, in order, in

1. the working directory (what the user typed, as a shell would read it);
2. the package's share directory from the ament index
   (``get_package_share_directory('clap_ros')/<path>``: a colcon or apt install, after sourcing);
3. the source checkout this module runs from (``<repo>/<path>``);
4. ``share/clap_ros`` of the prefix the package is installed in (pip / venv installs), and of the
   running interpreter's prefix.

An empty ``model`` means "the robot's default bundle": the ``default_model`` of its profile
(clap_ros/robots/<robot>.yaml), so the default follows ``robot``. When nothing exists,
``find_model_dir`` raises ModelNotFoundError naming every place it looked and the ``model:=`` to
pass. No rclpy import; ament_index_python is optional (without it step 2 is skipped).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple, Union

PACKAGE = "clap_ros"


class ModelNotFoundError(ValueError):
    """No bundle directory for a ``model`` value; the message lists the places looked."""


def ament_share_dir() -> Optional[Path]:
    """The package's share directory from the ament index, or None when it is not indexed
    (no AMENT_PREFIX_PATH entry has it) or ament_index_python is not installed."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, LookupError, ValueError, OSError):
        return None


def _checkout_root() -> Optional[Path]:
    """The source checkout this module runs from (it has package.xml beside clap_ros/)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "package.xml").is_file() else None


def _installed_share_dirs() -> List[Path]:
    """``<prefix>/share/clap_ros`` of the prefix holding this module, then of sys.prefix."""
    here = Path(__file__).resolve()
    out: List[Path] = []
    for prefix in here.parents[3:]:  # .../lib/pythonX.Y/site-packages/clap_ros/inference/x.py
        share = prefix / "share" / PACKAGE
        if (share / "package.xml").is_file():
            out.append(share)
            break
    out.append(Path(sys.prefix) / "share" / PACKAGE)
    return out


def search_roots() -> List[Tuple[str, Path]]:
    """(label, directory) pairs a relative model path is joined to, in lookup order."""
    roots: List[Tuple[str, Path]] = [("working directory", Path.cwd())]
    share = ament_share_dir()
    if share is not None:
        roots.append(("ament index share", share))
    checkout = _checkout_root()
    if checkout is not None:
        roots.append(("source checkout", checkout))
    for d in _installed_share_dirs():
        roots.append(("install prefix share", d))
    seen = set()
    unique = []
    for label, d in roots:
        key = os.path.normpath(str(d))
        if key not in seen:
            seen.add(key)
            unique.append((label, d))
    return unique


def candidates(path: Union[str, Path]) -> List[Tuple[str, Path]]:
    """Every (label, directory) ``path`` may name, in lookup order (one for an absolute path)."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        return [("absolute path", p)]
    return [(label, root / p) for label, root in search_roots()]


def resolve_model_dir(path: Union[str, Path]) -> Path:
    """The first existing directory ``path`` names (see the module doc for the order), else the
    working-directory path, so a bundle loader's error names the path the user typed."""
    found = candidates(path)
    for _, c in found:
        if c.is_dir():
            return c
    return found[0][1]


def default_model_for(robot) -> str:
    """The robot profile's default bundle (``default_model`` in its YAML), '' if it has none.
    ``robot`` is a RobotProfile or anything with a ``default_model`` attribute."""
    return str(getattr(robot, "default_model", "") or "")


def find_model_dir(model: str, robot=None, param: str = "model") -> Path:
    """The bundle directory for parameter ``model`` (an empty value: ``robot``'s default bundle).

    Raises ModelNotFoundError listing every place looked and what to pass instead.
    """
    return locate_model(model, robot, param)[1]


def locate_model(model: str, robot=None, param: str = "model") -> Tuple[str, Path]:
    """(where it was found, bundle directory) for ``model``; see find_model_dir."""
    model = str(model or "").strip()
    robot_name = getattr(robot, "name", None)
    if not model:
        model = default_model_for(robot)
        if not model:
            raise ModelNotFoundError(
                "parameter '%s' is empty and robot %s has no default_model: pass %s:=<bundle "
                "directory>" % (param, repr(robot_name) if robot_name else "(none)", param)
            )
    found = candidates(model)
    for label, c in found:
        if c.is_dir():
            return label, c
    looked = "; ".join("%s: %s" % (label, c) for label, c in found)
    for_robot = (" (the default bundle of robot '%s')" % robot_name) if robot_name else ""
    raise ModelNotFoundError(
        "model bundle %r%s not found; looked in %s. Pass %s:=<absolute path to a bundle "
        "directory> (one with manifest.yaml), or install the bundle there%s"
        % (
            model,
            for_robot,
            looked,
            param,
            ""
            if ament_share_dir() is not None
            else " (the ament index has no clap_ros: source the install's setup script so "
            "AMENT_PREFIX_PATH includes it)",
        )
    )
