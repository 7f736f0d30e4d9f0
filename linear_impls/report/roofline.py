"""The roofline: each forward case against the machine's own ceilings (``linear_impls.ceilings``).

Pure pandas on the rated table (``analysis.rates``), nothing formatted: the page's roofline
section and ``index.json``'s ``"roofline"`` records are laid out from what ``rooflines`` returns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import sweep
from .analysis import impl_order, itemsize, shape_info

# A shape counts as square-ish (for the peak) when its rows, in and out features are
# within this factor of each other.
SQUARISH = 4.0
# A case measured above this fraction of its roof shows the roof as unreached, not a percentage.
ABOVE_ROOF = 1.05


def squareness(shape: sweep.Shape) -> float:
    dims = (shape.rows, shape.in_features, shape.out_features)
    return max(dims) / max(min(dims), 1)


def _sweep_peak(grp: pd.DataFrame) -> tuple[float, str]:
    """Without a measured ceiling: the best GFLOP/s on the largest square-ish shape the sweep measured."""
    cand = grp[grp["sq"] <= SQUARISH]
    if cand.empty:
        cand = grp
    top_shape = cand.loc[cand["flops"].idxmax(), "shape"]
    on_top = cand[cand["shape"] == top_shape]
    best = on_top.loc[on_top["gflops"].idxmax()]
    return float(best["gflops"]), f"no ceiling measured: the sweep's best, {best['impl']} at {top_shape}"


# The ops of the ceiling's own kernels (torch.mm, and F.linear's addmm): a case whose forward
# runs one of them reaches at most that kernel's rate, so a faster case than the ceiling is
# a faster spell of the machine, not a faster kernel.
CEILING_OPS = frozenset({"mm", "addmm"})
# A case lifts the memory roof only if its tensors are beyond every cache, as the GEMV
# stream the bandwidth was measured on is (a float32 4096 x 4096 matrix): a smaller one may
# run from a cache, faster than any memory bandwidth.
BEYOND_CACHES_BYTES = 64 * 2**20


def _same_kernel(ok: pd.DataFrame, dispatch: pd.DataFrame | None) -> pd.Series:
    """Per forward case: does it run the ceiling's own GEMM (its op trace holds one of
    ``CEILING_OPS``)?  The trace of its own dtype where one was taken, else of any dtype
    (the suite traces the instruction dtypes only, and a dispatch seldom depends on the
    dtype).  Without traces, f_linear's cases do: the ceiling calls F.linear."""
    same = ok["impl"] == "f_linear"
    if dispatch is not None and not dispatch.empty:
        forward = dispatch[dispatch["mode"] == "forward"]
        gemm = {(r.file, r.impl, r.shape, r.dtype, r.device): bool(CEILING_OPS & set(r.sequence.split(", ")))
                for r in forward.itertuples(index=False)}
        any_dtype: dict[tuple, bool] = {}
        for (f, i, s, _t, d), runs in gemm.items():
            any_dtype[f, i, s, d] = any_dtype.get((f, i, s, d), False) or runs
        same |= np.array([gemm.get((f, i, s, t, d), any_dtype.get((f, i, s, d), False)) for f, i, s, t, d in
                          zip(ok["file"], ok["impl"], ok["shape"], ok["dtype"], ok["device"], strict=True)], dtype=bool)
    return same


def _lifted(grp: pd.DataFrame, peak: float, bandwidth: float | None, source: str,
            shapes: dict, itemsize_: int) -> tuple[float, float | None, str, str]:
    """The roof's peak and bandwidth raised to the best rate of a case that runs the
    ceiling's own kernel, where one ran faster than the ceiling measured it; with the
    sentences that say so (peak source, bandwidth source)."""
    bw_source = ""
    same = grp[grp["same_kernel"]]
    if not same.empty:
        top = same.loc[same["gflops"].idxmax()]
        if top["gflops"] > peak:
            source = (f"{top['impl']} at {top['shape']}, which runs the ceiling's own GEMM, ran at "
                      f"{top['gflops']:.3g} GFLOP/s, above the {peak:.3g} its benchmark measured in a slower "
                      f"spell of the machine: the roof is the faster")
            peak = float(top["gflops"])
        if bandwidth:
            big = same[[shapes[s].tensor_bytes(itemsize_) >= BEYOND_CACHES_BYTES for s in same["shape"]]]
            if not big.empty:
                rate = big["gflops"] / big["ai"]
                if rate.max() > bandwidth:
                    t = big.loc[rate.idxmax()]
                    bw_source = (f"{t['impl']} at {t['shape']} streamed {rate.max():.3g} GB/s, above the "
                                 f"{bandwidth:.3g} measured: the roof is the faster")
                    bandwidth = float(rate.max())
    return peak, bandwidth, source, bw_source


