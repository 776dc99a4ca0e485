"""bag2dataset on bags recorded the way users record them: other topic names (a topic map),
JPEG CompressedImage frames, joint_states with extra joints in another order, an instruction that
changes mid-bag, a dropped-frame gap and a clock jump, in MCAP and sqlite3 storage; and the errors
(unknown topic-map key, missing mapped topic, unknown encoding, truncated bags)."""

import json
import shutil

import cv2
import numpy as np
import pytest

from clap_ros import topics as T
from clap_ros.cli import main as cli_main
from clap_ros.data import bags
from clap_ros.data.bag2dataset import ConvertConfig, convert
from clap_ros.data.bags import BagError, BagReader, find_bags
from clap_ros.data.dataset import Dataset
from clap_ros.data.images import ImageEncodingError, decode_image_msg
from clap_ros.data.timeline import apply_events, camera_gaps, clock_jumps, segments
from clap_ros.data.topic_map import TopicMap, TopicMapError
from clap_ros.robots import load_profile

S = 1_000_000_000
BASE = 1_700_000_000 * S  # wall-clock epoch times, as a real recorder writes
FR3 = load_profile("fr3")
HOME = FR3.home.copy()
MAP = {
    "camera": "/cam/color/image_raw/compressed",
    "camera_info": "/cam/color/camera_info",
    "joint_states": "/robot/joint_states",
    "instruction": "/task/instruction",
    "arm_command": "/arm/position_commands",
    "gripper_command": "/hand/cmd",
}
INSTR = [(0.0, "pick up the red cube"), (2.0, "put it in the bin")]
# joint_states at 50 Hz, the camera at 20 Hz; frames 1.01..1.46 s are dropped (a 0.55 s gap) and
# the recorder's clock jumps forward 2 s after 3.0 s.
JS_T = np.concatenate([np.arange(35, 3000, 20), np.arange(5005, 6000, 20)]) * 1_000_000
_cam = np.arange(10, 3000, 50)
CAM_T = (
    np.concatenate([_cam[(_cam <= 960) | (_cam >= 1510)], np.arange(5010, 6000, 50)]) * 1_000_000
)
FWD = [(0.5, 0.01), (1.7, 0.02), (2.5, 0.03), (5.2, 0.04)]  # (s, offset on every joint)
H, W = 48, 64


def q_at(t_ns):
    return HOME + 0.1 * (t_ns / S) + 0.001 * np.arange(7)


def finger(t_ns):
    return 0.04 - 0.005 * (t_ns / S)


