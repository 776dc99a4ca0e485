"""Calibration against MuJoCo ground truth: a board of known square size rendered by a camera of
known intrinsics (fovy) at known poses; for hand-eye, a camera at a known offset on the FR3 flange
(forward kinematics of the robot profile) or a fixed camera looking at a board on the flange.
Also the camera_info YAML round trip, the CLI on folders and a bag made here, and its errors."""

import argparse
import json
import math

import cv2
import numpy as np
import pytest
import yaml

from clap_ros.calibration import cli as calib_cli
from clap_ros.calibration.board import Board, CalibrationError, aruco_available
from clap_ros.calibration.handeye import (
    METHODS,
    board_pose,
    calibrate_hand_eye,
    inv_T,
    make_T,
    rotation_angle_deg,
)
from clap_ros.calibration.intrinsics import calibrate_intrinsics
from clap_ros.calibration.simboard import (
    BoardScene,
    hand_eye_views,
    intrinsics_views,
    rot_axis_angle,
)
from clap_ros.calibration.sources import pair_with_joint_states
from clap_ros.calibration.yaml_io import (
    load_joint_poses,
    matrix_from_quat_xyzw,
    quat_xyzw_from_matrix,
    read_transform,
    write_camera_info,
)
from clap_ros.inference.preprocess import Calibration
from clap_ros.robots import load_profile

SIZE = (480, 640)  # (height, width)
FOVY = 55.0  # the sim scene camera's field of view
BOARD = Board("chessboard", cols=10, rows=7, square=0.025)


def run_cli(*argv) -> int:
    parser = argparse.ArgumentParser(prog="clap-ros")
    calib_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["calibrate", *map(str, argv)])
    return int(args.func(args))


@pytest.fixture(scope="module")
def scene():
    with BoardScene(BOARD, SIZE, FOVY) as s:
        yield s


@pytest.fixture(scope="module")
def intrinsics(scene):
    views = intrinsics_views(scene, 15, seed=3)
    frames = [("view_%02d" % k, scene.render(inv_T(T))) for k, T in enumerate(views)]
    return calibrate_intrinsics(frames, BOARD)


def test_intrinsics_match_the_mujoco_camera(scene, intrinsics):
    r, K = intrinsics, scene.K
    print(
        "\nintrinsics: rms %.3f px, fx %.2f fy %.2f (true %.2f), cx %.2f cy %.2f (true %.1f %.1f)"
        % (r.rms_px, r.K[0, 0], r.K[1, 1], K[0, 0], r.K[0, 2], r.K[1, 2], K[0, 2], K[1, 2])
    )
    assert len(r.views) == 15 and not r.skipped
    assert r.rms_px < 1.0 and max(r.per_view_rms_px) < 1.0
    assert abs(r.K[0, 0] / K[0, 0] - 1) < 0.01 and abs(r.K[1, 1] / K[1, 1] - 1) < 0.01
    assert abs(r.K[0, 2] - K[0, 2]) < 3.0 and abs(r.K[1, 2] - K[1, 2]) < 3.0
    # The MuJoCo camera has no distortion: undistorting a point barely moves it anywhere.
    grid = np.stack(np.meshgrid(np.linspace(20, 620, 7), np.linspace(20, 460, 5)), -1)
    grid = grid.reshape(-1, 1, 2).astype(np.float64)
    und = cv2.undistortPoints(grid, r.K, r.D, P=r.K).reshape(-1, 2)
    assert np.abs(und - grid.reshape(-1, 2)).max() < 1.5
    assert r.coverage > 0.5 and r.warnings == []


