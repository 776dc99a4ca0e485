"""clap_train: the torch side of clap_ros (training stages and ONNX export)."""

__version__ = "0.1.0"
