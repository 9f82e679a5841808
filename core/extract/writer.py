"""A preallocated `.npy` file filled row by row, so extraction memory stays flat."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class NpyWriter:
    """A preallocated .npy file written row by row with pwrite (no memory map, flat RSS)."""

    def __init__(self, path: Path, shape: tuple[int, int], dtype=np.float32, *, create: bool) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_bytes = shape[1] * self.dtype.itemsize
        if create:
            with open(path, "wb") as f:
                header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, header)
                self.offset = f.tell()
                f.truncate(self.offset + shape[0] * self.row_bytes)
        else:
            with open(path, "rb") as f:
                np.lib.format.read_magic(f)
                np.lib.format.read_array_header_1_0(f)
                self.offset = f.tell()
        self.fd = os.open(path, os.O_RDWR)

    def write_rows(self, start: int, rows: np.ndarray) -> None:
        os.pwrite(self.fd, np.ascontiguousarray(rows, dtype=self.dtype).tobytes(), self.offset + start * self.row_bytes)

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