@pytest.mark.skipif(not aruco_available(), reason="cv2.aruco is not available")
def test_charuco_intrinsics_match_the_mujoco_camera():
    board = Board("charuco", cols=8, rows=6, square=0.03)
    with BoardScene(board, SIZE, FOVY) as s:
        views = intrinsics_views(s, 12, seed=5)
        frames = [("v%d" % k, s.render(inv_T(T))) for k, T in enumerate(views)]
        r = calibrate_intrinsics(frames, board)
        K = s.K
    print("\ncharuco: rms %.3f px, fx %.2f (true %.2f)" % (r.rms_px, r.K[0, 0], K[0, 0]))
    assert r.rms_px < 1.0 and abs(r.K[0, 0] / K[0, 0] - 1) < 0.01
    assert abs(r.K[1, 1] / K[1, 1] - 1) < 0.01


@pytest.mark.parametrize("setup", ["eye_in_hand", "eye_to_hand"])
@pytest.mark.parametrize("method", ["park", "shah"])
def test_hand_eye_recovers_the_true_transform(scene, intrinsics, setup, method):
    profile = load_profile("fr3")
    sc = hand_eye_views(scene, profile, setup, 12, seed=7)
    F, C = [], []
    for q, cam, bd in zip(sc.joint_positions, sc.base_T_cam, sc.base_T_board):
        det = BOARD.detect(scene.render(cam, bd))
        assert det is not None
        T, err = board_pose(det, intrinsics.K, intrinsics.D)  # the calibrated intrinsics
        assert err < 1.0
        F.append(profile.flange_pose(q))
        C.append(T)
    res = calibrate_hand_eye(F, C, setup, method)
    dt_mm = 1000 * np.linalg.norm(res.T[:3, 3] - sc.X[:3, 3])
    dr_deg = rotation_angle_deg(res.T[:3, :3].T @ sc.X[:3, :3])
    print(
        "\n%s %s: error %.3f mm %.4f deg; residual rms %.3f mm %.4f deg"
        % (setup, method, dt_mm, dr_deg, res.rms_translation_mm, res.rms_rotation_deg)
    )
    assert dt_mm < 2.0 and dr_deg < 0.5
    assert res.rms_translation_mm < 1.0 and res.rms_rotation_deg < 0.2
    assert res.rotation_spread_deg > 15 and res.warnings == []


def test_every_opencv_method_is_exact_on_exact_poses():
    rng = np.random.default_rng(0)

    def rand_T():
        return make_T(cv2.Rodrigues(rng.normal(size=3))[0], rng.normal(size=3) * 0.3)

    X, B = rand_T(), rand_T()
    F = [rand_T() for _ in range(8)]
    eih = [inv_T(X) @ inv_T(f) @ B for f in F]  # base_T_flange X cam_T_board = base_T_board
    eth = [inv_T(X) @ f @ B for f in F]  # inv(base_T_flange) X cam_T_board = const
    for m in METHODS:
        for setup, C in (("eye_in_hand", eih), ("eye_to_hand", eth)):
            res = calibrate_hand_eye(F, C, setup, m)
            assert np.abs(res.T - X).max() < 1e-6, (setup, m)
            assert max(res.translation_residual_mm) < 1e-6
    auto = calibrate_hand_eye(F, eih, "eye_in_hand", "auto")
    assert set(auto.alternatives) == set(METHODS) and auto.method in METHODS
    with pytest.raises(CalibrationError):
        calibrate_hand_eye(F[:2], eih[:2], "eye_in_hand", "park")


def test_chessboard_corner_order_survives_a_half_turn(scene):
    img = scene.render(inv_T(make_T(np.eye(3), [-0.1, -0.06, 0.45])))
    a = BOARD.detect(img)
    b = BOARD.detect(cv2.rotate(img, cv2.ROTATE_180))
    h, w = img.shape[:2]
    rotated = np.stack([w - 1 - b.image_points[:, 0], h - 1 - b.image_points[:, 1]], 1)
    assert np.abs(rotated - a.image_points).max() < 0.5


