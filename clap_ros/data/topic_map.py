"""Which topics of a user's rosbag hold the camera, joint states, instruction and commands.

Bags recorded on real robots rarely use our default names (``/camera/color/image_raw``,
``/franka/joint_states``, ...). A topic map is a small YAML file naming only what differs:

```yaml
camera: /camera/color/image_raw/compressed   # sensor_msgs/Image or CompressedImage
joint_states: /franka/joint_states
instruction: /task/instruction
```

Empty command topics mean "what the robot profile's driver uses" (``resolve``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from clap_ros import topics as T

PathLike = Union[str, Path]


class TopicMapError(ValueError):
    """A topic map file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class TopicMap:
    camera: str = T.CAMERA_IMAGE  # Image or CompressedImage (type from the bag)
    camera_info: str = T.CAMERA_INFO
    joint_states: str = "/joint_states"
    instruction: str = T.INSTRUCTION
    arm_command: str = ""  # "" = the profile's trajectory or forward topic, whichever the bag has
    gripper_command: str = ""  # "" = the profile's gripper command topic

    @classmethod
    def keys(cls) -> List[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "topic map") -> "TopicMap":
        """A map from a dict with any subset of the keys; an unknown key or a non-string value is
        a TopicMapError naming it (a typo must not silently fall back to a default topic)."""
        if not isinstance(data, dict):
            raise TopicMapError(
                "%s: expected a mapping of key: topic, got %s" % (source, type(data).__name__)
            )
        known = cls.keys()
        unknown = [k for k in data if k not in known]
        if unknown:
            raise TopicMapError(
                "%s: unknown key(s) %s (known: %s)"
                % (source, ", ".join(map(str, unknown)), ", ".join(known))
            )
        values: Dict[str, str] = {}
        for k, v in data.items():
            if v is None:
                v = ""
            if not isinstance(v, str):
                raise TopicMapError(
                    "%s: %s must be a topic name (a string), got %r" % (source, k, v)
                )
            v = v.strip()
            if v and not v.startswith("/"):
                raise TopicMapError(
                    "%s: %s topic '%s' must be absolute (start with '/')" % (source, k, v)
                )
            values[k] = v
        for k in ("camera", "joint_states"):
            if k in values and not values[k]:
                raise TopicMapError("%s: %s cannot be empty (it is required)" % (source, k))
        return cls(**values)

    @classmethod
    def load(cls, path: Optional[PathLike]) -> "TopicMap":
        """None -> the defaults; else a YAML file with any subset of the keys."""
        if path is None:
            return cls()
        import yaml

        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise TopicMapError("topic map %s: cannot read (%s)" % (p, e.strerror or e)) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise TopicMapError("topic map %s: not valid YAML (%s)" % (p, e)) from None
        return cls.from_dict({} if data is None else data, source="topic map %s" % p)

    def resolve(self, profile) -> "TopicMap":
        """A copy with the empty gripper command topic filled from the profile's driver.

        An empty ``arm_command`` stays empty: which of the profile's trajectory and forward
        topics applies depends on the bag (``arm_command_candidates`` lists both, preferred
        first), and filling in one of them would reject bags recorded in the other mode."""
        return replace(
            self, gripper_command=self.gripper_command or profile.driver.gripper_command_topic
        )

    def arm_command_candidates(self, profile) -> Sequence[str]:
        """Arm command topics to look for in a bag, in order of preference."""
        if self.arm_command:
            return (self.arm_command,)
        return (profile.driver.trajectory_topic, profile.driver.forward_topic)

    def to_dict(self) -> Dict[str, str]:
        return {k: getattr(self, k) for k in self.keys()}


__all__ = ["TopicMap", "TopicMapError"]
