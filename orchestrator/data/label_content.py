"""What a label file holds, told from its content (not its name), so that the ``format`` a user
names is checked before that format's reader runs: ``format = "slp"`` on a JABS file, or
``dlc`` on a ``.slp``, is one line naming the file and both formats, never a reader's
traceback."""

from __future__ import annotations

from pathlib import Path

HDF5 = b"\x89HDF\r\n\x1a\n"

WHAT = {
    "coco": "a COCO keypoint JSON (an object)",
    "labelstudio": "a JSON list (Label Studio tasks)",
    "dlc": "a DeepLabCut project, config.yaml or CollectedData file",
    "slp": "a SLEAP .slp file",
    "nwb": "an NWB file",
    "jabs": "a JABS pose file",
    "analysis_h5": "a SLEAP analysis HDF5 file",
    "leap": "a LEAP .mat file",
    "ultralytics": "an Ultralytics YOLO pose dataset (data.yaml)",
}


def content_format(path: Path) -> tuple[str | None, str]:
    """``(format, what)``: the format ``path`` holds (None when none of posetune's) and a few
    words on what it is."""
    if path.is_dir():
        if (path / "config.yaml").is_file() or (path / "labeled-data").is_dir():
            return "dlc", WHAT["dlc"]
        if (path / "data.yaml").is_file():
            return "ultralytics", WHAT["ultralytics"]
        return None, "a folder with neither config.yaml nor data.yaml"
    if path.name == "config.yaml":
        return "dlc", WHAT["dlc"]
    if path.name == "data.yaml":
        return "ultralytics", WHAT["ultralytics"]
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError as error:
        return None, f"unreadable ({error.strerror or error})"
    if head.startswith(b"MATLAB"):
        return "leap", WHAT["leap"]
    if head.startswith(HDF5):
        return _hdf5_format(path)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return "coco", WHAT["coco"]
    if text.startswith(b"["):
        return "labelstudio", WHAT["labelstudio"]
    if text.startswith(b"scorer"):
        return "dlc", WHAT["dlc"]
    if not text:
        return None, "an empty file"
    if b"\x00" in head:
        return None, "binary data, not HDF5, JSON or CSV"
    return None, f"text starting {text[:24].decode('utf-8', 'replace').splitlines()[0]!r}"


def _hdf5_format(path: Path) -> tuple[str | None, str]:
    import h5py

    try:
        with h5py.File(path, "r") as file:
            keys = set(file.keys())
            if "nwb_version" in file.attrs:
                return "nwb", WHAT["nwb"]
            if "track_occupancy" in keys:
                return "analysis_h5", WHAT["analysis_h5"]
            if "poseest" in keys:
                return "jabs", WHAT["jabs"]
            if {"metadata", "frames"} <= keys:
                return "slp", WHAT["slp"]
            if any("pandas_type" in file[k].attrs for k in keys):
                return "dlc", "a pandas HDF5 table (a DeepLabCut CollectedData .h5)"
    except OSError as error:
        return None, f"an unreadable HDF5 file ({error})"
    return None, f"an HDF5 file holding {sorted(keys)[:5]}"
