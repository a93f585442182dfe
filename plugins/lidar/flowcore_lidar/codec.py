"""Point-cloud files: KITTI ``.bin``, PLY (ASCII and binary) and PCD (ASCII and binary).

``read_points(path) -> [N, 4] float32`` (x, y, z, reflectance in [0, 1]); ``write_points``
writes the same. Reflectance is read from a field named reflectance, intensity, remission or
scalar_intensity (0 when there is none); values above 1 are taken as 8-bit and divided by 255.
Every malformed file raises :class:`DataError` naming it.

:class:`ScanCodec` is the modality's codec: a file is projected to the sensor's range image,
and a range image is written as points (``flowcore sample`` writes KITTI ``.bin`` files; the
modality's preview adds a ``.ply`` of each scan for 3-D viewers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowcore.errors import DataError
from flowcore.modality import Codec
from flowcore_lidar.sensor import Sensor

REFLECTANCE_NAMES = ("reflectance", "intensity", "remission", "scalar_intensity")
#: the most points a file may declare (a 128-beam sensor at 0.1 deg makes ~460k per scan)
MAX_POINTS = 20_000_000

PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
             "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
             ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def read_points(path: str | Path) -> np.ndarray:
    """A .bin, .ply or .pcd file -> points [N, 4] float32 (x, y, z, reflectance in [0, 1])."""
    path = Path(path)
    suffix = point_format(path)
    readers = {".bin": _read_bin, ".ply": _read_ply, ".pcd": _read_pcd}
    if suffix not in readers:
        raise DataError(f"{path}: not a point-cloud file (.bin, .ply or .pcd)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not data:
        raise DataError(f"{path}: empty file")
    try:
        points = readers[suffix](data)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: corrupt {suffix[1:].upper()} file ({exc})") from None
    if not np.isfinite(points).all():
        raise DataError(f"{path}: holds NaN or infinite coordinates")
    return points


def write_points(points: np.ndarray, path: str | Path) -> None:
    """points [N, 3 or 4] -> a .bin (float32 x, y, z, reflectance), binary .ply or binary .pcd."""
    path = Path(path)
    pts = np.zeros((len(points), 4), np.float32)
    pts[:, : np.asarray(points).shape[1]] = points
    suffix = point_format(path)
    if suffix == ".bin":
        path.write_bytes(pts.astype("<f4").tobytes())
    elif suffix == ".ply":
        header = ("ply\nformat binary_little_endian 1.0\ncomment flowcore-lidar\n"
                  f"element vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\n"
                  "property float reflectance\nend_header\n")
        path.write_bytes(header.encode() + pts.astype("<f4").tobytes())
    elif suffix == ".pcd":
        header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity\n"
                  f"SIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH {len(pts)}\nHEIGHT 1\n"
                  f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(pts)}\nDATA binary\n")
        path.write_bytes(header.encode() + pts.astype("<f4").tobytes())
    else:
        raise DataError(f"{path}: write .bin, .ply or .pcd")


def point_format(path: Path) -> str:
    """The point-cloud suffix of ``path``, looking past a temporary ``.tmp`` (``scan.bin.tmp`` -> ``.bin``)."""
    return next((s.lower() for s in reversed(Path(path).suffixes) if s.lower() in (".bin", ".ply", ".pcd")), "")


def _columns(fields: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Named columns -> [N, 4] float32; x, y and z must be there."""
    missing = [c for c in "xyz" if c not in fields]
    if missing:
        raise DataError(f"has no {', '.join(missing)} field (fields: {sorted(fields)})")
    out = np.zeros((n, 4), np.float32)
    for i, c in enumerate("xyz"):
        out[:, i] = fields[c]
    name = next((r for r in REFLECTANCE_NAMES if r in fields), None)
    if name is not None:
        refl = np.asarray(fields[name], np.float64)
        if len(refl) and np.isfinite(refl).all() and refl.max() > 1:
            refl = refl / 255.0
        out[:, 3] = np.clip(refl, 0, 1)
    return out


def _count(text: str, what: str) -> int:
    n = int(text)
    if n < 0 or n > MAX_POINTS:
        raise DataError(f"declares {n} {what}; at most {MAX_POINTS:,} are read")
    return n


def _read_bin(data: bytes) -> np.ndarray:
    if len(data) % 16:
        raise DataError(f"KITTI .bin holds float32 (x, y, z, reflectance) records of 16 bytes; {len(data)} bytes "
                        "is not a multiple of 16 (cut short?)")
    return np.frombuffer(data, "<f4").reshape(-1, 4).copy()


def _header(data: bytes, end: bytes, limit: int = 65536) -> tuple[list[str], int]:
    """Header lines up to and including the line starting with ``end``; offset of the body."""
    lines, offset = [], 0
    while offset < min(len(data), limit):
        stop = data.find(b"\n", offset)
        if stop < 0:
            break
        line = data[offset:stop].decode("ascii").strip()
        offset = stop + 1
        lines.append(line)
        if line.startswith(end.decode()):
            return lines, offset
    raise DataError(f"no '{end.decode()}' line: the header is cut short or not a header")


