"""``clap-ros calibrate {intrinsics,handeye,render-board,sim-views}``.

Exit codes: 0 done (warnings are printed, not fatal); 1 calibration failed (board not found, too few
usable views, solver failure); 2 unusable input (missing folder or file, no images, mismatched
image/pose counts, unknown joint names, bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

CALIBRATE_HELP = """\
Camera calibration; results go to calibration/ (camera_info_manager YAML, hand-eye YAML).

  clap-ros calibrate render-board --squares 10x7 --square-size 0.025 --out board.png
  clap-ros calibrate intrinsics --images shots/ --squares 10x7 --square-size 0.025 \\
      --camera-name wrist_camera                       # -> calibration/wrist_camera.yaml
  clap-ros calibrate intrinsics --bag bags/calib --image-topic /camera/image_raw ...
  clap-ros calibrate handeye --setup eye_in_hand --robot fr3 \\
      --camera-info calibration/wrist_camera.yaml --images shots/ --poses shots/poses.yaml
  clap-ros calibrate handeye --setup eye_to_hand --robot fr3 \\
      --camera-info calibration/camera.yaml \\
      --bag bags/handeye --image-topic /camera/image_raw --joint-states-topic /joint_states
  clap-ros calibrate sim-views --setup eye_in_hand --out /tmp/sim_he   # MuJoCo ground truth

