"""clap_ros.data: episode bags and datasets.

``bags`` (rosbag2 MCAP read/write over rosbags, message builders), ``images`` (Image <-> numpy),
``video`` (mp4 via PyAV), ``record`` (``clap-ros sim record``), ``bag2dataset``
(``clap-ros bag2dataset``) and ``dataset`` (the on-disk format and its reader). Submodules are
imported on use so that ``import clap_ros.data`` stays cheap. Format: docs/DATASET.md.
"""
