"""A PyTorch-style caching allocator over cuda-bindings (the real NVIDIA Python client,
resolving every entry point through cuGetProcAddress_v2), run under libvgpu.

Pattern: the budget comes from cuMemGetInfo (like vLLM's gpu_memory_utilization), big
segments are reserved until the driver refuses, blocks are freed and reused, and free
memory must move consistently with what was allocated. Prints key=value lines for the test.
"""
import sys

from cuda.bindings import driver as cu

MIB = 1 << 20


def ok(res):
    """Unwraps cuda-bindings' (error, *values) tuples; exits on an error."""
    err, *vals = res if isinstance(res, tuple) else (res,)
    if err != cu.CUresult.CUDA_SUCCESS:
        raise SystemExit(f"error={err}")
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else tuple(vals)


def main():
    segment = int(sys.argv[1]) * MIB if len(sys.argv) > 1 else 256 * MIB
    ok(cu.cuInit(0))
    dev = ok(cu.cuDeviceGet(0))
    ctx = ok(cu.cuDevicePrimaryCtxRetain(dev))
    ok(cu.cuCtxSetCurrent(ctx))
    free0, total = ok(cu.cuMemGetInfo())
    print(f"total={total}")
    print(f"free_start={free0}")
    # Reserve segments until the driver refuses (the caching allocator's growth phase).
    segments = []
    refusal = None
    while True:
        err, ptr = cu.cuMemAlloc(segment)
        if err != cu.CUresult.CUDA_SUCCESS:
            refusal = err
            break
        segments.append(ptr)
    print(f"segments={len(segments)}")
    print(f"refusal={int(refusal)}")
    print(f"refusal_name={cu.cuGetErrorName(refusal)[1].decode()}")
    free1, _ = ok(cu.cuMemGetInfo())
    print(f"free_full={free1}")
    # Release half (empty_cache), then grow again with smaller blocks to the byte.
    for p in segments[::2]:
        ok(cu.cuMemFree(p))
    kept = segments[1::2]
    free2, _ = ok(cu.cuMemGetInfo())
    print(f"free_after_release={free2}")
    blocks = []
    while True:
        err, ptr = cu.cuMemAlloc(segment // 4)
        if err != cu.CUresult.CUDA_SUCCESS:
            break
        blocks.append(ptr)
    free3, _ = ok(cu.cuMemGetInfo())
    print(f"reuse_blocks={len(blocks)}")
    print(f"free_after_reuse={free3}")
    # Stream-ordered allocations (the async allocator backend).
    stream = ok(cu.cuStreamCreate(0))
    err, ptr = cu.cuMemAllocAsync(free3 + 1, stream)
    print(f"async_over_rc={int(err)}")
    for p in kept + blocks:
        ok(cu.cuMemFree(p))
    free4, _ = ok(cu.cuMemGetInfo())
    print(f"free_end={free4}")


main()
