"""Thread pools that must not run at once.

The compiled kernels (numba, :mod:`recfb.train._fused`) run their own thread pool. When a kernel
alternates with BLAS calls (CML's covariance step after every block of samples), OpenBLAS's
threads and numba's both busy-wait for work after each call, and on a 2-core machine each pool's
spinning threads take the cores the other needs: a default ``CML()`` fit on ml-100k took 5.9 s
with 2 numba and 2 OpenBLAS threads, 1.9 s with OpenBLAS on 1 thread, and 2.3 s with both on 1
(benchmarks/RESULTS.md, "Seventh session"). The small matrix products of such steps lose
nothing single-threaded, so they run under :func:`single_thread_blas`.
"""
from __future__ import annotations


def single_thread_blas():
    """Context manager: BLAS libraries loaded in this process (OpenBLAS, MKL, BLIS) on one
    thread, their previous limits restored on exit (threadpoolctl). About 0.6 ms to enter, so
    enter it once around a loop, not per call."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1, "blas")