def rooflines(rated: pd.DataFrame, ceilings: pd.DataFrame, dispatch: pd.DataFrame | None = None) -> list[dict]:
    """Per file, device and dtype: the roof, each forward case against it, each implementation's best.

    The roof at arithmetic intensity I is min(peak, bandwidth x I): the machine's own
    ceilings (``linear_impls.ceilings``, recorded by the suite: ``Ceilings`` per dtype,
    ``MemoryBandwidth`` per device).  Forward cases only: the intensity is the forward's (FLOPs over the
    bytes of x, W, b and y).  Without a measured peak, the sweep's own best stands in,
    and the page says so.  A case that runs the ceiling's own kernel (``dispatch``: the op
    traces) faster than the ceiling measured it raises the roof to its rate: on a shared
    machine the ceiling's few seconds can fall in a slow spell, and what the machine did
    once it can do.
    """
    ok = rated[(rated["status"] == "ok") & (rated["mode"] == "forward")
               & np.isfinite(rated["gflops"].astype(float))].copy()
    if ok.empty:
        return []
    shapes = shape_info(ok["shape"].unique())
    items = {d: itemsize(d) for d in ok["dtype"].unique()}
    ok["ai"] = [shapes[s].arithmetic_intensity(items[d]) if shapes[s] is not None and items[d] else np.nan
                for s, d in zip(ok["shape"], ok["dtype"], strict=True)]
    ok["sq"] = [squareness(shapes[s]) if shapes[s] is not None else np.inf for s in ok["shape"]]
    ok = ok[ok["ai"].notna()]
    ok["same_kernel"] = _same_kernel(ok, dispatch)
    ceiling = {(r.file, r.dtype, r.device, r.kind): r.value for r in ceilings.itertuples(index=False)}
    out = []
    for (file_id, device, dtype), grp in ok.groupby(["file", "device", "dtype"], sort=True):
        peak = ceiling.get((file_id, dtype, device, "peak"))
        bandwidth = ceiling.get((file_id, "", device, "bandwidth"))
        source = "measured: the best of a large GEMM and a GEMV (Ceilings.track_peak_gflops)"
        bandwidth_source = ""
        if peak is None:
            peak, source = _sweep_peak(grp)
        else:
            peak, bandwidth, source, bandwidth_source = _lifted(grp, peak, bandwidth, source, shapes, items[dtype])
        grp = grp.copy()
        grp["roof"] = np.minimum(peak, bandwidth * grp["ai"]) if bandwidth else peak
        # A case whose tensors fit in the device's cache runs from it, call after call: its
        # memory roof is the cache's bandwidth (measured on CUDA: ceilings.cache_bandwidth).
        cache_bw = ceiling.get((file_id, "", device, "cache_bandwidth"))
        cache_bytes = ceiling.get((file_id, "", device, "cache_bytes"))
        grp["in_cache"] = False
        if cache_bw and cache_bytes:
            grp["in_cache"] = [shapes[s].tensor_bytes(items[d]) <= cache_bytes
                               for s, d in zip(grp["shape"], grp["dtype"], strict=True)]
            grp.loc[grp["in_cache"], "roof"] = np.minimum(peak, cache_bw * grp.loc[grp["in_cache"], "ai"])
        grp["of_roof"] = grp["gflops"] / grp["roof"]
        # Above the roof is no result but a ceiling its benchmark did not reach (older results
        # measured a GEMM only; caches can beat a bandwidth measured beyond them).
        grp["above_roof"] = grp["of_roof"] > ABOVE_ROOF
        best = grp.loc[grp.groupby("impl")["of_roof"].idxmax()].set_index("impl")
        best = best.loc[impl_order(best.index)].reset_index()
        out.append({"file": int(file_id), "machine": grp["machine"].iloc[0], "env": grp["env"].iloc[0],
                    "device": device, "dtype": dtype, "peak": float(peak), "bandwidth": bandwidth,
                    "ridge": float(peak / bandwidth) if bandwidth else None, "peak_source": source,
                    "bandwidth_source": bandwidth_source,
                    "cache_bandwidth": cache_bw, "cache_bytes": cache_bytes,
                    "n_in_cache": int(grp["in_cache"].sum()),
                    "best": best[["impl", "shape", "gflops", "ai", "roof", "of_roof", "above_roof"]],
                    "points": grp[["impl", "shape", "ai", "gflops", "roof", "of_roof", "above_roof"]]
                    .sort_values(["impl", "ai"]).reset_index(drop=True)})
    return out
