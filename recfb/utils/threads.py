"""The compiled kernels' thread pool, and the pools that must not run beside it.

The compiled kernels (numba, :mod:`recfb.train._fused`, LightGCN's) run their own thread pool,
sized per call by :func:`kernel_threads`. When a kernel
alternates with BLAS calls (CML's covariance step after every block of samples), OpenBLAS's
threads and numba's both busy-wait for work after each call, and on a 2-core machine each pool's
spinning threads take the cores the other needs: a default ``CML()`` fit on ml-100k took 5.9 s
with 2 numba and 2 OpenBLAS threads, 1.9 s with OpenBLAS on 1 thread, and 2.3 s with both on 1
(benchmarks/RESULTS.md, "Seventh session"). The small matrix products of such steps lose
nothing single-threaded, so they run under :func:`single_thread_blas`.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def kernel_threads(num_threads):
    """numba's thread count for one kernel call (0/None: all of numba's threads), restored after
    (the MF, CML and LightGCN kernels)."""
    import numba
    threads = numba.config.NUMBA_NUM_THREADS if num_threads in (0, None) else int(num_threads)
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(previous)


def single_thread_blas():
    """Context manager: BLAS libraries loaded in this process (OpenBLAS, MKL, BLIS) on one
    thread, their previous limits restored on exit (threadpoolctl). About 0.6 ms to enter, so
    enter it once around a loop, not per call."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1, "blas")
