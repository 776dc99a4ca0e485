"""camera_info() must describe the MuJoCo camera: a known world point projected with K and the
camera pose lands where the renderer draws a small marker placed there."""

import math

import numpy as np
import pytest

from clap_ros.sim import SimWorld


def _marker_pixel(world, camera, point):
    """Centroid (u, v) of the pixels that change when the reach marker is put at ``point``."""
    import mujoco

    body = world._objects["target"]["body"]
    # The marker's shadow would also change pixels and pull the centroid off the marker.
    world.model.light_castshadow[:] = 0
    world.model.body_pos[body] = (0.0, 0.0, -5.0)
    mujoco.mj_forward(world.model, world.data)
    without = world.render(camera).astype(np.int32)
    world.model.body_pos[body] = point
    mujoco.mj_forward(world.model, world.data)
    with_marker = world.render(camera).astype(np.int32)
    mask = np.abs(with_marker - without).sum(axis=2) > 30
    assert mask.sum() > 10, "marker not visible"
    v, u = np.nonzero(mask)
    return np.array([u.mean(), v.mean()])


def _project(world, camera, point):
    info = world.camera_info(camera)
    T = np.linalg.inv(world.camera_pose(camera))
    pc = T[:3, :3] @ np.asarray(point) + T[:3, 3]
    assert pc[2] > 0, "point behind the camera"
    uvw = info["P"] @ np.append(pc, 1.0)
    return uvw[:2] / uvw[2]


def test_camera_info_fields_follow_the_mujoco_camera():
    world = SimWorld(robot="fr3", task="reach", seed=0, image_size=(120, 160))
    info = world.camera_info("scene")
    assert (info["width"], info["height"]) == (160, 120)
    fovy = world.model.cam_fovy[world.model.camera("scene").id]
    f = 120 / (2 * math.tan(math.radians(fovy) / 2))
    np.testing.assert_allclose(info["K"], [[f, 0, 79.5], [0, f, 59.5], [0, 0, 1]])
    np.testing.assert_array_equal(info["D"], np.zeros(5))
    np.testing.assert_array_equal(info["R"], np.eye(3))
    np.testing.assert_allclose(info["P"][:, :3], info["K"])
    assert info["distortion_model"] == "plumb_bob"
    assert info["frame_id"] == "scene_camera_optical_frame"
    with pytest.raises(ValueError):
        world.camera_info("wrist")  # no wrist camera in this world


@pytest.mark.parametrize("randomize", [False, True])
def test_projection_with_K_hits_the_rendered_marker(randomize):
    # Non-square image so a swapped width/height or fx/fy would show, and a tolerance tight enough
    # to tell (w - 1) / 2 from w / 2 for the principal point; randomised worlds add
    # camera jitter, which camera_pose() must include.
    world = SimWorld(robot="fr3", task="reach", seed=3, randomize=randomize, image_size=(240, 320))
    rng = np.random.default_rng(0)
    for _ in range(4):
        point = np.array([rng.uniform(0.3, 0.7), rng.uniform(-0.25, 0.25), rng.uniform(0.05, 0.3)])
        measured = _marker_pixel(world, "scene", point)
        predicted = _project(world, "scene", point)
        assert np.linalg.norm(measured - predicted) < 0.4, (measured, predicted)


def test_wrist_camera_intrinsics_and_pose():
    world = SimWorld(
        robot="ur5e", task="reach", seed=0, randomize=False, image_size=(96, 128), wrist_camera=True
    )
    tcp = world.tcp_pose()
    # A point 10 cm below the fingertips, slightly off-centre, is in the wrist camera's view.
    point = tcp[:3, 3] + tcp[:3, :3] @ np.array([0.02, -0.015, 0.1])
    measured = _marker_pixel(world, "wrist", point)
    predicted = _project(world, "wrist", point)
    assert np.linalg.norm(measured - predicted) < 0.4, (measured, predicted)
    assert world.camera_info("wrist")["frame_id"] == "wrist_camera_optical_frame"
