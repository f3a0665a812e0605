"""Radon operator speed against direct ASTRA calls, and adjoint (dot-test) errors.

For a 256x256 image at 32 and 180 views and batches of 1 and 8, times forward (A x) and adjoint
(A^T y) of :class:`ParallelBeam` (``linear``) and :class:`FanBeam` (``line``) with the ``cpu``
backend (ASTRA algorithms behind the torch wrapper, single thread and default threads) and the
``matrix`` backend, against the fastest plain use of ASTRA on the same geometry: projector, data and
algorithm objects created once, then ``data2d.store`` / ``algorithm.run`` / ``data2d.get`` per slice.
``ratio`` = operator time / direct ASTRA time (<= 1.2 is the goal; < 1 is faster than ASTRA).
Times are the best of ``--repeats`` runs after one warm-up (the least disturbed by other load on a
shared machine).

Then prints ``|<Ax,y> - <x,A^T y>| / (|Ax| |y|)`` per operator x projector x backend x dtype.

    OMP_NUM_THREADS=2 python benchmarks/bench_operators.py [--repeats 5] [--size 256]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import astra
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.geometry import uniform_angles  # noqa: E402
from operators.radon import FanBeam, ParallelBeam, RadonTransform  # noqa: E402
from operators.radon.astra_setup import astra_geometries  # noqa: E402
from tests.operators.battery import dot_test_error  # noqa: E402

FAN = dict(source_origin_mm=500.0, origin_detector_mm=300.0)


def timeit(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


class DirectAstra:
    """Plain ASTRA on the operator's geometry: objects built once, one store/run/get per slice."""

    def __init__(self, op: RadonTransform, projector_type: str):
        vol_geom, proj_geom = astra_geometries(op.geometry)
        self.pid = astra.create_projector(projector_type, proj_geom, vol_geom)
        self.vid = astra.data2d.create("-vol", vol_geom, 0)
        self.sid = astra.data2d.create("-sino", proj_geom, 0)
        self.alg = {}
        for kind in ("FP", "BP"):
            cfg = astra.astra_dict(kind)
            cfg["ProjectorId"] = self.pid
            cfg["ProjectionDataId"] = self.sid
            cfg["VolumeDataId" if kind == "FP" else "ReconstructionDataId"] = self.vid
            self.alg[kind] = astra.algorithm.create(cfg)

    def fp(self, x: np.ndarray) -> list[np.ndarray]:
        out = []
        for img in x:
            astra.data2d.store(self.vid, img)
            astra.algorithm.run(self.alg["FP"])
            out.append(astra.data2d.get(self.sid))
        return out

    def bp(self, y: np.ndarray) -> list[np.ndarray]:
        out = []
        for sino in y:
            astra.data2d.store(self.sid, sino)
            astra.algorithm.run(self.alg["BP"])
            out.append(astra.data2d.get(self.vid))
        return out

    def close(self) -> None:
        for a in self.alg.values():
            astra.algorithm.delete(a)
        astra.data2d.delete([self.vid, self.sid])
        astra.projector.delete(self.pid)


def speed_table(size: int, repeats: int) -> None:
    default_threads = torch.get_num_threads()
    print(f"\n## Speed, {size}x{size}, float32, torch threads {default_threads} (ms per call)\n")
    header = (
        f"| {'operator':<22} | {'views':>5} | {'B':>2} | {'dir':<3} | {'ASTRA':>8} | {'cpu 1thr':>8} | {'ratio':>5} "
        f"| {'cpu':>8} | {'ratio':>5} | {'matrix':>8} | {'ratio':>5} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, make, ptype in [
        ("ParallelBeam linear", lambda a: ParallelBeam(size, a, projector="linear", backend="cpu"), "linear"),
        ("FanBeam line", lambda a: FanBeam(size, a, projector="line", backend="cpu", **FAN), "line_fanflat"),
    ]:
        for views in (32, 180):
            arc = math.pi if name.startswith("Parallel") else 2 * math.pi
            op_cpu = make(uniform_angles(views, arc))
            op_mat = type(op_cpu).from_geometry(op_cpu.geometry, projector=op_cpu.projector, backend="matrix")
            t = time.perf_counter()
            op_mat(torch.zeros(1, *op_mat.domain_shape))
            build = time.perf_counter() - t
            direct = DirectAstra(op_cpu, ptype)
            for batch in (1, 8):
                gen = torch.Generator().manual_seed(0)
                x = torch.rand(batch, *op_cpu.domain_shape, generator=gen)
                y = torch.rand(batch, *op_cpu.range_shape, generator=gen)
                xn, yn = x[:, 0].numpy(), y[:, 0].numpy()
                for d, f_direct, f_op in [
                    ("fwd", lambda: direct.fp(xn), lambda op: op(x)),
                    ("adj", lambda: direct.bp(yn), lambda op: op.adjoint(y)),
                ]:
                    t_dir = timeit(f_direct, repeats)
                    torch.set_num_threads(1)
                    t_1 = timeit(lambda: f_op(op_cpu), repeats)
                    torch.set_num_threads(default_threads)
                    t_cpu = timeit(lambda: f_op(op_cpu), repeats)
                    t_mat = timeit(lambda: f_op(op_mat), repeats)
                    print(
                        f"| {name:<22} | {views:>5} | {batch:>2} | {d:<3} | {1e3 * t_dir:8.2f} | {1e3 * t_1:8.2f} "
                        f"| {t_1 / t_dir:5.2f} | {1e3 * t_cpu:8.2f} | {t_cpu / t_dir:5.2f} | {1e3 * t_mat:8.2f} "
                        f"| {t_mat / t_dir:5.2f} |"
                    )
            direct.close()
            print(f"|   matrix build ({name}, {views} views, nnz {op_mat._backends['matrix'].nnz:,}): {build:.2f} s")


def dot_table(size: int) -> None:
    print(f"\n## Dot test |<Ax,y> - <x,A^T y>| / (|Ax| |y|), {size}x{size}, 60 views, batch 2\n")
    print(f"| {'operator':<12} | {'projector':<9} | {'backend':<7} | {'float32':>9} | {'float64':>9} |")
    print("|--------------|-----------|---------|-----------|-----------|")
    for cls, projectors, arc, kw in [
        (ParallelBeam, ("linear", "strip", "line"), math.pi, {}),
        (FanBeam, ("line", "strip"), 2 * math.pi, FAN),
    ]:
        for p in projectors:
            for backend in ("cpu", "matrix"):
                op = cls(size, uniform_angles(60, arc), projector=p, backend=backend, **kw)
                e32 = dot_test_error(op, torch.float32)
                e64 = dot_test_error(op, torch.float64)
                print(f"| {cls.__name__:<12} | {p:<9} | {backend:<7} | {e32:9.2e} | {e64:9.2e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dot-size", type=int, default=128)
    args = ap.parse_args()
    print(f"astra {astra.__version__}, torch {torch.__version__}, CUDA in ASTRA: {astra.use_cuda()}")
    speed_table(args.size, args.repeats)
    dot_table(args.dot_size)


if __name__ == "__main__":
    main()
