"""The Dask side of the benchmarks: a LocalCluster, its workers' memory, the T7 pipeline on Dask.

Used by ``run.py`` (task ``T7d``, the cell's child process).  The cluster is
``dask.distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="6GiB",
processes=True)`` by default (``run.py --dask-workers/--dask-threads/--dask-memory-gib``):
the machine has 2 cores, so two single-threaded worker *processes* use both (the partition
passes are pandas/numpy work that holds the GIL between Numba calls, and satsample's Rao-Wu
kernel is run by one thread per process at a time), each with ``NUMBA_NUM_THREADS=1`` so
the two workers' Numba kernels do not oversubscribe the two cores.  Two workers x 6 GiB =
12 GiB, the cap ``run.py`` puts on any one cell (``--max-rss-gib``) on this shared 24 GiB
machine; a partition here is one agency (at most 1.43 M rows, about 0.1 GiB in memory at
50 M responses), so the limit is a ceiling that the workers should stay far below, not a
budget they need.

Worker memory is measured two ways: each worker process's kernel high-water mark
(``VmHWM`` of ``/proc/self/status``: the exact peak resident set over the worker's life,
read at the end with ``client.run``) and the resident set sampled every 0.25 s by a thread
of the client (``client.run`` of ``psutil``), whose maximum is a lower bound of the peak.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

GIB = 2.0**30


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _hwm() -> int:
    """Peak resident set of this process (bytes), from the kernel's VmHWM."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def start_cluster(workers: int = 2, threads: int = 1, memory_gib: float = 6.0):
    """A LocalCluster of worker processes and a Client on it."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads,
                           memory_limit=f"{memory_gib}GiB", processes=True,
                           dashboard_address=None,
                           env={"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1",
                                "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    client = Client(cluster)
    client.wait_for_workers(workers)
    return cluster, client


class WorkerMemory:
    """Samples the workers' resident sets in a background thread of the client."""

    def __init__(self, client, interval: float = 0.25):
        self.client = client
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                now = self.client.run(_rss)
            except Exception:
                now = {}
            for w, v in now.items():
                self.peak[w] = max(self.peak.get(w, 0), int(v))
            self.samples += 1
            self._stop.wait(self.interval)

    def start(self) -> WorkerMemory:
        self.peak, self.samples = {}, 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        hwm = self.client.run(_hwm)
        limits = {w: info["memory_limit"]
                  for w, info in self.client.scheduler_info()["workers"].items()}
        return {"workers": len(hwm),
                "peak_gib": {w: round(v / GIB, 3) for w, v in hwm.items()},
                "sampled_gib": {w: round(v / GIB, 3) for w, v in self.peak.items()},
                "limit_gib": {w: round(v / GIB, 3) for w, v in limits.items()},
                "samples": self.samples}

    def reset(self) -> None:
        """Start the workers' high-water marks afresh (so the peak is that of the next call)."""
        self.client.run(_reset_hwm)


def read(path: str | os.PathLike, columns: list[str]):
    """The Parquet set as a Dask DataFrame: one partition per file (= one agency)."""
    import dask.dataframe as dd

    return dd.read_parquet(str(path), columns=columns, split_row_groups=False)


def t7_dask(path, margins, questionnaire, reps: int, *, rng: int = 11) -> tuple:
    """The T7 pipeline on Dask through the public API; returns (result, sub-times, path)."""
    from workloads import ITEMS

    from satsample import replicate, weighting
    from satsample.design import survey_design
    from satsample.index import satisfaction_index

    t0 = time.perf_counter()
    ddf = read(path, ["agency_id", "design_weight", "sex", "age", "responded", *ITEMS])
    d = survey_design(ddf, strata="agency_id", weights="design_weight")
    t1 = time.perf_counter()
    d = replicate.bootstrap(d, n_replicates=reps, kind="subbootstrap", rng=rng,
                            materialize=False)
    d = weighting.adjust_nonresponse(d, "responded", classes="agency_id")
    d = weighting.rake(d, margins, max_iter=100, epsilon=1e-10)
    t2 = time.perf_counter()
    res = satisfaction_index(d, questionnaire, by="agency_id", variance="replicate")
    t3 = time.perf_counter()
    return res, {"design": t1 - t0, "weighting": t2 - t1, "index": t3 - t2}, "pipeline"


def index_dask(path, questionnaire, reps: int, *, rng: int = 11) -> tuple:
    """Fallback while the backend is not there: ``satisfaction_index_dask`` without weighting."""
    import warnings

    from workloads import ITEMS

    from satsample.distributed import satisfaction_index_dask

    t0 = time.perf_counter()
    ddf = read(path, ["agency_id", "design_weight", *ITEMS])
    with warnings.catch_warnings():  # the alias may be deprecated by then
        warnings.simplefilter("ignore", DeprecationWarning)
        res = satisfaction_index_dask(ddf, questionnaire, strata="agency_id",
                                      weights="design_weight", by="agency_id",
                                      n_replicates=reps, rng=rng)
    return res, {"index": time.perf_counter() - t0}, "index only (no weighting)"