Boards are given in squares (a 10x7 chessboard has 9x6 inner corners). For hand-eye use a
chessboard with one even and one odd count (10x7) or a ChArUco board, so every view's corner
order, hence board pose, is the same.
Exit codes: 0 ok (warnings printed), 1 calibration failed, 2 unusable input.
"""


def _squares(text: str):
    try:
        c, r = text.lower().split("x")
        return int(c), int(r)
    except ValueError:
        raise argparse.ArgumentTypeError("expected COLSxROWS squares, e.g. 10x7, got %r" % text)


def _add_board_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("board")
    g.add_argument(
        "--board",
        choices=("chessboard", "charuco"),
        default="chessboard",
        help="board kind (default chessboard)",
    )
    g.add_argument(
        "--squares",
        type=_squares,
        default=(10, 7),
        metavar="COLSxROWS",
        help="number of squares across x down, not inner corners (default 10x7)",
    )
    g.add_argument(
        "--square-size",
        type=float,
        default=0.025,
        metavar="M",
        help="side of one square in metres, as printed (default 0.025)",
    )
    g.add_argument(
        "--marker-size",
        type=float,
        default=0.0,
        metavar="M",
        help="ChArUco marker side in metres (default 0.75 x square size)",
    )
    g.add_argument(
        "--dictionary",
        default="DICT_5X5_100",
        help="ChArUco ArUco dictionary (default DICT_5X5_100)",
    )


def _board(args):
    from clap_ros.calibration.board import Board

    return Board(
        kind=args.board,
        cols=args.squares[0],
        rows=args.squares[1],
        square=args.square_size,
        marker=args.marker_size,
        dictionary=args.dictionary,
    )


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "calibrate",
        help="camera intrinsics and hand-eye calibration",
        description=CALIBRATE_HELP,
        formatter_class=fmt,
    )
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    cs = p.add_subparsers(dest="calibrate_command", metavar="STEP")

    pi = cs.add_parser(
        "intrinsics",
        formatter_class=fmt,
        help="camera matrix + distortion from board images",
        description="Calibrate a camera's intrinsics from board images (a folder, or an image "
        "topic of a rosbag2 bag) and write a camera_info_manager YAML that ROS camera "
        "drivers and the encoder node's calibration_file parameter load.\n\n"
        "  clap-ros calibrate intrinsics --images shots/ --squares 10x7 "
        "--square-size 0.025 --camera-name scene_camera\n"
        "  clap-ros calibrate intrinsics --bag bags/calib --image-topic "
        "/camera/image_raw --every 5\n\n"
        "Reports the RMS reprojection error and warns on poor coverage (corners over "
        "< 50%% of the image) or few views.",
    )
    src = pi.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="folder of board images (png/jpg/...)")
    src.add_argument("--bag", metavar="BAG", help="rosbag2 bag (directory or .mcap)")
    pi.add_argument(
        "--image-topic",
        default="/camera/image_raw",
        help="image topic in --bag (Image or CompressedImage)",
    )
    pi.add_argument("--every", type=int, default=1, help="use every N-th bag frame (default 1)")
    pi.add_argument("--camera-name", default="camera", help="camera_name in the YAML")
    pi.add_argument("--out", help="output YAML (default calibration/<camera-name>.yaml)")
    pi.add_argument(
        "--distortion-model",
        choices=("plumb_bob", "rational_polynomial"),
        default="plumb_bob",
        help="5 (plumb_bob) or 8 coefficients",
    )
    pi.add_argument(
        "--max-views",
        type=int,
        default=40,
        help="at most this many views, evenly spread (0 = all; default 40)",
    )
    pi.add_argument(
        "--min-coverage",
        type=float,
        default=0.5,
        help="warn below this fraction of the image covered by corners (default 0.5)",
    )
    _add_board_args(pi)
    pi.set_defaults(func=_run_intrinsics)

    ph = cs.add_parser(
        "handeye",
        formatter_class=fmt,
        help="camera pose on the flange or in the robot base",
        description="Hand-eye calibration. Robot poses come from joint positions through the "
        "robot profile's forward kinematics, board poses from the images (solvePnP "
        "with --camera-info).\n"
        "  eye_in_hand: camera on the flange -> flange_T_camera\n"
        "  eye_to_hand: fixed camera, board on the flange -> base_T_camera\n\n"
        "  clap-ros calibrate handeye --setup eye_in_hand --robot fr3 --camera-info "
        "calibration/wrist.yaml --images shots/ --poses shots/poses.yaml\n"
        "  clap-ros calibrate handeye --setup eye_to_hand --robot fr3 --camera-info "
        "calibration/camera.yaml --bag bags/he\n\n"
        "poses file (YAML or JSON), one entry per image:\n"
        "  - {image: img_000.png, joints: {fr3_joint1: 0.0, ..., fr3_joint7: 0.78}}\n"
        "  - {image: img_001.png, name: [fr3_joint1, ...], position: [0.1, ...]}\n"
        "Entries without 'image' pair with the images in sorted order (counts must "
        "match). From a bag, each frame pairs with the nearest joint_states message "
        "and is used only while the arm stands still.\n"
        "Residuals: spread of the board pose (base or flange frame) over the views.",
    )
    ph.add_argument("--setup", choices=("eye_in_hand", "eye_to_hand"), required=True)
    ph.add_argument("--robot", default="fr3", help="robot profile name or YAML (default fr3)")
    ph.add_argument(
        "--camera-info",
        required=True,
        metavar="YAML",
        help="camera_info YAML of the camera (from 'calibrate intrinsics')",
    )
    src = ph.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="folder of board images")
    src.add_argument("--bag", metavar="BAG", help="rosbag2 bag with images and joint states")
    ph.add_argument("--poses", metavar="FILE", help="joint positions per image (with --images)")
    ph.add_argument("--image-topic", default="/camera/image_raw")
    ph.add_argument(
        "--joint-states-topic", default=None, help="default: the profile's joint_states topic"
    )
    ph.add_argument(
        "--max-dt",
        type=float,
        default=0.05,
        help="max image/joint_states stamp difference in s (default 0.05)",
    )
    ph.add_argument(
        "--max-speed",
        type=float,
        default=0.02,
        help="skip frames while any joint moves faster than this, rad/s (0.02)",
    )
    ph.add_argument(
        "--min-change",
        type=float,
        default=0.02,
        help="skip frames whose pose is within this many rad of the last one kept",
    )
    ph.add_argument(
        "--method",
        default="park",
        choices=("tsai", "park", "horaud", "andreff", "daniilidis", "shah", "li", "auto"),
        help="OpenCV method: calibrateHandEye (tsai, park, horaud, andreff, "
        "daniilidis) or calibrateRobotWorldHandEye (shah, li); auto = all, keep "
        "the smallest residual (default park)",
    )
    ph.add_argument(
        "--base-frame", default=None, help="frame name of the robot base (default <robot>_base)"
    )
    ph.add_argument(
        "--flange-frame",
        default=None,
        help="frame name of the profile's flange "
        "(RobotProfile.flange_pose; default <robot>_flange)",
    )
    ph.add_argument(
        "--camera-frame",
        default="camera_optical_frame",
        help="camera optical frame name (z forward, x right, y down)",
    )
    ph.add_argument("--out", help="output YAML (default calibration/handeye_<setup>.yaml)")
    _add_board_args(ph)
    ph.set_defaults(func=_run_handeye)

    pr = cs.add_parser(
        "render-board",
        formatter_class=fmt,
        help="write a printable board PNG",
        description="Write the board as a PNG to print at the given DPI "
        "(check the printed square size with a ruler).\n\n"
        "  clap-ros calibrate render-board --squares 10x7 "
        "--square-size 0.025 --dpi 300 --out board.png",
    )
    pr.add_argument("--out", required=True, help="PNG path")
    pr.add_argument("--dpi", type=float, default=300.0, help="print resolution (default 300)")
    _add_board_args(pr)
    pr.set_defaults(func=_run_render_board)

    ps = cs.add_parser(
        "sim-views",
        formatter_class=fmt,
        help="MuJoCo board views with known ground truth",
        description="Render a board from known camera poses in MuJoCo and write the images, "
        "the true camera_info, and for hand-eye the joint positions (poses.yaml) and "
        "the true transform (ground_truth.yaml): input for the other steps with an "
        "answer to check against.\n\n"
        "  clap-ros calibrate sim-views --setup intrinsics --out /tmp/sim_in\n"
        "  clap-ros calibrate intrinsics --images /tmp/sim_in/images "
        "--square-size 0.03\n",
    )
    ps.add_argument(
        "--setup", choices=("intrinsics", "eye_in_hand", "eye_to_hand"), default="intrinsics"
    )
    ps.add_argument("--out", required=True, help="output folder (images/ + YAML files)")
    ps.add_argument("--views", type=int, default=15)
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--robot", default="fr3", help="robot profile for hand-eye (default fr3)")
    ps.add_argument("--width", type=int, default=640)
    ps.add_argument("--height", type=int, default=480)
    ps.add_argument(
        "--fovy",
        type=float,
        default=55.0,
        help="vertical field of view, degrees (default 55, the sim scene camera)",
    )
    _add_board_args(ps)
    ps.set_defaults(func=_run_sim_views)


# --- runners -------------------------------------------------------------------------------------
def _guard(fn):
    """Map the calibration errors to exit codes 1 / 2 with a one-line message."""

    def run(args) -> int:
        from clap_ros.calibration.board import CalibrationError, CalibrationInputError
        from clap_ros.data.bags import BagError
        from clap_ros.robots import ProfileError

        try:
            return fn(args)
        except CalibrationError as e:
            print("calibrate: %s" % e, file=sys.stderr)
            return 1
        except (CalibrationInputError, ProfileError, BagError) as e:
            print("calibrate: %s" % e, file=sys.stderr)
            return 2

    run.__name__ = fn.__name__
    return run


def _warn(warnings: List[str]) -> None:
    for w in warnings:
        print("WARNING: %s" % w, file=sys.stderr)


@_guard
def _run_intrinsics(args) -> int:
    from clap_ros.calibration.intrinsics import calibrate_intrinsics
    from clap_ros.calibration.sources import images_from_bag, images_from_folder
    from clap_ros.calibration.yaml_io import write_camera_info

    board = _board(args)
    if args.images:
        frames = images_from_folder(args.images)
        source = str(args.images)
    else:
        frames = [(n, img) for n, img, _ in images_from_bag(args.bag, args.image_topic, args.every)]
        source = "%s %s" % (args.bag, args.image_topic)
        if not frames:
            raise _input_error("no images on %s in %s" % (args.image_topic, args.bag))
    res = calibrate_intrinsics(
        frames,
        board,
        args.distortion_model,
        max_views=args.max_views,
        min_coverage=args.min_coverage,
    )
    out = Path(args.out or Path("calibration") / ("%s.yaml" % args.camera_name))
    header = (
        "clap-ros calibrate intrinsics: %d views from %s, %s board %dx%d squares of %g m\n"
        "RMS reprojection error %.3f px, coverage %.0f%%"
        % (
            len(res.views),
            source,
            board.kind,
            board.cols,
            board.rows,
            board.square,
            res.rms_px,
            100 * res.coverage,
        )
    )
    write_camera_info(
        out,
        res.K,
        res.D,
        res.width,
        res.height,
        args.camera_name,
        res.distortion_model,
        header=header,
    )
    print(res.summary())
    if res.skipped:
        print(
            "board not found in %d image(s): %s"
            % (
                len(res.skipped),
                ", ".join(res.skipped[:10]) + (" ..." if len(res.skipped) > 10 else ""),
            )
        )
    _warn(res.warnings)
    print("wrote %s" % out)
    return 0


def _input_error(msg: str):
    from clap_ros.calibration.board import CalibrationInputError

    return CalibrationInputError(msg)


def _handeye_views(args, profile):
    """(names, images, joint vectors) for hand-eye from --images/--poses or --bag."""
    import numpy as np

    from clap_ros.calibration.sources import (
        image_paths,
        images_from_bag,
        joint_states_from_bag,
        joint_vector,
        pair_with_joint_states,
        read_image,
    )
    from clap_ros.calibration.yaml_io import load_joint_poses

    if args.images:
        if not args.poses:
            raise _input_error("--images needs --poses (joint positions per image)")
        paths = image_paths(args.images)
        poses = load_joint_poses(args.poses)
        named = [p for p in poses if p["image"] is not None]
        if named and len(named) != len(poses):
            raise _input_error(
                "poses file %s: give 'image' for every entry or for none" % args.poses
            )
        by_name = {p.name: p for p in paths}
        if named:
            missing = [p["image"] for p in poses if Path(p["image"]).name not in by_name]
            if missing:
                raise _input_error(
                    "poses file %s names images not in %s: %s"
                    % (args.poses, args.images, ", ".join(missing[:5]))
                )
            pairs = [(by_name[Path(p["image"]).name], p) for p in poses]
        else:
            if len(poses) != len(paths):
                raise _input_error(
                    "%d images in %s but %d poses in %s: counts must match (or "
                    "name the image in each pose entry)"
                    % (len(paths), args.images, len(poses), args.poses)
                )
            pairs = list(zip(paths, poses))
        qs = [joint_vector(profile, p["joints"], "pose for %s" % path.name) for path, p in pairs]
        return [path.name for path, _ in pairs], [read_image(path) for path, _ in pairs], qs
    topic = args.joint_states_topic or profile.driver.joint_states_topic
    frames = images_from_bag(args.bag, args.image_topic)
    stamps, names, positions = joint_states_from_bag(args.bag, topic)
    q_all = np.array(
        [
            joint_vector(profile, dict(zip(n, p)), "%s message %d" % (topic, k), allow_unknown=True)
            for k, (n, p) in enumerate(zip(names, positions))
        ]
    )
    pairs = pair_with_joint_states(
        [t for _, _, t in frames], stamps, q_all, args.max_dt, args.max_speed, args.min_change
    )
    if not pairs:
        raise _input_error(
            "no image on %s has a joint_states message within %g s while the arm "
            "stands still (%d images, %d joint states)"
            % (args.image_topic, args.max_dt, len(frames), len(stamps))
        )
    print(
        "%d of %d frames paired with %s (arm still, distinct poses)"
        % (len(pairs), len(frames), topic)
    )
    return (
        [frames[i][0] for i, _ in pairs],
        [frames[i][1] for i, _ in pairs],
        [q_all[j] for _, j in pairs],
    )


@_guard
def _run_handeye(args) -> int:
    import numpy as np

    from clap_ros.calibration.board import CalibrationError
    from clap_ros.calibration.handeye import board_pose, calibrate_hand_eye
    from clap_ros.calibration.yaml_io import read_camera_info, transform_dict, write_yaml
    from clap_ros.robots import load_profile

    board = _board(args)
    profile = load_profile(args.robot)
    cal = read_camera_info(args.camera_info)
    names, images, qs = _handeye_views(args, profile)
    used, F, C, pnp_err, skipped = [], [], [], [], []
    for name, img, q in zip(names, images, qs):
        if (img.shape[1], img.shape[0]) != (cal.width, cal.height):
            raise _input_error(
                "image %s is %dx%d but %s is for %dx%d"
                % (name, img.shape[1], img.shape[0], args.camera_info, cal.width, cal.height)
            )
        det = board.detect(img)
        if det is None:
            skipped.append(name)
            continue
        T, err = board_pose(det, cal.K, cal.D)
        used.append(name)
        F.append(profile.flange_pose(q))
        C.append(T)
        pnp_err.append(err)
    if not used:
        raise CalibrationError(
            "the %s board (%dx%d squares) was not found in any of the %d images"
            % (board.kind, board.cols, board.rows, len(names))
        )
    if skipped:
        print("board not found in %d image(s): %s" % (len(skipped), ", ".join(skipped[:10])))
    res = calibrate_hand_eye(F, C, args.setup, args.method)
    if board.symmetric:
        res.warnings.append(
            "the %dx%d chessboard looks the same after a half turn, so its pose "
            "can flip between views: use one even and one odd square count, or "
            "ChArUco" % (board.cols, board.rows)
        )
    base = args.base_frame or "%s_base" % profile.name
    flange = args.flange_frame or "%s_flange" % profile.name
    parent = flange if args.setup == "eye_in_hand" else base
    board_parent = base if args.setup == "eye_in_hand" else flange
    doc = {
        "setup": args.setup,
        "robot": profile.name,
        "method": res.method,
        "transform": transform_dict(res.T, parent, args.camera_frame),
        "board_transform": transform_dict(res.T_board, board_parent, "calibration_board"),
        "residuals": {
            "translation_mm": {
                "rms": res.rms_translation_mm,
                "max": float(max(res.translation_residual_mm)),
                "per_view": [round(x, 4) for x in res.translation_residual_mm],
            },
            "rotation_deg": {
                "rms": res.rms_rotation_deg,
                "max": float(max(res.rotation_residual_deg)),
                "per_view": [round(x, 5) for x in res.rotation_residual_deg],
            },
            "pnp_reprojection_px": {
                "rms": float(np.sqrt(np.mean(np.square(pnp_err)))),
                "per_view": [round(x, 4) for x in pnp_err],
            },
        },
        "views": used,
        "rotation_spread_deg": res.rotation_spread_deg,
        "alternatives": res.alternatives,
        "camera_info": str(args.camera_info),
        "board": board.describe(),
        "warnings": list(res.warnings),
    }
    out = Path(args.out or Path("calibration") / ("handeye_%s.yaml" % args.setup))
    write_yaml(
        out,
        doc,
        header="clap-ros calibrate handeye: %s (%s <- %s), %d views"
        % (args.setup, parent, args.camera_frame, len(used)),
    )
    print(res.summary())
    _warn(res.warnings)
    print("wrote %s" % out)
    return 0


@_guard
def _run_render_board(args) -> int:
    import cv2

    board = _board(args)
    px = int(round(board.square / 0.0254 * args.dpi))
    img = board.render(px)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), img):
        raise _input_error("cannot write %s" % out)
    h, w = img.shape
    print(
        "wrote %s: %dx%d px, %d px per square; print at %g dpi without scaling = %.1f x %.1f mm"
        % (out, w, h, px, args.dpi, w / args.dpi * 25.4, h / args.dpi * 25.4)
    )
    return 0


@_guard
def _run_sim_views(args) -> int:
    import cv2
    import numpy as np

    from clap_ros.calibration.handeye import inv_T
    from clap_ros.calibration.simboard import BoardScene, hand_eye_views, intrinsics_views
    from clap_ros.calibration.yaml_io import transform_dict, write_camera_info, write_yaml

    board = _board(args)
    out = Path(args.out)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    with BoardScene(board, (args.height, args.width), args.fovy) as scene:
        write_camera_info(
            out / "camera_info_true.yaml",
            scene.K,
            np.zeros(5),
            args.width,
            args.height,
            "sim_camera",
            header="ground truth: MuJoCo camera, fovy %g deg" % args.fovy,
        )
        if args.setup == "intrinsics":
            for k, T in enumerate(intrinsics_views(scene, args.views, args.seed)):
                cv2.imwrite(
                    str(img_dir / ("view_%03d.png" % k)),
                    cv2.cvtColor(scene.render(inv_T(T)), cv2.COLOR_RGB2BGR),
                )
        else:
            from clap_ros.robots import load_profile

            profile = load_profile(args.robot)
            sc = hand_eye_views(scene, profile, args.setup, args.views, args.seed)
            poses = []
            for k, (q, cam, bd) in enumerate(
                zip(sc.joint_positions, sc.base_T_cam, sc.base_T_board)
            ):
                name = "view_%03d.png" % k
                cv2.imwrite(
                    str(img_dir / name), cv2.cvtColor(scene.render(cam, bd), cv2.COLOR_RGB2BGR)
                )
                poses.append(
                    {"image": name, "joints": {n: float(v) for n, v in zip(profile.joint_names, q)}}
                )
            write_yaml(out / "poses.yaml", {"poses": poses})
            parent = (
                "%s_flange" % profile.name
                if args.setup == "eye_in_hand"
                else "%s_base" % profile.name
            )
            write_yaml(
                out / "ground_truth.yaml",
                {
                    "setup": args.setup,
                    "robot": profile.name,
                    "transform": transform_dict(sc.X, parent, "camera_optical_frame"),
                },
            )
    print("wrote %d views to %s" % (args.views, img_dir))
    return 0
