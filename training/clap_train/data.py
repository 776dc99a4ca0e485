"""Data layer: episodes -> (frame pair, action chunk) windows, normalisation, batch sources.

An *episode* is a dict of numpy arrays as ``clap_ros.data.dataset.Dataset.load_episode`` returns it
(``state [T,D]``, ``action [T,D]``, ``timestamp [T]``, ``images {key: uint8 [T,H,W,3]}``) plus,
where known, ``appearance`` (dict of discrete factors, for leakage probes). A *human clip* is a dict
with ``frames uint8 [T,H,W,3]``, ``action_category`` (str) and ``scene_id`` (int); it has no
actions. Frames are resized once on load and kept as uint8 CHW; batch sources turn them into float
tensors only for the sampled batch.

The last action dimension(s) are the gripper opening (``gripper_dims``), the rest arm joints.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

ACTION_SPACES = ("joint_abs", "joint_delta", "ee_delta")


class DataError(ValueError):
    """Training data that is missing or does not have the expected shape."""


# ----------------------------------------------------------------------------------------------
# normalisation


@dataclass
class Normalizer:
    """Per-dimension z-scoring; the std has a floor so constant dims (a gripper never moved) stay
    finite."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, min_std: float = 1e-3) -> "Normalizer":
        x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        return cls(x.mean(0).astype(np.float32), np.maximum(x.std(0), min_std).astype(np.float32))

    def normalize(self, x):
        if isinstance(x, torch.Tensor):
            return (x - torch.as_tensor(self.mean, device=x.device)) / torch.as_tensor(
                self.std, device=x.device
            )
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def unnormalize(self, x):
        if isinstance(x, torch.Tensor):
            return x * torch.as_tensor(self.std, device=x.device) + torch.as_tensor(
                self.mean, device=x.device
            )
        return (np.asarray(x, dtype=np.float32) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> Dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Normalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


# ----------------------------------------------------------------------------------------------
# action chunks


def _rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> axis-angle vector (stable near 0; pi is not needed for small deltas)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos)
    if angle < 1e-8:
        return np.zeros(3)
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return v * angle / (2.0 * math.sin(angle))


def _ee_delta_chunk(profile, q_now: np.ndarray, q_chunk: np.ndarray) -> np.ndarray:
    fk = getattr(profile, "tcp_pose", None) or profile.kinematics.tcp_pose
    T0 = np.asarray(fk(q_now))
    out = np.zeros((len(q_chunk), 6), np.float32)
    for k, q in enumerate(q_chunk):
        Tk = np.asarray(fk(q))
        out[k, :3] = Tk[:3, 3] - T0[:3, 3]
        # both deltas in the base frame, as a Cartesian controller would take them
        out[k, 3:] = _rotvec(Tk[:3, :3] @ T0[:3, :3].T)
    return out


def window_starts(length: int, H: int, stride: int) -> np.ndarray:
    """Start frames t with a full chunk a[t:t+H] and a future frame o_{t+H} inside the episode."""
    return np.arange(0, max(0, length - H), max(1, stride))


def chunk_at(
    ep: Dict[str, Any],
    t: int,
    H: int,
    action_space: str = "joint_abs",
    gripper_dims: int = 1,
    profile=None,
) -> np.ndarray:
    """The action chunk starting at frame t in the given action space, [H, A']."""
    act = np.asarray(ep["action"], np.float32)
    chunk = act[t : t + H]
    if action_space == "joint_abs":
        return chunk.copy()
    arm = act.shape[1] - gripper_dims
    state = np.asarray(ep["state"], np.float32)
    if action_space == "joint_delta":
        out = chunk.copy()
        # relative to the measured state at t, so the chunk is invariant to where the arm starts
        out[:, :arm] -= state[t, :arm]
        return out
    if action_space == "ee_delta":
        if profile is None:
            raise DataError("action_space ee_delta needs a robot profile (data.robot)")
        ee = _ee_delta_chunk(profile, state[t, :arm], chunk[:, :arm])
        return np.concatenate([ee, chunk[:, arm:]], axis=1).astype(np.float32)
    raise DataError("unknown action_space %r (choose from %s)" % (action_space, ACTION_SPACES))


