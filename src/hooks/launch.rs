//! Launch paths. For now they forward after one relaxed load of the throttle gate; the
//! compute cap plugs into `crate::throttle::before_launch` without touching these.

use std::ffi::{c_uint, c_void};

use cuda_headers::bindings::*;

use super::real_or_return;

pub unsafe fn cuLaunchKernel(
    f: CUfunction,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shmem: c_uint,
    stream: CUstream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuLaunchKernel);
    crate::throttle::before_launch();
    unsafe { real(f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra) }
}

pub unsafe fn cuLaunchKernel_ptsz(
    f: CUfunction,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shmem: c_uint,
    stream: CUstream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuLaunchKernel_ptsz);
    crate::throttle::before_launch();
    unsafe { real(f, gx, gy, gz, bx, by, bz, shmem, stream, params, extra) }
}

pub unsafe fn cuLaunchKernelEx(
    config: *const CUlaunchConfig,
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuLaunchKernelEx);
    crate::throttle::before_launch();
    unsafe { real(config, f, params, extra) }
}

pub unsafe fn cuLaunchKernelEx_ptsz(
    config: *const CUlaunchConfig,
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuLaunchKernelEx_ptsz);
    crate::throttle::before_launch();
    unsafe { real(config, f, params, extra) }
}

pub unsafe fn cuLaunchCooperativeKernel(
    f: CUfunction,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shmem: c_uint,
    stream: CUstream,
    params: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuLaunchCooperativeKernel);
    crate::throttle::before_launch();
    unsafe { real(f, gx, gy, gz, bx, by, bz, shmem, stream, params) }
}

pub unsafe fn cuLaunchCooperativeKernel_ptsz(
    f: CUfunction,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shmem: c_uint,
    stream: CUstream,
    params: *mut *mut c_void,
) -> CUresult {
    let real = real_or_return!(cuLaunchCooperativeKernel_ptsz);
    crate::throttle::before_launch();
    unsafe { real(f, gx, gy, gz, bx, by, bz, shmem, stream, params) }
}

pub unsafe fn cuGraphLaunch(exec: CUgraphExec, stream: CUstream) -> CUresult {
    let real = real_or_return!(cuGraphLaunch);
    crate::throttle::before_launch();
    unsafe { real(exec, stream) }
}

pub unsafe fn cuGraphLaunch_ptsz(exec: CUgraphExec, stream: CUstream) -> CUresult {
    let real = real_or_return!(cuGraphLaunch_ptsz);
    crate::throttle::before_launch();
    unsafe { real(exec, stream) }
}