def _read_ply(data: bytes) -> np.ndarray:
    if not data.startswith(b"ply"):
        raise DataError("does not start with 'ply'")
    lines, offset = _header(data, b"end_header")
    fmt, elements = None, []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info", "end_header"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], _count(words[2], words[1] + " elements"), []))
        elif words[0] == "property":
            if not elements:
                raise DataError("a property before any element")
            if words[1] == "list":
                elements[-1][2].append((words[4], None))
            else:
                if words[1] not in PLY_TYPES:
                    raise DataError(f"unknown property type {words[1]!r}")
                elements[-1][2].append((words[2], PLY_TYPES[words[1]]))
        else:
            raise DataError(f"unknown header line {line[:40]!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"unknown PLY format {fmt!r}")
    if not any(name == "vertex" for name, _, _ in elements):
        raise DataError("has no vertex element")
    body = data[offset:]
    if fmt == "ascii":
        rows = body.decode("ascii").split("\n")
        start = 0
        for name, n, props in elements:
            if name == "vertex":
                if any(t is None for _, t in props):
                    raise DataError("a list property in the vertex element")
                table = np.array([r.split()[: len(props)] for r in rows[start: start + n]], dtype=np.float64)
                if table.shape != (n, len(props)):
                    raise DataError(f"the vertex element should have {n} rows of {len(props)} values; cut short?")
                return _columns({p: table[:, i] for i, (p, _) in enumerate(props)}, n)
            start += n
    order = "<" if fmt == "binary_little_endian" else ">"
    for name, n, props in elements:
        if any(t is None for _, t in props):
            raise DataError(f"element {name!r} has list properties before the vertices; not supported in binary PLY")
        dtype = np.dtype([(p, order + t) for p, t in props])
        if len(body) < n * dtype.itemsize:
            raise DataError(f"element {name!r} needs {n * dtype.itemsize} bytes, the file has {len(body)} left "
                            "(cut short?)")
        if name == "vertex":
            table = np.frombuffer(body, dtype, count=n)
            return _columns({p: table[p].astype(np.float64) for p, _ in props}, n)
        body = body[n * dtype.itemsize:]
    raise AssertionError("unreachable: a vertex element was found above")


def _read_pcd(data: bytes) -> np.ndarray:
    lines, offset = _header(data, b"DATA")
    head = {}
    for line in lines:
        words = line.split()
        if words and not line.startswith("#"):
            head[words[0].upper()] = words[1:]
    for key in ("FIELDS", "SIZE", "TYPE", "POINTS", "DATA"):
        if key not in head:
            raise DataError(f"PCD header has no {key} line")
    fields, sizes, types = head["FIELDS"], [int(s) for s in head["SIZE"]], head["TYPE"]
    counts = [int(c) for c in head.get("COUNT", ["1"] * len(fields))]
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise DataError("PCD FIELDS, SIZE, TYPE and COUNT differ in length")
    n = _count(head["POINTS"][0], "points")
    mode = head["DATA"][0].lower()
    if mode == "ascii":
        width = sum(counts)
        rows = [r.split() for r in data[offset:].decode("ascii").split("\n") if r.strip()]
        if len(rows) < n or any(len(r) != width for r in rows[:n]):
            raise DataError(f"PCD ascii data should have {n} rows of {width} values; cut short?")
        table = np.array(rows[:n], dtype=np.float64).reshape(n, width)
        cols, i = {}, 0
        for f, c in zip(fields, counts):
            cols[f] = table[:, i]
            i += c
        return _columns(cols, n)
    if mode == "binary":
        kinds = []
        for f, s, t, c in zip(fields, sizes, types, counts):
            if (t, s) not in PCD_TYPES:
                raise DataError(f"PCD field {f!r} has unknown TYPE {t} SIZE {s}")
            kinds.append((f, "<" + PCD_TYPES[(t, s)], (c,)) if c > 1 else (f, "<" + PCD_TYPES[(t, s)]))
        dtype = np.dtype(kinds)
        if len(data) - offset < n * dtype.itemsize:
            raise DataError(f"PCD binary data needs {n * dtype.itemsize} bytes, the file has {len(data) - offset} "
                            "(cut short?)")
        table = np.frombuffer(data, dtype, count=n, offset=offset)
        return _columns({f: table[f].astype(np.float64) for f in fields if table[f].ndim == 1}, n)
    raise DataError(f"PCD DATA {mode!r} is not supported (ascii or binary; re-save binary_compressed as binary)")


class ScanCodec(Codec):
    """Point-cloud files <-> range images [2, H, W] of ``sensor``."""

    extensions = (".bin", ".ply", ".pcd")

    def __init__(self, sensor: Sensor):
        self.sensor = sensor

    def read(self, path: Path):
        import torch

        return torch.from_numpy(self.sensor.project(read_points(path)))

    def write(self, sample, path: Path) -> None:
        write_points(self.sensor.unproject(np.asarray(sample, dtype=np.float32)), path)
