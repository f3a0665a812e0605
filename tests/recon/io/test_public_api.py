"""The names ``recon.io`` exports, and where they are defined."""

from __future__ import annotations

import recon.io

PUBLIC = {
    "KspaceStudy": "recon.io.kspace_read",
    "Series": "recon.io.dicom_read",
    "SinogramStudy": "recon.io.sinogram_read",
    "atomic_path": "recon.io.atomic",
    "atomic_save_npy": "recon.io.atomic",
    "atomic_save_npz": "recon.io.atomic",
    "atomic_save_png": "recon.io.atomic",
    "atomic_write_bytes": "recon.io.atomic",
    "atomic_write_json": "recon.io.atomic",
    "atomic_write_text": "recon.io.atomic",
    "ensure_output_dir": "recon.io.atomic",
    "list_series": "recon.io.dicom_read",
    "provenance_description": "recon.io.dicom_provenance",
    "read_cfl": "recon.io.bart_cfl",
    "read_htc_mat": "recon.io.htc_mat",
    "read_kspace_dir": "recon.io.kspace_read",
    "read_series": "recon.io.dicom_read",
    "read_sinogram_dir": "recon.io.sinogram_read",
    "remove_stale_partials": "recon.io.atomic",
    "synthetic_identity": "recon.io.dicom_identity",
    "write_cfl": "recon.io.bart_cfl",
    "write_htc_sinogram_dir": "recon.io.htc_mat",
    "write_kspace_dir": "recon.io.kspace_write",
    "write_nifti": "recon.io.stack_write",
    "write_series": "recon.io.dicom_write",
    "write_sinogram_dir": "recon.io.sinogram_write",
    "write_std_series": "recon.io.dicom_write",
    "write_tiff_stack": "recon.io.stack_write",
}


def test_exports_are_unchanged_and_each_has_one_home():
    assert sorted(recon.io.__all__) == sorted(PUBLIC)
    for name, module in PUBLIC.items():
        assert getattr(recon.io, name).__module__ == module, name