def _profile(robot: Optional[str], action_space: str):
    if action_space != "ee_delta":
        return None
    from clap_ros.robots import load_profile

    return load_profile(robot or "fr3")


def action_chunks(
    episodes: Sequence[Dict[str, Any]],
    H: int,
    action_space: str = "joint_abs",
    stride: int = 1,
    robot: Optional[str] = None,
    gripper_dims: int = 1,
) -> np.ndarray:
    """All chunks of length H from the episodes, [N, H, A'] float32."""
    if action_space not in ACTION_SPACES:
        raise DataError("unknown action_space %r (choose from %s)" % (action_space, ACTION_SPACES))
    prof = _profile(robot, action_space)
    out = [
        chunk_at(ep, int(t), H, action_space, gripper_dims, prof)
        for ep in episodes
        for t in window_starts(len(ep["action"]), H, stride)
    ]
    if not out:
        raise DataError("no episode is longer than the chunk length %d" % H)
    return np.stack(out).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# frames


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [T,H,W,3] -> uint8 [T,3,size,size], each frame resized by the runtime's own
    ``resize_rgb`` (the encoder's recipe; batches then scale with ``preprocess.to_unit``)."""
    from clap_ros.inference.preprocess import resize_rgb

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError("frames must be uint8 [T,H,W,3], got %s %s" % (frames.dtype, frames.shape))
    if frames.shape[1] != size or frames.shape[2] != size:
        frames = np.stack([resize_rgb(f, size, size) for f in frames])
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))


def _factor_key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def appearance_ids(episodes: Sequence[Dict[str, Any]]) -> Dict[str, np.ndarray]:
    """Per appearance factor, an integer id per episode (factors missing anywhere are dropped)."""
    apps = [ep.get("appearance") or {} for ep in episodes]
    factors = sorted(set.intersection(*[set(a) for a in apps])) if apps else []
    out = {}
    for f in factors:
        vocab: Dict[str, int] = {}
        out[f] = np.array([vocab.setdefault(_factor_key(a[f]), len(vocab)) for a in apps], np.int64)
    return out


# ----------------------------------------------------------------------------------------------
# windows


@dataclass
class RobotWindows:
    frames: torch.Tensor  # uint8 [F,3,S,S], all episodes' frames
    i_t: torch.Tensor  # long [N] frame index of o_t
    i_tH: torch.Tensor  # long [N] frame index of o_{t+H}
    chunks: torch.Tensor  # float [N,H,A] (raw, in the configured action space)
    episode: torch.Tensor  # long [N] episode index (position in the episode list)
    t: torch.Tensor  # long [N] start frame in the episode
    appearance: Dict[str, torch.Tensor] = field(default_factory=dict)  # factor -> long [N]

    def __len__(self) -> int:
        return int(self.i_t.shape[0])

    def subset(self, mask: np.ndarray) -> "RobotWindows":
        idx = torch.as_tensor(np.nonzero(np.asarray(mask))[0])
        return RobotWindows(
            self.frames,
            self.i_t[idx],
            self.i_tH[idx],
            self.chunks[idx],
            self.episode[idx],
            self.t[idx],
            {k: v[idx] for k, v in self.appearance.items()},
        )


