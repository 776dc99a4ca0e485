"""``clap-ros dataset``: move data between clap_ros datasets, LeRobot v3.0 datasets and folders
of human videos (docs/DATASET.md sections 5-6).

Examples:
  clap-ros dataset import-lerobot ~/lerobot/aloha_sim --out datasets/aloha --robot aloha
  clap-ros dataset import-lerobot lr/ --out ds/ --robot fr3          # joint names from the profile
  clap-ros dataset export-lerobot datasets/fr3_pick_place --out lerobot/fr3_pick_place
  clap-ros dataset import-videos ssv2/videos --labels ssv2/train.json --out human/ssv2 --fps 15
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _joint_names(values):
    if not values:
        return None
    names = [n for v in values for n in v.split(",") if n.strip()]
    return [n.strip() for n in names] or None


def _import_lerobot(args: argparse.Namespace) -> int:
    from clap_ros.data.dataset import DatasetError
    from clap_ros.data.lerobot import LeRobotError, import_lerobot

    try:
        s = import_lerobot(
            args.src,
            args.out,
            robot=args.robot,
            joint_names=_joint_names(args.joint_names),
            state_key=args.state_key,
            action_key=args.action_key,
            overwrite=args.overwrite,
            crf=args.crf,
            progress=not args.quiet,
        )
    except (LeRobotError, DatasetError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    n_ok, n_skip = len(s["converted"]), len(s["skipped"])
    for sk in s["skipped"]:
        print("  skipped %s" % sk["reason"])
    wall = max(s["wall_s"], 1e-9)
    if n_ok:
        print(
            "  robot %s, joints %s (from %s), cameras %s; dataset %.1f MB at %s"
            % (
                s["robot"],
                ",".join(s["joint_names"]),
                s["joint_names_from"],
                ",".join(sorted(s["cameras"].values())) or "none",
                s["dataset_bytes"] / 1e6,
                args.out,
            )
        )
    print(
        "import-lerobot: %d episodes imported, %d skipped; %d frames in %.1f s (%.0f frames/s)"
        % (n_ok, n_skip, s["frames"], wall, s["frames"] / wall)
    )
    if n_ok == 0 or (args.strict and n_skip):
        return 1
    return 0


def _export_lerobot(args: argparse.Namespace) -> int:
    from clap_ros.data.dataset import DatasetError
    from clap_ros.data.lerobot import LeRobotError, export_lerobot
    from clap_ros.data.video import VideoError

    try:
        s = export_lerobot(
            args.src,
            args.out,
            overwrite=args.overwrite,
            crf=args.crf,
            gop=args.gop,
            data_file_size_mb=args.data_file_size_mb,
            video_file_size_mb=args.video_file_size_mb,
            progress=not args.quiet,
        )
    except (LeRobotError, DatasetError, VideoError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    wall = max(s["wall_s"], 1e-9)
    print(
        "  %d data file(s), %d video file(s); dataset %.1f MB at %s"
        % (s["data_files"], s["video_files"], s["dataset_bytes"] / 1e6, args.out)
    )
    print(
        "export-lerobot: %d episodes exported (LeRobot v3.0); %d frames in %.1f s "
        "(%.0f frames/s)" % (s["episodes"], s["frames"], wall, s["frames"] / wall)
    )
    return 0


def _import_videos(args: argparse.Namespace) -> int:
    from clap_ros.data.video_import import LabelsError, import_videos

    try:
        s = import_videos(
            args.src,
            args.out,
            labels=args.labels,
            fps=args.fps,
            size=args.size,
            mode=args.resize,
            crf=args.crf,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (LabelsError, ValueError, FileNotFoundError, FileExistsError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    n_ok, n_skip = len(s["clips"]), len(s["skipped"])
    for sk in s["skipped"]:
        print("  skipped %s" % sk["reason"])
    if s["labels_without_video"]:
        print(
            "  %d label entries matched no video (e.g. %s)"
            % (len(s["labels_without_video"]), ", ".join(s["labels_without_video"][:3]))
        )
    if n_ok:
        print(
            "  %d action categories; %dx%d (%s) at %g fps in %s"
            % (len(s["categories"]), args.size[0], args.size[1], args.resize, args.fps, args.out)
        )
    wall = max(s["wall_s"], 1e-9)
    print(
        "import-videos: %d clips imported, %d skipped; %d frames decoded, %d written in %.1f s "
        "(%.0f frames/s decoded, %.0f frames/s written)"
        % (
            n_ok,
            n_skip,
            s["frames_in"],
            s["frames_out"],
            wall,
            s["frames_in"] / wall,
            s["frames_out"] / wall,
        )
    )
    if n_ok == 0 or (args.strict and n_skip):
        return 1
    return 0


def _size(text: str):
    from clap_ros.sim.render import parse_size

    return parse_size(text)


def register(sub: argparse._SubParsersAction) -> None:
    from clap_ros.data import video_import

    p = sub.add_parser(
        "dataset",
        help="import/export datasets: LeRobot v3.0, folders of human videos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dsub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    q = dsub.add_parser(
        "import-lerobot",
        help="a LeRobot v3.0 dataset directory -> clap_ros dataset",
        description="Convert a local LeRobot v3.0 dataset directory (no hub "
        "download) into a clap_ros training dataset. The last entry "
        "of the state/action vectors is taken as the gripper.",
    )
    q.add_argument("src", type=Path, help="LeRobot v3.0 dataset directory (with meta/info.json)")
    q.add_argument("--out", type=Path, required=True, help="clap_ros dataset directory to create")
    q.add_argument(
        "--robot",
        default=None,
        help="robot name/profile (fr3, panda, ur5e or a YAML path: its joint names are "
        "used, and matched by name when the dataset names its joints); default: "
        "info.json robot_type",
    )
    q.add_argument(
        "--joint-names",
        nargs="+",
        default=None,
        metavar="NAME",
        help="arm joint names (space or comma separated), one per state entry but the "
        "last (the gripper); default: the state feature's names",
    )
    q.add_argument("--state-key", default="observation.state", help="state feature")
    q.add_argument("--action-key", default="action", help="action feature")
    q.add_argument("--crf", type=int, default=18, help="x264 quality of the videos (default 18)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.add_argument(
        "--strict",
        action="store_true",
        help="exit non-zero if any episode was skipped (the others are still imported)",
    )
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_import_lerobot)

    q = dsub.add_parser(
        "export-lerobot",
        help="a clap_ros dataset -> LeRobot v3.0 dataset directory",
        description="Write a clap_ros dataset as a LeRobot v3.0 dataset directory "
        "(docs/DATASET.md section 4).",
    )
    q.add_argument("src", type=Path, help="clap_ros dataset directory")
    q.add_argument("--out", type=Path, required=True, help="LeRobot dataset directory to create")
    q.add_argument("--crf", type=int, default=18, help="x264 quality of the videos (default 18)")
    q.add_argument(
        "--gop",
        type=int,
        default=2,
        help="keyframe interval in frames (LeRobot's default 2: fast random access; "
        "0: x264's default)",
    )
    q.add_argument(
        "--data-file-size-mb",
        type=float,
        default=100.0,
        help="start a new data parquet file after this many MB (default 100)",
    )
    q.add_argument(
        "--video-file-size-mb",
        type=float,
        default=500.0,
        help="start a new mp4 file after this many MB (default 500)",
    )
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_export_lerobot)

    q = dsub.add_parser(
        "import-videos",
        help="a folder of video clips (+ labels) -> human videos",
        description=video_import.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument(
        "src", type=Path, help="folder searched recursively for video files (or one file)"
    )
    q.add_argument("--out", type=Path, required=True, help="human-video directory to create")
    q.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="labels: JSON (Something-Something style) or CSV file,label,instruction",
    )
    q.add_argument("--fps", type=float, default=15.0, help="output frame rate (default 15)")
    q.add_argument(
        "--size", type=_size, default=(128, 128), help="output HxW, both even (default 128x128)"
    )
    q.add_argument(
        "--resize",
        choices=("crop", "pad", "stretch"),
        default="crop",
        help="crop: scale to cover + centre crop (default); pad: fit + black borders; "
        "stretch: ignore the aspect ratio",
    )
    q.add_argument("--crf", type=int, default=20, help="x264 quality (default 20)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.add_argument(
        "--strict",
        action="store_true",
        help="exit non-zero if any clip was skipped (the others are still imported)",
    )
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_import_videos)
