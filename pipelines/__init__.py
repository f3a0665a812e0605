"""The ``recon`` command line and its pipelines.

OpenMP threads that finish their share of a parallel region spin, waiting for the next one, for a
while before they sleep. Two jobs whose threads together outnumber the cores then burn each other's
cores spinning: two DDS jobs of 2 threads each on 2 cores kept about a third of their solo speed
(``benchmarks/concurrency.md``). Passive waiting makes idle threads sleep at once; it is set here,
before torch loads its OpenMP runtime (which reads it once), and a value in the environment wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