def build_robot_windows(
    episodes: Sequence[Dict[str, Any]],
    H: int,
    image_size: int,
    image_key: Optional[str] = None,
    stride: int = 1,
    action_space: str = "joint_abs",
    robot: Optional[str] = None,
    gripper_dims: int = 1,
) -> RobotWindows:
    prof = _profile(robot, action_space)
    app = appearance_ids(episodes)
    frames, i_t, i_tH, chunks, ep_idx, ts, app_rows = [], [], [], [], [], [], {k: [] for k in app}
    offset = 0
    for e, ep in enumerate(episodes):
        imgs = ep["images"]
        key = (
            image_key
            if image_key in imgs
            else (next(iter(imgs)) if image_key is None and imgs else None)
        )
        if key is None:
            raise DataError(
                "episode %d has no image stream %r (has %s)" % (e, image_key, sorted(imgs))
            )
        fr = resize_frames(imgs[key], image_size)
        if len(fr) != len(ep["action"]):
            raise DataError(
                "episode %d: %d frames but %d actions" % (e, len(fr), len(ep["action"]))
            )
        for t in window_starts(len(fr), H, stride):
            i_t.append(offset + t)
            i_tH.append(offset + t + H)
            chunks.append(chunk_at(ep, int(t), H, action_space, gripper_dims, prof))
            ep_idx.append(e)
            ts.append(t)
            for k in app:
                app_rows[k].append(app[k][e])
        frames.append(fr)
        offset += len(fr)
    if not i_t:
        raise DataError("no episode is longer than the chunk length %d" % H)
    return RobotWindows(
        frames=torch.from_numpy(np.concatenate(frames)),
        i_t=torch.tensor(i_t),
        i_tH=torch.tensor(i_tH),
        chunks=torch.from_numpy(np.stack(chunks).astype(np.float32)),
        episode=torch.tensor(ep_idx),
        t=torch.tensor(ts),
        appearance={k: torch.tensor(v) for k, v in app_rows.items()},
    )


@dataclass
class HumanWindows:
    frames: torch.Tensor  # uint8 [F,3,S,S]
    i_t: torch.Tensor
    i_tH: torch.Tensor
    category: torch.Tensor  # long [N] action-category id
    scene: torch.Tensor  # long [N] scene id
    clip: torch.Tensor  # long [N] clip index
    t: torch.Tensor
    categories: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.i_t.shape[0])


def build_human_windows(
    clips: Sequence[Dict[str, Any]], H: int, image_size: int, stride: int = 1
) -> HumanWindows:
    cats = sorted({c["action_category"] for c in clips})
    cat_id = {c: i for i, c in enumerate(cats)}
    frames, i_t, i_tH, cat, scene, clip, ts = [], [], [], [], [], [], []
    offset = 0
    for ci, c in enumerate(clips):
        fr = resize_frames(c["frames"], image_size)
        for t in window_starts(len(fr), H, stride):
            i_t.append(offset + t)
            i_tH.append(offset + t + H)
            cat.append(cat_id[c["action_category"]])
            scene.append(int(c.get("scene_id", ci)))
            clip.append(ci)
            ts.append(t)
        frames.append(fr)
        offset += len(fr)
    if not i_t:
        raise DataError("no human clip is longer than the chunk length %d" % H)
    return HumanWindows(
        torch.from_numpy(np.concatenate(frames)),
        torch.tensor(i_t),
        torch.tensor(i_tH),
        torch.tensor(cat),
        torch.tensor(scene),
        torch.tensor(clip),
        torch.tensor(ts),
        cats,
    )


# ----------------------------------------------------------------------------------------------
# batch sources (see common.trainer.fit)


class ChunkSource:
    """Random batches of (already normalised) action chunks: {"actions": [B,H,A]}."""

    def __init__(self, chunks):
        self.chunks = torch.as_tensor(np.asarray(chunks, np.float32))

    def __len__(self) -> int:
        return len(self.chunks)

    def sample(self, batch_size: int, gen: torch.Generator) -> Dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self.chunks), (batch_size,), generator=gen)
        return {"actions": self.chunks[idx]}