def test_camera_info_yaml_round_trip_into_calibration(tmp_path, intrinsics):
    r = intrinsics
    path = write_camera_info(tmp_path / "cam.yaml", r.K, r.D, r.width, r.height, "scene_camera")
    data = yaml.safe_load(path.read_text())
    for key, (rows, cols) in (
        ("camera_matrix", (3, 3)),
        ("rectification_matrix", (3, 3)),
        ("projection_matrix", (3, 4)),
        ("distortion_coefficients", (1, 5)),
    ):
        assert data[key]["rows"] == rows and data[key]["cols"] == cols
        assert len(data[key]["data"]) == rows * cols
    assert data["camera_name"] == "scene_camera" and data["distortion_model"] == "plumb_bob"
    assert (data["image_width"], data["image_height"]) == (640, 480)
    cal = Calibration.from_camera_info(data)  # what the encoder node's calibration_file loads
    assert (cal.width, cal.height) == (640, 480)
    np.testing.assert_allclose(cal.K, r.K, rtol=1e-12)
    np.testing.assert_allclose(cal.D, r.D, rtol=1e-12)


def test_quaternion_helpers_round_trip():
    for axis, ang in (
        ([1, 0, 0], 0.3),
        ([0, 1, 1], 2.0),
        ([1, -2, 0.5], math.pi - 1e-3),
        ([0, 0, 1], math.pi),
    ):
        R = rot_axis_angle(axis, ang)
        q = quat_xyzw_from_matrix(R)
        assert abs(np.linalg.norm(q) - 1) < 1e-12 and q[3] >= 0
        np.testing.assert_allclose(matrix_from_quat_xyzw(q), R, atol=1e-9)


