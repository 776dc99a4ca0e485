"""The diagnostic ladder's rung (c) (issue 14): the framed workspace camera, the views the image
policy sees, its ONNX contract and trainer, and the runtime stand-in the direct evaluator uses."""

import json

import numpy as np
import pytest

from clap_ros.eval import vision_policy as vp
from clap_ros.eval.sim_eval import EvalConfig


def test_center_crop_and_bag_of_words():
    views = np.zeros((2, 104, 104, 3), np.uint8)
    views[:, 52, 52] = 255  # at the centre: inside every crop
    views[:, 0, 0] = 255  # in the margin: cut by the centre crop
    x = vp.center_crop(views, 96)
    assert x.shape == (2, 3, 96, 96) and x.dtype == np.float32
    assert x.max() == 1.0 and x[:, :, 48, 48].min() == 1.0 and x.sum() == 2 * 3
    with pytest.raises(ValueError, match="views must be"):
        vp.center_crop(views[:, :90], 96)
    bow = vp.bag_of_words("Reach the PURPLE ball.", ["ball", "blue", "purple", "reach"])
    assert bow.tolist() == [1.0, 0.0, 1.0, 1.0]


def test_workspace_and_wrist_views_show_the_arm_where_it_is_put():
    from clap_ros.sim.expert import ArmExpert
    from clap_ros.sim.world import SimWorld

    w = SimWorld("fr3", "reach", seed=3, wrist_camera=True)
    r = vp.ViewRenderer(w)
    home = r.render()
    assert home.shape == (2, vp.RENDER_PX, vp.RENDER_PX, 3) and home.dtype == np.uint8
    assert not np.array_equal(home[0], home[1])
    tcp0 = w.tcp_position()
    plan = ArmExpert(w).plan()
    q = plan.sample(plan.duration)[0]  # at the reach target, in the middle of the table
    w.set_arm_pose(q)
    np.testing.assert_allclose(w.arm_qpos(), q)
    assert np.linalg.norm(w.tcp_position() - tcp0) > 0.05
    moved = r.render()
    # both views change: the arm moves in the workspace view, the wrist camera moves with it
    for v in range(2):
        changed = np.abs(moved[v].astype(int) - home[v].astype(int)).max(axis=-1) > 30
        assert changed.mean() > 0.01, (v, changed.mean())
    r.close()
    # shadows (a depth cue) are the world's from then on, over resets too
    shaded = vp.ViewRenderer(w, shadows=True)
    w.reset(3)
    w.set_arm_pose(q)
    assert w.shadows and not np.array_equal(shaded.render()[0], moved[0])
    shaded.close()
    with pytest.raises(ValueError, match="wrist camera"):
        vp.ViewRenderer(SimWorld("fr3", "reach", seed=3))


def test_trainer_exports_a_policy_the_runtime_runs(tmp_path):
    from clap_ros.eval.direct_eval import load_runtime
    from clap_ros.robots import load_profile
    from clap_ros.sim.world import SimWorld
    from training.clap_train.vision import VisionConfig, train

    cfg = VisionConfig(
        layouts=3,
        on_path=2,
        perturbed=1,
        steps=4,
        batch=4,
        eval_episodes=0,
        workers=1,
        out=str(tmp_path / "run"),
    )
    s = train(cfg, progress=False)
    assert s["samples"] == 9 and s["chosen_by"].startswith("last step")
    onnx = tmp_path / "run" / "vision.onnx"
    assert onnx.is_file() and (tmp_path / "run" / "curve.png").is_file()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["chosen_step"] == 4

    prof = load_profile("fr3")
    rt = load_runtime("models/default", "cpu", prof.joint_names)
    world = SimWorld("fr3", "reach", seed=0, wrist_camera=True)
    clock = [1.25]
    vr = vp.VisionRuntime(rt, world, "vision:%s" % onnx, lambda: clock[0])
    assert "ball" in vr.vocab and vr.input_px == vp.INPUT_PX
    lat = vr.encode(None)
    state = np.concatenate([world.arm_qpos(), [1.0]])
    chunk = vr.act(lat, None, state)
    b = rt.bundle
    assert chunk.shape == (b.chunk_length, b.action_dim) and np.all(np.isfinite(chunk))
    # act runs on the frame whose time the latent carries, not on a later one
    clock[0] = 2.5
    vr.encode(None)
    np.testing.assert_array_equal(vr.act(lat, None, state), chunk)


def test_vision_policy_is_direct_only_needs_its_file_and_its_metadata(tmp_path):
    import torch

    base = dict(robot="fr3", tasks=("reach",), episodes=1, mode="direct", progress=False)
    with pytest.raises(ValueError, match="--mode direct only"):
        EvalConfig(**{**base, "mode": "ros", "policy": "vision:x.onnx"}).validate()
    with pytest.raises(ValueError, match="not found"):
        EvalConfig(**{**base, "policy": "vision:%s" % (tmp_path / "no.onnx")}).validate()
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(plain), dynamo=False)
    import onnxruntime as ort

    with pytest.raises(ValueError, match="not a vision-rung policy"):
        vp.read_contract(ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]))


def test_filmstrip_of_an_expert_episode(tmp_path):
    import cv2

    from clap_ros.cli import main

    out = tmp_path / "film.png"
    argv = ["filmstrip", "--policy", "expert", "--task", "reach", "--seed", "0"]
    assert main(argv + ["--every", "0.5", "--px", "64", "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["success"] is True and meta["frames"] >= 2
    # one row per view (workspace, wrist), one 64 px (+ 2 x 2 px border) column per frame
    assert img.shape == (2 * 68, meta["frames"] * 68, 3)
    assert main(argv + ["--px", "4", "--out", str(out)]) == 2
