"""Run by the separate LeRobot test environment (make lerobot-env -> .venv-lerobot), not by the
project's venv: load a LeRobot v3.0 dataset with the reference reader and dump what it read.

    .venv-lerobot/bin/python tests/lerobot_ref/read_with_lerobot.py DATASET OUT_DIR IDX...

Writes OUT_DIR/read.json (reader versions, len, features, episode count, tasks, per-index
episode/frame/timestamp/task and delta_timestamps padding flags) and OUT_DIR/items.npz (state,
action and every camera's decoded frame, HWC uint8, for each requested index).

torchvision: lerobot-dataset imports it at module level but uses it only for image transforms and
the pyav video backend. PyPI's torchvision wheels link the CUDA build of torch (libtorch_cuda.so),
so next to the CPU torch they do not import; this reader decodes with torchcodec instead, and a
stand-in module that raises on any use proves torchvision is never called.
"""

import json
import sys
import types
from importlib import metadata
from pathlib import Path


class _NotAvailable(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError("torchvision.%s used by the reader (stand-in module)" % name)


def _stand_in_torchvision():
    import importlib.machinery

    tv = _NotAvailable("torchvision")
    tv.__path__ = []
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    tv.transforms = _NotAvailable("torchvision.transforms")
    tv.transforms.__spec__ = importlib.machinery.ModuleSpec("torchvision.transforms", None)
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tv.transforms


def main(argv):
    root, out = Path(argv[0]), Path(argv[1])
    indices = [int(i) for i in argv[2:]]
    _stand_in_torchvision()
    import numpy as np
    from ledataset.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/clap_ros_export", root=root, video_backend="torchcodec")
    fps = ds.fps
    # one frame back and past the end: padding flags as a policy's loader sees them
    padded = LeRobotDataset(
        "local/clap_ros_export",
        root=root,
        video_backend="torchcodec",
        delta_timestamps={"action": [-1.0 / fps, 0.0, 1.0 / fps]},
    )
    items, arrays = [], {}
    for i in indices:
        it = ds[i]
        pad = padded[i]
        items.append(
            {
                "index": i,
                "episode_index": int(it["episode_index"]),
                "frame_index": int(it["frame_index"]),
                "timestamp": float(it["timestamp"]),
                "task": it["task"],
                "action_is_pad": [bool(x) for x in pad["action_is_pad"]],
                "padded_action_shape": list(pad["action"].shape),
            }
        )
        arrays["state_%d" % i] = it["observation.state"].numpy()
        arrays["action_%d" % i] = it["action"].numpy()
        for key in ds.meta.video_keys:
            # CHW float in [0, 1] -> HWC uint8, as the frame was written
            frame = (it[key].numpy().transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
            arrays["%s_%d" % (key, i)] = frame
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "items.npz", **arrays)
    versions = {
        p: metadata.version(p)
        for p in ("lerobot-dataset", "torch", "torchcodec", "av", "datasets", "pyarrow")
    }
    (out / "read.json").write_text(
        json.dumps(
            {
                "versions": versions,
                "len": len(ds),
                "num_episodes": ds.num_episodes,
                "fps": fps,
                "features": ds.features,
                "video_keys": list(ds.meta.video_keys),
                "tasks": sorted(ds.meta.tasks.index.tolist()),
                "items": items,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