class RobotPairSource:
    """{"obs", "obs_next" (uint8 [B,3,S,S]), "actions" (normalised [B,H,A]), "episode"}."""

    def __init__(self, windows: RobotWindows, norm: Optional[Normalizer] = None):
        self.w = windows
        self.actions = norm.normalize(windows.chunks) if norm is not None else windows.chunks

    def __len__(self) -> int:
        return len(self.w)

    def batch(self, idx: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {
            "obs": self.w.frames[self.w.i_t[idx]],
            "obs_next": self.w.frames[self.w.i_tH[idx]],
            "actions": self.actions[idx],
            "episode": self.w.episode[idx],
        }

    def sample(self, batch_size: int, gen: torch.Generator) -> Dict[str, torch.Tensor]:
        return self.batch(torch.randint(0, len(self.w), (batch_size,), generator=gen))


class HumanPairSource:
    """{"obs", "obs_next", "category", "scene", "clip"} from human clips (no actions)."""

    def __init__(self, windows: HumanWindows):
        self.w = windows

    def __len__(self) -> int:
        return len(self.w)

    def batch(self, idx: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {
            "obs": self.w.frames[self.w.i_t[idx]],
            "obs_next": self.w.frames[self.w.i_tH[idx]],
            "category": self.w.category[idx],
            "scene": self.w.scene[idx],
            "clip": self.w.clip[idx],
        }

    def sample(self, batch_size: int, gen: torch.Generator) -> Dict[str, torch.Tensor]:
        return self.batch(torch.randint(0, len(self.w), (batch_size,), generator=gen))


class MixedSource:
    """A robot batch plus (when there are human clips) a human batch under ``h_``-prefixed keys."""

    def __init__(
        self,
        robot: RobotPairSource,
        human: Optional[HumanPairSource] = None,
        human_batch_size: int = 0,
    ):
        self.robot, self.human, self.human_bs = robot, human, human_batch_size

    def sample(self, batch_size: int, gen: torch.Generator) -> Dict[str, torch.Tensor]:
        out = self.robot.sample(batch_size, gen)
        if self.human is not None and self.human_bs > 0:
            out.update({"h_" + k: v for k, v in self.human.sample(self.human_bs, gen).items()})
        return out


# ----------------------------------------------------------------------------------------------
# loading from disk


def split_episodes(n: int, heldout_fraction: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic episode-level split (train, held-out); at least one episode on each side."""
    perm = np.random.default_rng(seed).permutation(n)
    n_held = min(n - 1, max(1, int(round(n * heldout_fraction)))) if n > 1 else 0
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def load_robot_episodes(
    root, image_key: Optional[str] = None, max_episodes: int = 0
) -> List[Dict[str, Any]]:
    """Episodes of a clap_ros dataset, each with its ``appearance`` factors from
    meta/episodes.jsonl."""
    from clap_ros.data.dataset import Dataset

    ds = Dataset(root)
    meta_path = Path(root) / "meta" / "episodes.jsonl"
    metas = (
        [json.loads(line) for line in meta_path.read_text().splitlines() if line.strip()]
        if meta_path.is_file()
        else []
    )
    n = len(metas) if metas else len(ds)
    if max_episodes:
        n = min(n, max_episodes)
    eps = []
    for i in range(n):
        ep = dict(ds.load_episode(i))
        if i < len(metas):
            ep.setdefault("appearance", metas[i].get("appearance"))
            ep.setdefault("instruction", metas[i].get("instruction"))
            ep.setdefault("task_name", metas[i].get("task_name"))
        if image_key is not None and image_key not in ep["images"]:
            raise DataError(
                "%s episode %d has no image stream %r (has %s)"
                % (root, i, image_key, sorted(ep["images"]))
            )
        eps.append(ep)
    return eps


def load_human_clips(directory, max_clips: int = 0) -> List[Dict[str, Any]]:
    """Human-video clips from DIR/labels.json (format clap_ros_human_videos) with their frames."""
    from clap_ros.data.video import read_video

    directory = Path(directory)
    labels = json.loads((directory / "labels.json").read_text())
    if labels.get("format") != "clap_ros_human_videos":
        raise DataError("%s/labels.json is not a clap_ros_human_videos file" % directory)
    clips = []
    for c in labels["clips"][: max_clips or None]:
        clip = dict(c)
        clip["frames"] = read_video(directory / c["file"])
        clips.append(clip)
    return clips


@dataclass
class TrainingData:
    train_episodes: List[Dict[str, Any]]
    heldout_episodes: List[Dict[str, Any]]
    human_clips: List[Dict[str, Any]]


def load_training_data(cfg) -> TrainingData:
    """Robot episodes split by episode into train / held-out, plus human clips if configured."""
    if not cfg.data.robot_dataset:
        raise DataError("data.robot_dataset is not set (a clap_ros dataset root)")
    eps = load_robot_episodes(cfg.data.robot_dataset, cfg.data.image_key, cfg.data.max_episodes)
    tr, ho = split_episodes(len(eps), cfg.data.heldout_fraction, cfg.seed)
    clips = load_human_clips(cfg.data.human_videos) if cfg.data.human_videos else []
    return TrainingData([eps[i] for i in tr], [eps[i] for i in ho], clips)


# ----------------------------------------------------------------------------------------------
# synthetic data (tests and CPU smoke runs): moving squares whose motion is the action


PALETTE = np.array(
    [
        [200, 60, 60],
        [60, 160, 60],
        [60, 80, 200],
        [200, 180, 60],
        [150, 60, 180],
        [60, 170, 170],
        [120, 120, 120],
        [230, 130, 40],
    ],
    np.uint8,
)


def _draw(
    size: int,
    bg: int,
    distractor: int,
    pos: np.ndarray,
    grip: float,
    agent_color,
    disc: bool = False,
) -> np.ndarray:
    img = np.empty((size, size, 3), np.uint8)
    img[:] = PALETTE[bg]
    d0 = size // 8 + (distractor * size // 5) % (size // 2)
    img[d0 : d0 + size // 8, size - size // 4 : size - size // 8] = PALETTE[
        (bg + 3 + distractor) % len(PALETTE)
    ]
    half = max(2, int(round(size * (0.05 + 0.05 * grip))))
    cx, cy = (np.clip(pos, 0.0, 1.0) * (size - 2 * half - 1) + half).astype(int)
    if disc:
        yy, xx = np.mgrid[:size, :size]
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= half**2] = agent_color
    else:
        img[cy - half : cy + half + 1, cx - half : cx + half + 1] = agent_color
    return img


def make_synthetic_episodes(
    n: int, length: int = 48, image_size: int = 32, seed: int = 0, n_backgrounds: int = 4
) -> List[Dict[str, Any]]:
    """Robot-like episodes: a square moves along a smooth random path; action = commanded
    (x, y, grip).

    The background colour (``appearance.background``) is drawn independently of the motion, so a
    latent that encodes the action well need not (and should not) predict it.
    """
    rng = np.random.default_rng(seed)
    eps = []
    for e in range(n):
        bg, distractor = int(rng.integers(n_backgrounds)), int(rng.integers(3))
        t = np.arange(length + 1) / 15.0
        f = rng.uniform(0.2, 0.6, size=2)
        ph = rng.uniform(0, 2 * np.pi, size=2)
        amp = rng.uniform(0.2, 0.4, size=2)
        pos = 0.5 + amp[None] * np.sin(2 * np.pi * f[None] * t[:, None] + ph[None])
        grip = (np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6)) > 0).astype(
            np.float32
        )
        cmd = np.concatenate([pos, grip[:, None]], 1).astype(np.float32)
        state = cmd[:-1]
        action = cmd[1:]  # the command at t is where the square is at t+1
        frames = np.stack(
            [_draw(image_size, bg, distractor, s[:2], s[2], (255, 255, 255)) for s in state]
        )
        eps.append(
            {
                "state": state,
                "action": action,
                "timestamp": t[:-1].astype(np.float64),
                "images": {"observation.images.scene": frames},
                "appearance": {"background": bg, "distractor": distractor},
                "instruction": "follow the path",
                "task_name": "synthetic",
            }
        )
    return eps


HUMAN_CATEGORIES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def make_synthetic_human_clips(
    n: int, length: int = 40, image_size: int = 32, seed: int = 0, n_scenes: int = 4
) -> List[Dict[str, Any]]:
    """Human-like clips: a disc (another embodiment) moves in one of four directions; no actions."""
    rng = np.random.default_rng(seed + 7777)
    names = sorted(HUMAN_CATEGORIES)
    clips = []
    for c in range(n):
        cat = names[c % len(names)]
        scene = int(rng.integers(n_scenes))
        v = np.array(HUMAN_CATEGORIES[cat], np.float64) * rng.uniform(0.012, 0.02)
        start = 0.5 - v * length / 2 + rng.normal(0, 0.05, size=2)
        frames = np.stack(
            [
                _draw(image_size, scene, 0, start + v * k, 0.5, (250, 220, 190), disc=True)
                for k in range(length)
            ]
        )
        clips.append(
            {
                "frames": frames,
                "action_category": cat,
                "scene_id": scene,
                "appearance": {"background": scene},
                "num_frames": length,
            }
        )
    return clips
