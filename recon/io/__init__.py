"""File input and output: DICOM series, sinogram and k-space directories, atomic writes.

Formats are documented in ``docs/file-formats.md``. Every reader raises
:class:`recon.errors.InputError` (one line: file and problem) on bad input; every writer writes
each file to a temporary name and renames it when complete.
"""

from recon.io.atomic import (
    atomic_path,
    atomic_save_npy,
    atomic_save_npz,
    atomic_save_png,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    ensure_output_dir,
    remove_stale_partials,
)
from recon.io.dicom_read import Series, list_series, read_series
from recon.io.dicom_write import provenance_description, synthetic_identity, write_series, write_std_series
from recon.io.kspace_dir import KspaceStudy, read_cfl, read_kspace_dir, write_cfl, write_kspace_dir
from recon.io.sinogram_dir import SinogramStudy, read_sinogram_dir, write_sinogram_dir

__all__ = [
    "KspaceStudy",
    "Series",
    "SinogramStudy",
    "atomic_path",
    "atomic_save_npy",
    "atomic_save_npz",
    "atomic_save_png",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "ensure_output_dir",
    "list_series",
    "provenance_description",
    "read_cfl",
    "read_kspace_dir",
    "read_series",
    "read_sinogram_dir",
    "remove_stale_partials",
    "synthetic_identity",
    "write_cfl",
    "write_kspace_dir",
    "write_series",
    "write_sinogram_dir",
    "write_std_series",
]