def colour(k):
    """A flat colour that identifies camera frame k after JPEG and H.264."""
    return 10 + 7 * (k % 34), 20 + 50 * (k // 34)


def jpeg_msg(k, t_ns):
    r, b = colour(k)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = r, 90, b
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    Msg = bags.msg_class(T.TYPES["compressed_image"])
    return Msg(
        header=bags.header(t_ns, "cam"),
        format="rgb8; jpeg compressed bgr8",
        data=np.frombuffer(buf.tobytes(), np.uint8),
    )


def write_user_bag(path, storage="mcap", camera_msg=jpeg_msg):
    names = list(FR3.joint_names) + list(FR3.gripper.joint_names) + ["head_pan", "conveyor"]
    rng = np.random.default_rng(1)
    with bags.BagWriter(path, storage=storage) as w:
        for t, text in INSTR:
            w.write(MAP["instruction"], BASE + int(t * S), bags.string_msg(text))
        # the instruction re-published unchanged (a latched topic on reconnect) is not a change
        w.write(MAP["instruction"], BASE + int(2.5 * S), bags.string_msg(INSTR[1][1]))
        for t in JS_T:
            pos = np.concatenate([q_at(t), [finger(t), finger(t)], [0.3, -1.0]])
            order = rng.permutation(len(names))  # a different order in every message
            w.write(
                MAP["joint_states"],
                BASE + int(t),
                bags.joint_state_msg([names[i] for i in order], pos[order], BASE + int(t)),
            )
        for k, t in enumerate(CAM_T):
            w.write(MAP["camera"], BASE + int(t), camera_msg(k, BASE + int(t)))
            if k < 3:
                w.write(
                    MAP["camera_info"],
                    BASE + int(t),
                    bags.camera_info_msg({"width": W, "height": H, "K": np.eye(3)}, BASE + int(t)),
                )
        for t, off in FWD:
            w.write(MAP["arm_command"], BASE + int(t * S), bags.float64_array_msg(HOME + off))
        w.write(MAP["gripper_command"], BASE + int(0.3 * S), bags.float64_array_msg([0.25]))


def write_map(path, data=MAP):
    import yaml

    path.write_text(yaml.safe_dump(dict(data)))
    return path


def grid_rows(first_row, n):
    return np.array([35 + 100 * k for k in range(first_row, first_row + n)]) * 1_000_000


# Expected pieces: [start row, length, instruction]; rows 11-14 lie in the camera gap, 31-49 in
# the clock jump; the instruction changes at 2.0 s (row 20).
PIECES = [(0, 11, 0), (15, 5, 0), (20, 11, 1), (50, 10, 1)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_user_bag_topic_map_jpeg_reorder_split_and_gaps(tmp_path, storage, capsys):
    write_user_bag(tmp_path / "bags" / "session1", storage)
    out = tmp_path / "ds"
    rc = cli_main(
        [
            "bag2dataset",
            "--bags",
            str(tmp_path / "bags"),
            "--out",
            str(out),
            "--robot",
            "fr3",
            "--fps",
            "10",
            "--topic-map",
            str(write_map(tmp_path / "map.yaml")),
            "--split-on-instruction",
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "frames/s" in printed.strip().splitlines()[-1]
    ds = Dataset(out)
    assert [e["length"] for e in ds.episodes] == [n for _, n, _ in PIECES]
    assert [e["instruction"] for e in ds.episodes] == [INSTR[i][1] for _, _, i in PIECES]
    assert sorted(ds.tasks.values()) == sorted(text for _, text in INSTR)
    for ep_i, (r0, n, _) in enumerate(PIECES):
        grid = grid_rows(r0, n)
        ep = ds.load_episode(ep_i)
        np.testing.assert_allclose(ep["timestamp"], np.arange(n) * 0.1, atol=1e-6)
        js = [JS_T[np.flatnonzero(JS_T <= g)[-1]] for g in grid]
        # arm joints by name out of a shuffled message with extra joints; gripper from the fingers
        np.testing.assert_allclose(ep["state"][:, :7], np.stack([q_at(t) for t in js]), atol=1e-6)
        np.testing.assert_allclose(
            ep["state"][:, 7], [FR3.gripper.command_from_position(finger(t)) for t in js], atol=1e-6
        )
        # before the first command the arm holds where it was measured when it came (0.495 s)
        cmd = [
            HOME + [o for t, o in FWD if t * S <= g][-1]
            if g >= FWD[0][0] * S
            else q_at(495_000_000)
            for g in grid
        ]
        np.testing.assert_allclose(ep["action"][:, :7], np.stack(cmd), atol=1e-6)
        np.testing.assert_allclose(
            ep["action"][:, 7], np.where(grid >= 0.3 * S, 0.25, ep["state"][:, 7]), atol=1e-6
        )
        # each frame is the latest camera frame at or before its grid time (nearest by colour)
        want = [int(np.flatnonzero(CAM_T <= g)[-1]) for g in grid]
        frames = ep["images"]["observation.images.scene"]
        assert frames.shape == (n, H, W, 3)
        got_rb = frames[..., [0, 2]].reshape(n, -1, 2).mean(axis=1)
        table = np.array([colour(k) for k in range(len(CAM_T))], float)
        got = [int(np.argmin(np.abs(table - rb).sum(axis=1))) for rb in got_rb]
        assert got == want
        assert ep["meta"]["storage"] == storage
        assert ep["meta"]["camera_info"]["width"] == W
    # the per-bag report, printed and in meta/bag_import.json
    rep = json.loads((out / "meta" / "bag_import.json").read_text())
    (bag,) = rep["bags"]
    assert (
        bag["status"] == "converted"
        and bag["storage"] == storage
        and bag["episodes"] == [0, 1, 2, 3]
    )
    kinds = sorted((e["kind"], e["topic"]) for e in bag["events"])
    assert kinds == [
        ("camera_gap", MAP["camera"]),
        ("forward", MAP["camera"]),
        ("forward", MAP["joint_states"]),
    ]
    gap = next(e for e in bag["events"] if e["kind"] == "camera_gap")
    assert gap["rows_dropped"] == 4 and abs(gap["jump_s"] - 0.55) < 1e-6
    assert abs(gap["at_s"] - (1.51 - 0.0)) < 1e-6  # seconds since the bag's first message
    skipped = sorted((s["from_s"], s["frames"]) for s in bag["skipped"])
    assert skipped == [(1.135, 4), (3.135, 19)]
    assert sum(s["frames"] for s in bag["skipped"]) + sum(n for _, n, _ in PIECES) == 60
    assert "camera gap 0.550 s" in printed and "time jumped forward" in printed


def test_without_split_one_episode_per_piece_and_warning(tmp_path):
    write_user_bag(tmp_path / "bags" / "s", "mcap")
    summary = convert(
        tmp_path / "bags",
        tmp_path / "ds",
        ConvertConfig(fps=10, robot="fr3", topic_map=TopicMap(**MAP)),
        progress=False,
    )
    ds = Dataset(tmp_path / "ds")
    # the gap and the clock jump still split; the instruction change does not
    assert [e["length"] for e in ds.episodes] == [11, 16, 10]
    assert {e["instruction"] for e in ds.episodes} == {INSTR[1][1]}
    (rep,) = summary["bags"]
    assert any("instruction changed 1 times" in w for w in rep["warnings"])


def test_loose_db3_and_mcap_files_are_found_and_read(tmp_path):
    write_user_bag(tmp_path / "src_db", "sqlite3")
    write_user_bag(tmp_path / "src_mcap", "mcap")
    root = tmp_path / "loose"
    root.mkdir()
    shutil.copy(next((tmp_path / "src_db").glob("*.db3")), root / "a.db3")
    shutil.copy(next((tmp_path / "src_mcap").glob("*.mcap")), root / "b.mcap")
    assert find_bags(root) == [root / "a.db3", root / "b.mcap"]
    # a write-ahead log left by a recorder that crashed is not read: the reader says so
    (root / "a.db3-wal").write_bytes(b"\x00" * 64)
    with BagReader(root / "a.db3") as r:
        assert r.storage == "sqlite3"
        assert len(r.warnings) == 1 and "a.db3-wal" in r.warnings[0]
        assert r.message_counts[MAP["camera"]] == len(CAM_T)
        assert r.topics[MAP["camera"]] == T.TYPES["compressed_image"]
    summary = convert(
        root,
        tmp_path / "ds",
        ConvertConfig(fps=10, robot="fr3", topic_map=TopicMap(**MAP)),
        progress=False,
    )
    assert [c["frames"] for c in summary["converted"]] == [37, 37] and not summary["skipped"]


def test_truncated_db3_and_mcap_are_clear_errors_and_lose_nothing_else(tmp_path):
    bdir = tmp_path / "bags"
    write_user_bag(bdir / "good", "sqlite3")
    for name, storage, suffix in (("cut_db3", "sqlite3", "*.db3"), ("cut_mcap", "mcap", "*.mcap")):
        write_user_bag(bdir / name, storage)
        f = next((bdir / name).glob(suffix))
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
        with pytest.raises(BagError, match="corrupt or truncated"):
            with BagReader(bdir / name) as r:
                for _ in r.raw_messages():
                    pass
    summary = convert(
        bdir,
        tmp_path / "ds",
        ConvertConfig(fps=10, robot="fr3", topic_map=TopicMap(**MAP)),
        progress=False,
    )
    assert [c["bag"] for c in summary["converted"]] == [str(bdir / "good")]
    reasons = {s["bag"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {"cut_db3", "cut_mcap"}
    assert "sqlite3" in reasons["cut_db3"] and "truncated" in reasons["cut_db3"]
    assert "truncated" in reasons["cut_mcap"] and "cut_mcap" in reasons["cut_mcap"]
    rep = {
        b["bag"].rsplit("/", 1)[-1]: b
        for b in json.loads((tmp_path / "ds" / "meta" / "bag_import.json").read_text())["bags"]
    }
    assert rep["cut_db3"]["status"] == "skipped" and rep["good"]["status"] == "converted"


def test_missing_mapped_topic_and_unknown_encoding_name_the_cause(tmp_path):
    bdir = tmp_path / "bags"
    write_user_bag(bdir / "a_good", "mcap")

    def mono16(k, t_ns):
        return bags.image_msg(np.full((H, W), 1000 + k, np.uint16), t_ns, encoding="mono16")

    write_user_bag(bdir / "b_depth", "mcap", camera_msg=mono16)
    summary = convert(
        bdir,
        tmp_path / "ds",
        ConvertConfig(fps=10, robot="fr3", topic_map=TopicMap(**MAP)),
        progress=False,
    )
    assert [c["bag"] for c in summary["converted"]] == [str(bdir / "a_good")]
    (skip,) = summary["skipped"]
    assert "b_depth" in skip["reason"] and "'mono16'" in skip["reason"]
    # the video of the skipped bag was never started
    assert len(list((tmp_path / "ds" / "videos").rglob("*.mp4"))) == 3  # gap and jump split

    tm = TopicMap(**dict(MAP, camera="/cam/typo", instruction="/task/nope"))
    summary = convert(
        bdir / "a_good",
        tmp_path / "ds2",
        ConvertConfig(fps=10, robot="fr3", topic_map=tm),
        progress=False,
    )
    (skip,) = summary["skipped"]
    assert "missing topic /cam/typo (topic map 'camera')" in skip["reason"]
    assert "missing topic /task/nope (topic map 'instruction')" in skip["reason"]
    assert MAP["camera"] in skip["reason"]  # what the bag does have


def test_topic_map_load_resolve_and_unknown_key(tmp_path, capsys):
    assert TopicMap.load(None) == TopicMap()
    tm = TopicMap.load(write_map(tmp_path / "m.yaml", {"camera": "/c", "joint_states": "/j"}))
    assert (tm.camera, tm.joint_states, tm.instruction) == ("/c", "/j", T.INSTRUCTION)
    r = tm.resolve(FR3)
    assert r.arm_command == ""  # trajectory or forward: decided per bag
    assert r.gripper_command == FR3.driver.gripper_command_topic and r.camera == "/c"
    assert tm.arm_command_candidates(FR3) == (FR3.driver.trajectory_topic, FR3.driver.forward_topic)
    assert TopicMap(arm_command="/x").resolve(FR3).arm_command == "/x"
    assert TopicMap(arm_command="/x").arm_command_candidates(FR3) == ("/x",)
    with pytest.raises(TopicMapError, match="camra"):
        TopicMap.load(write_map(tmp_path / "bad.yaml", {"camra": "/c"}))
    with pytest.raises(TopicMapError, match="absolute"):
        TopicMap.load(write_map(tmp_path / "rel.yaml", {"camera": "cam"}))
    with pytest.raises(TopicMapError, match="cannot read"):
        TopicMap.load(tmp_path / "none.yaml")
    rc = cli_main(
        [
            "bag2dataset",
            "--bags",
            str(tmp_path),
            "--out",
            str(tmp_path / "ds"),
            "--topic-map",
            str(tmp_path / "bad.yaml"),
            "--robot",
            "fr3",
        ]
    )
    assert rc == 2 and "unknown key(s) camra" in capsys.readouterr().err


def test_decode_image_msg_encodings():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image = bags.msg_class(T.TYPES["image"])
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full((6, 8), 7, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.zeros((6, 8), np.uint8)]),
    }
    for enc, arr in cases.items():
        out = decode_image_msg(
            bags.image_msg(np.ascontiguousarray(arr), 0, encoding=enc), T.TYPES["image"]
        )
        assert out.dtype == np.uint8 and out.shape == (6, 8, 3) and np.array_equal(out, rgb), enc
    mono = decode_image_msg(
        bags.image_msg(rgb[..., 0].copy(), 0, encoding="mono8"), T.TYPES["image"]
    )
    assert np.array_equal(mono, np.repeat(rgb[..., :1], 3, axis=2))
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    CI = bags.msg_class(T.TYPES["compressed_image"])
    assert np.array_equal(
        decode_image_msg(
            CI(header=bags.header(0), format="", data=png.reshape(-1)), T.TYPES["compressed_image"]
        ),
        rgb,
    )
    with pytest.raises(ImageEncodingError, match="'yuv422'"):
        decode_image_msg(
            Image(
                header=bags.header(0),
                height=1,
                width=2,
                encoding="yuv422",
                is_bigendian=0,
                step=4,
                data=np.zeros(4, np.uint8),
            ),
            T.TYPES["image"],
        )
    with pytest.raises(ImageEncodingError, match="'16UC1'"):
        decode_image_msg(
            bags.image_msg(np.zeros((2, 2), np.uint16), 0, encoding="16UC1"), T.TYPES["image"]
        )
    with pytest.raises(ImageEncodingError, match="does not decode"):
        decode_image_msg(
            CI(header=bags.header(0), format="jpeg", data=np.zeros(40, np.uint8)),
            T.TYPES["compressed_image"],
        )
    with pytest.raises(ImageEncodingError, match="not an image"):
        decode_image_msg(bags.string_msg("x"), T.TYPES["string"])


def test_timeline_backwards_stamps_gaps_and_segments():
    ms = 1_000_000
    log = np.arange(0, 1000, 20) * ms
    stamp = log.copy()
    stamp[25:] -= 300 * ms  # the publisher's clock stepped back 0.3 s at 500 ms
    (ev,) = clock_jumps("/js", log, stamp, max_jump_s=1.0)
    assert ev.kind == "backwards" and abs(ev.jump_s + 0.28) < 1e-9 and ev.after_ns == 500 * ms
    assert clock_jumps("/js", log, np.zeros_like(log), 1.0) == []  # unstamped: not checked
    cam = np.array([0, 50, 100, 150, 400, 450, 500]) * ms
    gaps, med = camera_gaps("/cam", cam, 1.5, 1.0)
    assert med == 50 * ms and [(g.before_ns, g.after_ns) for g in gaps] == [(150 * ms, 400 * ms)]
    grid = np.arange(10, 1000, 100) * ms
    keep, cut = apply_events(grid, [ev] + gaps, {"/js": 150 * ms, "/cam": 150 * ms})
    # camera: rows older than 150 ms after the 150 ms frame (310 ms) are dropped; the clock step
    # back drops nothing (log time is continuous) but splits at 510 ms
    assert list(np.flatnonzero(~keep)) == [3]
    assert list(np.flatnonzero(cut)) == [4, 5]
    assert segments(keep, cut) == [(0, 3), (4, 5), (5, 10)]
    assert segments(np.ones(4, bool), np.zeros(4, bool), ["a", "a", "b", "a"]) == [
        (0, 2),
        (2, 3),
        (3, 4),
    ]
