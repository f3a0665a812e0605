"""File input and output: DICOM series, sinogram and k-space directories, atomic writes."""
