"""clap_ros.inference: model bundles and torch-free inference.

- ``bundle``: ``load_bundle(path) -> Bundle`` (manifest, sha256, graph headers, robot profile;
  ``BundleError`` naming the file), ``verify_files``, ``sha256_file``.
- ``backends``: ``create_session(onnx, backend="auto"|"cpu"|"cuda"|"tensorrt")`` over onnxruntime
  execution providers and native TensorRT; ``select_backend`` says why it chose.
- ``tensorrt_engine``: engine build with an on-disk cache keyed by (GPU, TensorRT, ONNX sha256,
  precision), and a runner that needs neither torch nor pycuda.
- ``preprocess``: camera image -> encoder input exactly as in training, optional undistortion.
- ``policy``: ``ClapRuntime(bundle, backend)`` with ``encode``, ``plan``, ``act``; non-finite
  outputs raise ``InferenceError``.
- ``tokenizer``: the instruction tokenizer shared with training.

Submodules are imported on demand so importing the package stays cheap.
"""
