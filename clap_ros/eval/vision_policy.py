"""Rung (c) of the diagnostic ladder (issue 14): an image policy without the planner.

``--policy vision:<file.onnx>`` (``clap-ros eval-sim --mode direct``): the framed ``workspace``
camera and the ``wrist`` camera, rendered at the camera rate, plus the instruction's words and
the measured state -> an absolute joint chunk (training/clap_train/vision.py). It answers
whether perception + control can be learned from these views at all, before the NTP planner
is put between them.

Like the oracle rungs only the runtime's graphs are replaced: the encoder, planner and action
cores, their rates, the virtual clock and the driver are the ones ``--mode direct`` always runs.
``encode`` renders the views at the frame's time and keeps them under that time; the "latent"
it hands on carries only the time, so ``act`` runs the network on exactly the frame the action
core was given (and its cost lands on the virtual clock as the RF's does).

The ONNX file carries its contract in its metadata (``views``, ``render_px``, ``input_px``,
``vocab``, ``shadows``): inputs ``images [1, V, 3, P, P]`` (0..1, centre crop of the render),
``words [1, W]`` (bag of words over ``vocab``), ``state [1, S]``; output ``chunk [1, H, A]``.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from typing import Callable, Dict, Optional, Sequence

import numpy as np

VISION_PREFIX = "vision:"
VIEWS = ("workspace", "wrist")
RENDER_PX = 104  # rendered; training crops P x P at random, the runtime at the centre
INPUT_PX = 96
# Shadow maps give a ball above the table a depth cue in a single view. At 512 (the scene's
# 2048 costs 3x more in software GL) two 104 px views take ~27 ms instead of ~9.5 ms.
SHADOW_SIZE = 512


def is_vision(policy: str) -> bool:
    return policy.startswith(VISION_PREFIX)


def words_of(text: str) -> list:
    return re.findall(r"[a-z]+", text.lower())


def bag_of_words(text: str, vocab: Sequence[str]) -> np.ndarray:
    """1.0 for each vocabulary word the instruction contains (unknown words are ignored)."""
    have = set(words_of(text))
    return np.array([1.0 if w in have else 0.0 for w in vocab], dtype=np.float32)


def center_crop(views: np.ndarray, px: int) -> np.ndarray:
    """[V, H, W, 3] uint8 -> [V, 3, px, px] float32 in 0..1: what the network is given at run
    time (training takes random crops of the same renders)."""
    v = np.asarray(views)
    if v.ndim != 4 or v.shape[-1] != 3 or min(v.shape[1:3]) < px:
        raise ValueError("views must be [V, H>=%d, W>=%d, 3], got %s" % (px, px, v.shape))
    y0 = (v.shape[1] - px) // 2
    x0 = (v.shape[2] - px) // 2
    crop = v[:, y0 : y0 + px, x0 : x0 + px, :]
    return np.ascontiguousarray(crop.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


class ViewRenderer:
    """Renders the policy's views of a world at ``px`` x ``px`` with its own renderer (the
    world's renderer keeps the scene camera's size)."""

    def __init__(
        self, world, views: Sequence[str] = VIEWS, px: int = RENDER_PX, shadows: bool = False
    ):
        import mujoco

        for v in views:
            world.camera_pose(v)  # a clear error for a missing camera (e.g. no wrist camera)
        self.shadows = bool(shadows)
        self.views = tuple(views)
        self.px = int(px)
        self._mj = mujoco
        self._model = None
        self._renderer = None
        self._ids: Dict[str, int] = {}
        self.bind(world)

    def bind(self, world) -> None:
        if self.shadows:
            world.set_shadows(True)
        if world.model is not self._model:
            if self._renderer is not None:
                self._renderer.close()
            if self.shadows:
                world.model.vis.quality.shadowsize = SHADOW_SIZE
            self._model = world.model
            self._renderer = self._mj.Renderer(world.model, self.px, self.px)
            self._ids = {
                v: self._mj.mj_name2id(world.model, self._mj.mjtObj.mjOBJ_CAMERA, v)
                for v in self.views
            }
        self.world = world

    def render(self) -> np.ndarray:
        """[V, px, px, 3] uint8 of the world's current state."""
        out = []
        assert self._renderer is not None
        for v in self.views:
            self._renderer.update_scene(self.world.data, camera=self._ids[v])
            out.append(self._renderer.render().copy())
        return np.stack(out)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def read_contract(session) -> dict:
    meta = session.get_modelmeta().custom_metadata_map
    if "clap_vision" not in meta:
        raise ValueError("this ONNX file is not a vision-rung policy (no clap_vision metadata)")
    c = json.loads(meta["clap_vision"])
    for key in ("views", "render_px", "input_px", "vocab"):
        if key not in c:
            raise ValueError("vision policy metadata lacks %r" % key)
    return c


class VisionRuntime:
    """A ClapRuntime stand-in (see OracleRuntime): ``encode`` renders the policy's views,
    ``act`` runs the image policy; ``plan`` and the rest are the bundle runtime's."""

    KEEP = 64  # frames kept for act (the action core uses one of the last few)

    def __init__(self, runtime, world, policy: str, clock: Callable[[], float]):
        import onnxruntime as ort

        self._rt = runtime
        self.bundle = runtime.bundle
        self.policy = policy
        self.clock = clock
        self.t_enable: Optional[float] = None
        if self.bundle.action_space != "joint_abs":
            raise ValueError("the vision rung needs a joint_abs bundle")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._session = ort.InferenceSession(
            policy[len(VISION_PREFIX) :], opts, providers=["CPUExecutionProvider"]
        )
        c = read_contract(self._session)
        self.vocab = list(c["vocab"])
        self.input_px = int(c["input_px"])
        self._renderer = ViewRenderer(
            world, c["views"], int(c["render_px"]), bool(c.get("shadows", False))
        )
        self._frames: "OrderedDict[float, np.ndarray]" = OrderedDict()
        self.reset(world, clock)

    def __getattr__(self, name):  # preprocessor, tokenizer, joint_targets, latency, ...
        return getattr(self._rt, name)

    def reset(self, world, clock: Callable[[], float]) -> None:
        self.world = world
        self.clock = clock
        self.t_enable = None
        self._frames.clear()
        self._renderer.bind(world)
        self._words = bag_of_words(world.instruction, self.vocab)[None]

    def encode(self, image) -> np.ndarray:
        t = float(np.float32(self.clock()))  # the key survives the float32 latent
        self._frames[t] = center_crop(self._renderer.render(), self.input_px)
        while len(self._frames) > self.KEEP:
            self._frames.popitem(last=False)
        b = self.bundle
        lat = np.zeros((b.latent_tokens, b.latent_dim), dtype=np.float32)
        lat[0, 0] = t
        return lat

    def act(self, latent, plan_indices, state, rng=None) -> np.ndarray:
        t = float(np.asarray(latent)[0, 0])
        st = np.asarray(state, dtype=np.float32).reshape(1, -1)
        views = self._frames.get(t)
        if views is None:  # the frame is no longer kept: use the latest one
            views = next(reversed(self._frames.values()))
        out = self._session.run(None, {"images": views[None], "words": self._words, "state": st})[0]
        return np.asarray(out[0], dtype=np.float64)
