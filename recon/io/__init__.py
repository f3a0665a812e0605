"""File input and output: DICOM series, sinogram and k-space directories, atomic writes.

Formats are documented in ``docs/file-formats.md``. Every reader raises
:class:`recon.errors.InputError` (one line: file and problem) on bad input; every writer writes
each file to a temporary name and renames it when complete.

Modules, one job each:

* DICOM in: ``dicom_read`` (find the series, assemble :class:`Series`), ``dicom_files`` (files
  and headers), ``dicom_header`` (per-frame attributes), ``dicom_geometry`` (slice order,
  spacing, shear; positions of written slices), ``dicom_pixels`` (decoding, rescale).
* DICOM out: ``dicom_write`` (derived series), ``dicom_dataset`` (the datasets),
  ``dicom_rescale`` (16-bit storage, window), ``dicom_provenance`` (descriptions, version),
  ``dicom_identity`` (patient/study identity, read, cleaned or synthesised).
* Sinograms: ``sinogram_read``, ``sinogram_write``, ``sinogram_sidecar`` (``geometry.json``),
  ``sinogram_counts`` (raw counts to line integrals), ``htc_mat`` (fan-beam ``.mat`` files of the
  Helsinki Tomography Challenge 2022).
* Image stacks: ``stack_write`` (float32 multi-page TIFF and NIfTI, for values DICOM cannot carry).
* k-space: ``kspace_read``, ``kspace_write``, ``kspace_arrays`` (shapes and checks),
  ``kspace_hdf5`` (fastMRI HDF5), ``bart_cfl`` (BART files).
* Shared: ``sidecar`` (JSON sidecars, identity and reference), ``arrays`` (loading and checking
  arrays), ``atomic`` (atomic writes, output directories).
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
from recon.io.bart_cfl import read_cfl, write_cfl
from recon.io.dicom_identity import synthetic_identity
from recon.io.dicom_provenance import provenance_description
from recon.io.dicom_read import Series, list_series, read_series
from recon.io.dicom_write import write_series, write_std_series
from recon.io.htc_mat import read_htc_mat, write_htc_sinogram_dir
from recon.io.kspace_read import KspaceStudy, read_kspace_dir
from recon.io.kspace_write import write_kspace_dir
from recon.io.sinogram_read import SinogramStudy, read_sinogram_dir
from recon.io.sinogram_write import write_sinogram_dir
from recon.io.stack_write import write_nifti, write_tiff_stack

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
    "read_htc_mat",
    "read_kspace_dir",
    "read_series",
    "read_sinogram_dir",
    "remove_stale_partials",
    "synthetic_identity",
    "write_cfl",
    "write_htc_sinogram_dir",
    "write_kspace_dir",
    "write_nifti",
    "write_series",
    "write_sinogram_dir",
    "write_std_series",
    "write_tiff_stack",
]
