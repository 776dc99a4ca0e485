"""Oracle rungs of the diagnostic ladder (issue 14): the CLAP action path with perception
replaced by the simulator's ground truth, so a failure can be placed above or below vision.

* ``--policy oracle-expert``: every RF chunk is the scripted expert's plan sampled at the chunk's
  own step times (frame stamp + i * chunk_dt). Nothing is learned: it tests the execution path
  (RF job timing, the chunk queue's hand-over, the safety filter, trajectory streaming, the
  driver's JTC) under perfect predictions.
* ``--policy oracle-field``: every RF chunk is the feedback expert's (clap_ros.sim.expert.
  field_chunk: from the measured state straight towards the goal pose), a function of the state
  alone: what a state-oracle is trained to imitate. Reach only.
* ``--policy oracle:<file.onnx>``: a learned state-oracle (training/clap_train/oracle.py): the
  objects' positions + the measured state -> an absolute joint chunk. Learning without
  perception.

Only the runtime's graphs are replaced (``OracleRuntime``); the encoder, planner and action
cores, their rates, the virtual clock and the driver are the ones ``--mode direct`` always runs.
The "latent" handed from encoder to action core carries the oracle's observation (object
positions, the frame's sim time) in the bundle's latent shape; no camera frame is rendered.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

ORACLE_EXPERT = "oracle-expert"
ORACLE_FIELD = "oracle-field"
ORACLE_PREFIX = "oracle:"
FIELD_TASKS = ("reach",)  # tasks whose feedback expert exists (one goal pose)


def is_oracle(policy: str) -> bool:
    return policy in (ORACLE_EXPERT, ORACLE_FIELD) or policy.startswith(ORACLE_PREFIX)


def oracle_features(world) -> np.ndarray:
    """Positions (x, y, z) of the task's objects and points, roles in sorted order: what a
    state-oracle sees. Reach: the target point; push/pick_place/stack: each object."""
    layout = world.layout
    roles = sorted(set(layout.poses) | set(layout.points))
    return np.concatenate([np.asarray(world.object_position(r), dtype=np.float64) for r in roles])


class OracleRuntime:
    """A ClapRuntime stand-in: ``encode`` reads the world, ``act`` is the oracle, ``plan`` and
    everything else are the bundle runtime's (the planner's timing stays real)."""

    def __init__(self, runtime, world, policy: str, clock: Callable[[], float]):
        self._rt = runtime
        self.clock = clock  # the driver clock (the virtual clock the stack runs on)
        self.bundle = runtime.bundle
        self.world = world
        self.policy = policy
        self.t_enable: Optional[float] = None
        self._plan = None
        self._session = None
        b = self.bundle
        if b.action_space != "joint_abs":
            raise ValueError("oracle policies need a joint_abs bundle, not %s" % b.action_space)
        if oracle_features(world).shape[0] > b.latent_dim or b.latent_tokens < 2:
            raise ValueError("the bundle's latent is too small to carry the oracle observation")
        if policy.startswith(ORACLE_PREFIX):
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(
                policy[len(ORACLE_PREFIX) :], opts, providers=["CPUExecutionProvider"]
            )

    def __getattr__(self, name):  # preprocessor, tokenizer, joint_targets, latency, ...
        return getattr(self._rt, name)

    def reset(self, world, clock: Callable[[], float]) -> None:
        """A new episode (of this world and driver clock): the expert plans from its layout, as
        expert_node does."""
        self.world = world
        self.clock = clock
        self.t_enable = None
        self._plan = None
        if self.policy in (ORACLE_EXPERT, ORACLE_FIELD):
            from clap_ros.sim.expert import make_expert

            if self.policy == ORACLE_FIELD and world.task_name not in FIELD_TASKS:
                raise ValueError(
                    "oracle-field has a feedback expert for %s only, not %s"
                    % (", ".join(FIELD_TASKS), world.task_name)
                )
            self._plan = make_expert(world).plan()

    def encode(self, image) -> np.ndarray:
        b = self.bundle
        lat = np.zeros((b.latent_tokens, b.latent_dim), dtype=np.float32)
        feats = oracle_features(self.world)
        lat[0, : feats.shape[0]] = feats
        lat[1, 0] = self.clock()  # the frame's time: the encoder runs at its arrival
        lat[1, 1] = feats.shape[0]
        return lat

    def act(self, latent, plan_indices, state, rng=None) -> np.ndarray:
        lat = np.asarray(latent, dtype=np.float64)
        b = self.bundle
        st = np.asarray(state, dtype=np.float64).reshape(-1)
        if self._session is not None:
            out = self._session.run(
                None,
                {
                    "obs": lat[0, : int(lat[1, 1])][None].astype(np.float32),
                    "state": st[None].astype(np.float32),
                },
            )[0]
            return np.asarray(out[0], dtype=np.float64)
        if self._plan is None or self.t_enable is None:
            return np.tile(st, (b.chunk_length, 1))  # not enabled yet: hold where measured
        if self.policy == ORACLE_FIELD:
            from clap_ros.sim.expert import field_chunk

            goal, _, g = self._plan.sample(self._plan.duration)
            lim = self.world.profile.limits.velocity
            q = field_chunk(st[:-1], goal, lim, b.chunk_length, b.chunk_dt_s)
            return np.hstack([q, np.full((b.chunk_length, 1), float(g))])
        tau = float(lat[1, 0]) - self.t_enable + np.arange(b.chunk_length) * b.chunk_dt_s
        q, _, g = self._plan.sample_many(tau)
        return np.hstack([q, np.asarray(g, dtype=np.float64)[:, None]])