def test_coverage_and_view_count_warnings(scene):
    far = 0.9  # board small in the image centre
    poses = [
        make_T(rot_axis_angle(ax, math.radians(25)), [-0.1125, -0.075, far])
        for ax in ([1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [1, 1, 0])
    ]
    frames = [("v%d" % k, scene.render(inv_T(T))) for k, T in enumerate(poses)]
    r = calibrate_intrinsics(frames, BOARD)
    text = " ".join(r.warnings)
    assert r.coverage < 0.5 and "poor coverage" in text and "few views" in text


def _write_images(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k, img in enumerate(images):
        names.append("img_%03d.png" % k)
        cv2.imwrite(str(folder / names[-1]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return names


@pytest.fixture(scope="module")
def cli_data(scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("calib_cli")
    views = intrinsics_views(scene, 12, seed=11)
    _write_images(root / "intr", [scene.render(inv_T(T)) for T in views])
    profile = load_profile("fr3")
    sc = hand_eye_views(scene, profile, "eye_to_hand", 10, seed=13)
    names = _write_images(
        root / "he", [scene.render(c, b) for c, b in zip(sc.base_T_cam, sc.base_T_board)]
    )
    poses = [
        {"image": n, "joints": dict(zip(profile.joint_names, map(float, q)))}
        for n, q in zip(names, sc.joint_positions)
    ]
    (root / "poses.yaml").write_text(yaml.safe_dump(poses))
    return root, sc, profile


def test_cli_intrinsics_then_handeye_on_folders(cli_data, scene, capsys):
    root, sc, profile = cli_data
    cam = root / "out" / "cam.yaml"
    assert (
        run_cli(
            "intrinsics",
            "--images",
            root / "intr",
            "--squares",
            "10x7",
            "--square-size",
            0.025,
            "--camera-name",
            "sim_scene",
            "--out",
            cam,
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "RMS reprojection error" in out and "wrote" in out
    cal = Calibration.from_camera_info(yaml.safe_load(cam.read_text()))
    assert abs(cal.K[0, 0] / scene.K[0, 0] - 1) < 0.01
    he = root / "out" / "he.yaml"
    assert (
        run_cli(
            "handeye",
            "--setup",
            "eye_to_hand",
            "--robot",
            "fr3",
            "--camera-info",
            cam,
            "--images",
            root / "he",
            "--poses",
            root / "poses.yaml",
            "--square-size",
            0.025,
            "--out",
            he,
        )
        == 0
    )
    doc = yaml.safe_load(he.read_text())
    assert doc["transform"]["parent_frame"] == "fr3_base"
    assert doc["transform"]["child_frame"] == "camera_optical_frame"
    assert set(doc["transform"]["rotation"]) == {"x", "y", "z", "w"}
    T = read_transform(doc)
    assert 1000 * np.linalg.norm(T[:3, 3] - sc.X[:3, 3]) < 2.0
    assert rotation_angle_deg(T[:3, :3].T @ sc.X[:3, :3]) < 0.5
    assert len(doc["residuals"]["translation_mm"]["per_view"]) == 10
    assert doc["residuals"]["translation_mm"]["rms"] < 1.0
    # quaternion and matrix agree
    np.testing.assert_allclose(
        matrix_from_quat_xyzw([doc["transform"]["rotation"][k] for k in "xyzw"]),
        T[:3, :3],
        atol=1e-9,
    )


def test_cli_handeye_from_a_bag(cli_data, tmp_path):
    from clap_ros.data.bags import BagWriter, image_msg, joint_state_msg

    root, sc, profile = cli_data
    cam = tmp_path / "true.yaml"
    write_camera_info(cam, BoardSceneK(), np.zeros(5), 640, 480)
    bag = tmp_path / "bag"
    names = sorted(p.name for p in (root / "he").iterdir())
    names_js = list(profile.joint_names) + ["fr3_finger_joint1"]
    with BagWriter(bag) as w:
        t = 1_000_000_000
        for name, q in zip(names, sc.joint_positions):
            for k in range(5):  # arm still for 0.4 s around the frame
                w.write(
                    "/joint_states",
                    t + k * 100_000_000,
                    joint_state_msg(names_js, list(q) + [0.04], t + k * 100_000_000),
                )
            img = cv2.cvtColor(cv2.imread(str(root / "he" / name)), cv2.COLOR_BGR2RGB)
            w.write("/camera/image_raw", t + 210_000_000, image_msg(img, t + 210_000_000))
            t += 2_000_000_000  # then it moves on
    out = tmp_path / "he.yaml"
    assert (
        run_cli(
            "handeye", "--setup", "eye_to_hand", "--camera-info", cam, "--bag", bag, "--out", out
        )
        == 0
    )
    T = read_transform(out)
    doc = yaml.safe_load(out.read_text())
    assert len(doc["views"]) == len(names)
    assert 1000 * np.linalg.norm(T[:3, 3] - sc.X[:3, 3]) < 2.0


def BoardSceneK():
    from clap_ros.calibration.simboard import camera_matrix

    return camera_matrix(SIZE[1], SIZE[0], FOVY)


def test_pairing_keeps_still_distinct_poses():
    js_t = np.arange(0, 10_000_000_000, 100_000_000)  # 10 Hz for 10 s
    q = np.zeros((len(js_t), 2))
    q[js_t >= 3e9, 0] = 0.5  # jumps at 3 s (moving between 2.9 and 3.0)
    q[(js_t >= 2.9e9) & (js_t < 3e9), 0] = 0.25
    img_t = [1.0e9, 1.5e9, 2.95e9, 5.0e9, 9.5e9, 20e9]  # still, same pose, moving, new, same, late
    pairs = pair_with_joint_states(img_t, js_t, q, max_dt=0.05, max_speed=0.02, min_change=0.02)
    assert [i for i, _ in pairs] == [0, 3]


def test_poses_file_shapes(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(
        json.dumps(
            {
                "poses": [
                    {"image": "a.png", "name": ["j1", "j2"], "position": [0.1, 0.2]},
                    {"image": "b.png", "joints": {"j1": 1, "j2": 2}},
                ]
            }
        )
    )
    poses = load_joint_poses(p)
    assert poses[0] == {"image": "a.png", "joints": {"j1": 0.1, "j2": 0.2}}
    assert poses[1]["joints"] == {"j1": 1.0, "j2": 2.0}
    q = tmp_path / "q.yaml"
    q.write_text("- {j1: 0.5, j2: 0.25}\n")
    assert load_joint_poses(q) == [{"image": None, "joints": {"j1": 0.5, "j2": 0.25}}]


def test_cli_render_board_prints_a_detectable_board(tmp_path, capsys):
    out = tmp_path / "board.png"
    assert (
        run_cli(
            "render-board", "--squares", "9x6", "--square-size", 0.03, "--dpi", 150, "--out", out
        )
        == 0
    )
    img = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    px = round(0.03 / 0.0254 * 150)
    assert img.shape == (8 * px, 11 * px)  # squares plus a one-square margin
    det = Board("chessboard", 9, 6, 0.03).detect(img)
    assert det is not None and len(det) == 40
    assert "mm" in capsys.readouterr().out


def test_cli_errors_and_exit_codes(cli_data, tmp_path, capsys):
    root, sc, profile = cli_data
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("intrinsics", "--images", empty) == 2
    assert "no images" in capsys.readouterr().err
    assert run_cli("intrinsics", "--images", tmp_path / "missing") == 2
    blank = tmp_path / "blank"
    _write_images(blank, [np.full((480, 640, 3), 128, np.uint8)] * 3)
    assert run_cli("intrinsics", "--images", blank, "--out", tmp_path / "x.yaml") == 1
    assert "not found in any of the 3 images" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()

    cam = tmp_path / "cam.yaml"
    write_camera_info(cam, BoardSceneK(), np.zeros(5), 640, 480)
    common = ["handeye", "--setup", "eye_in_hand", "--camera-info", cam, "--images", root / "he"]
    # counts do not match (entries without image names pair by order)
    few = tmp_path / "few.yaml"
    few.write_text(yaml.safe_dump([dict(zip(profile.joint_names, [0.0] * 7))] * 3))
    assert run_cli(*common, "--poses", few) == 2
    assert "10 images" in capsys.readouterr().err
    # unknown joint names
    bad = yaml.safe_load((root / "poses.yaml").read_text())
    bad[4]["joints"]["elbow_joint"] = bad[4]["joints"].pop("fr3_joint4")
    badp = tmp_path / "bad.yaml"
    badp.write_text(yaml.safe_dump(bad))
    assert run_cli(*common, "--poses", badp) == 2
    err = capsys.readouterr().err
    assert "unknown ['elbow_joint']" in err and "missing ['fr3_joint4']" in err
    assert run_cli(*common) == 2  # --images without --poses
    assert "--poses" in capsys.readouterr().err
    assert (
        run_cli(
            "handeye",
            "--setup",
            "eye_in_hand",
            "--camera-info",
            tmp_path / "nope.yaml",
            "--images",
            root / "he",
            "--poses",
            root / "poses.yaml",
        )
        == 2
    )
    assert run_cli(*common, "--poses", root / "poses.yaml", "--robot", "nosuchbot") == 2
    # images of another size than the camera_info
    small = tmp_path / "small.yaml"
    write_camera_info(small, BoardSceneK(), np.zeros(5), 320, 240)
    assert (
        run_cli(
            "handeye",
            "--setup",
            "eye_in_hand",
            "--camera-info",
            small,
            "--images",
            root / "he",
            "--poses",
            root / "poses.yaml",
        )
        == 2
    )
    with pytest.raises(SystemExit) as e:
        run_cli("intrinsics", "--images", root, "--squares", "ten")
    assert e.value.code == 2
    assert run_cli() == 2  # `clap-ros calibrate` alone prints help


def test_calibrate_is_a_clap_ros_subcommand():
    from clap_ros import cli

    assert "clap_ros.calibration.cli" in cli.SUBCOMMAND_MODULES
