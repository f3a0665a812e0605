"""ASTRA's FP/BP algorithm objects as a backend: the machinery the CPU and CUDA backends share.

Objects are created once per operator and reused: one set (projector, linked image and sinogram
buffers, ``FP`` and ``BP`` algorithms) per worker slot, so a batch is spread over threads, one
slice per ASTRA call (ASTRA releases the GIL). ASTRA computes in float32 on host memory.
"""

from __future__ import annotations

import os
import queue
import weakref

import astra
import numpy as np
import torch

from operators.geometry import FanGeometry, ParallelGeometry
from operators.radon.astra_setup import astra_geometries, free_astra_objects
from operators.radon.backend import RadonBackend
from operators.radon.threads import n_workers, parallel_map

__all__ = ["AstraAlgorithmBackend"]


class AstraAlgorithmBackend(RadonBackend):
    """ASTRA ``FP``/``BP`` (``cuda=False``) or ``FP_CUDA``/``BP_CUDA`` on linked numpy buffers."""

    #: Subclasses: whether to use ASTRA's CUDA algorithms.
    cuda: bool = False

    def __init__(self, geometry: ParallelGeometry | FanGeometry, projector_type: str) -> None:
        cuda = self.cuda
        self.image_shape = tuple(geometry.image_size)
        self.sino_shape = tuple(geometry.sinogram_shape)
        vol_geom, proj_geom = astra_geometries(geometry)
        self._projectors: list[int] = [astra.create_projector("cuda" if cuda else projector_type, proj_geom, vol_geom)]
        self._algorithms: list[int] = []
        self._data: list[int] = []
        n_slots = 1 if cuda else max(1, os.cpu_count() or 1)
        self._slots: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(n_slots):
            vol = np.zeros(self.image_shape, dtype=np.float32)
            sino = np.zeros(self.sino_shape, dtype=np.float32)
            # linked buffers: ASTRA reads and writes these arrays in place, no per-call copies
            vid = astra.data2d.link("-vol", vol_geom, vol)
            sid = astra.data2d.link("-sino", proj_geom, sino)
            algs = {}
            for kind in ("FP", "BP"):
                cfg = astra.astra_dict(kind + ("_CUDA" if cuda else ""))
                cfg["ProjectorId"] = self._projectors[0]
                cfg["ProjectionDataId"] = sid
                cfg["VolumeDataId" if kind == "FP" else "ReconstructionDataId"] = vid
                algs[kind] = astra.algorithm.create(cfg)
            self._data += [vid, sid]
            self._algorithms += list(algs.values())
            self._slots.put((vol, sino, algs))
        self._finalizer = weakref.finalize(self, free_astra_objects, self._projectors, self._algorithms, self._data)

    def _apply(self, src: np.ndarray, kind: str) -> np.ndarray:
        out_shape = self.sino_shape if kind == "FP" else self.image_shape
        out = np.empty((src.shape[0], *out_shape), dtype=np.float32)
        n = n_workers(src.shape[0]) if not self.cuda else 1
        bounds = np.linspace(0, src.shape[0], n + 1).astype(int)

        def work(k: int) -> None:
            vol, sino, algs = self._slots.get()
            try:
                inp, res = (vol, sino) if kind == "FP" else (sino, vol)
                for i in range(bounds[k], bounds[k + 1]):
                    inp[...] = src[i]
                    astra.algorithm.run(algs[kind])
                    out[i] = res
            finally:
                self._slots.put((vol, sino, algs))

        parallel_map(work, n)
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``[B, H, W]`` float32 -> ``[B, n_angles, n_detectors]`` float32."""
        return self._apply(x, "FP")

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """``[B, n_angles, n_detectors]`` float32 -> ``[B, H, W]`` float32."""
        return self._apply(y, "BP")

    def project(self, t: torch.Tensor, adjoint: bool) -> torch.Tensor:
        b = t.shape[0]
        out_shape = self.image_shape if adjoint else self.sino_shape
        # Casts happen in numpy: a torch cast of a large tensor opens an OpenMP region whose
        # spinning workers then compete with ASTRA's threads.
        arr = np.ascontiguousarray(t.detach().cpu().reshape(b, *t.shape[2:]).numpy(), dtype=np.float32)
        res = self.adjoint(arr) if adjoint else self.forward(arr)
        if t.dtype == torch.float64:
            res = res.astype(np.float64)
        return torch.from_numpy(res).reshape(b, 1, *out_shape).to(t.device)

    def close(self) -> None:
        """Free the ASTRA objects now (otherwise when the backend is garbage-collected)."""
        self._finalizer()
