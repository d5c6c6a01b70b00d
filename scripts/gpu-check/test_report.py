"""Tests of report.py, the device check's judge: how raw.txt is parsed and what each check
makes of it. Run: python3 -m unittest discover -s scripts/gpu-check -p 'test_*.py'

The raw inputs here are synthetic (built below), shaped like gpu-check.sh's output: one
passing hardware run, then single-figure changes that must turn exactly the check that reads
them into a fail."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

MIB = 1 << 20
SLICE = 2 << 30


def passing_raw(mode="hardware"):
    kv = {"mode": mode, "manifest.commit": "abc", "gpu.name": "GPU", "gpu.driver": "580"}
    kv.update({"memcap.slice": SLICE, "memcap.meminfo_total": SLICE, "memcap.device_total_mem": SLICE,
               "memcap.exit": 0})
    for p in report.PATHS:
        used = SLICE if p in report.LINEAR else SLICE - 30 * MIB
        kv.update({f"memcap.path.{p}.pieces": 27, f"memcap.path.{p}.refusal_rc": 2,
                   f"memcap.path.{p}.used_full": used, f"memcap.path.{p}.truth_full": used - MIB,
                   f"memcap.path.{p}.left_after_free": 0})
    for p in report.LINEAR:
        kv.update({f"memcap.path.{p}.exact_rc": 0, f"memcap.path.{p}.one_more_rc": 2})
    kv.update({"memcap.path.vmm_host.rc": 0, "memcap.path.vmm_host.charged": 0})
    kv.update({"ctxmod.64m.slice": 64 * MIB, "ctxmod.64m.ctx_rc": 2, "ctxmod.64m.ctx_truth": 0})
    ctx = 500 * MIB
    for s, b in (("1g", 1 << 30), ("4g", 4 << 30)):
        kv.update({f"ctxmod.{s}.slice": b, f"ctxmod.{s}.ctx_rc": 0, f"ctxmod.{s}.ctx_truth": ctx,
                   f"ctxmod.{s}.ctx_used": ctx, f"ctxmod.{s}.module_rc": 0,
                   f"ctxmod.{s}.module_used": ctx + 2 * MIB, f"ctxmod.{s}.module_truth": ctx + 2 * MIB})
    kv.update({"ctxmod.tight.slice": ctx + MIB, "ctxmod.tight.ctx_rc": 0, "ctxmod.tight.module_rc": 2,
               "ctxmod.tight.module_truth": ctx})
    kv.update({"runtime.exit": 0, "runtime.slice": SLICE, "runtime.runtime_version": 12080, "runtime.driver_version": 13000,
               "runtime.meminfo_total": SLICE, "runtime.malloc_pieces": 24, "runtime.malloc_refusal": 2,
               "runtime.free_when_full": 10 * MIB, "runtime.entry_module_load_lib": "libvgpu.so",
               "runtime.entry_launch_lib": "libvgpu.so", "runtime.kernel_values_right": 256})
    held = 1536 * MIB
    kv.update({"smi.holder.used": held, "smi.view.nvml_total": 4 << 30, "smi.view.nvml_used": held,
               "smi.pynvml.nvml_total": 4 << 30, "smi.pynvml.nvml_used": held,
               "smi.nvidia_smi.total_mib": 4096, "smi.nvidia_smi.used_mib": 1536,
               "smi_container.available": 0})
    for label, share in (("plain", 0.97), ("c25", 0.26), ("c50", 0.49), ("c100", 0.96)):
        kv.update({f"cap.{label}.per_s": share * 500, f"cap.{label}.busy_share": share,
                   f"cap.{label}.util_mean": share * 100})
    kv.update({"cap.pair1.per_s": 120, "cap.pair1.busy_share": 0.24, "cap.pair2.per_s": 130,
               "cap.pair2.busy_share": 0.26, "cap.pair.util_mean": 50})
    kv.update({"overhead.exit": 0, "overhead.hooked_differs": 1, "overhead.hooked_lib": "libvgpu.so",
               "overhead.direct_lib": "libcuda.so.1", "overhead.launch_hooked_ns": 2002,
               "overhead.launch_direct_ns": 2000, "overhead.launch_added_ns": 2,
               "overhead.alloc_free_hooked_ns": 9040, "overhead.alloc_free_direct_ns": 9000,
               "overhead.alloc_free_added_ns": 40})
    kv.update({"startup.exit": 0, "startup.processes": 64, "startup.failed_rounds": 0,
               "startup.plain_median_us": 1000, "startup.hooked_median_us": 1200,
               "startup.plain_max_us": 2000, "startup.hooked_max_us": 2400, "startup.ratio": 1.2})
    kv.update({"containers.pid_namespaces": 1 if mode == "hardware" else 0, "containers.truth.exit": 0,
               "containers.truth.procs": 4})
    for c, b, pids in (("A", 2 << 30, (101, 102)), ("B", 3 << 30, (201, 202))):
        kv.update({f"containers.{c}.slice_bytes": b, f"containers.{c}.p1.refusal": 2,
                   f"containers.{c}.p2.refusal": 2,
                   f"containers.{c}.ns_hostpids": " ".join(map(str, (pids[0] - 1,) + pids)),
                   f"containers.{c}.region_hostpids": " ".join(map(str, reversed(pids)))})
        for pid in pids:
            kv[f"containers.truth.pid.{pid}"] = b // 2 - 40 * MIB
    kv["containers.truth.pid.999"] = 50 << 30  # a process of neither container
    return {k: str(v) for k, v in kv.items()}


def statuses(kv):
    return {n: s for n, s, _ in report.judge(kv)}


class ParseTest(unittest.TestCase):
    def test_lines(self):
        kv = report.parse(["a.b=1\n", "no equals sign\n", "# c=2\n", "d = x=y\n", "a.b=3\n"])
        self.assertEqual(kv, {"a.b": "3", "d": "x=y"})


class JudgeTest(unittest.TestCase):
    def test_passing_run_passes_every_check(self):
        st = statuses(passing_raw())
        self.assertEqual([n for n, s in st.items() if s != "pass" and n != "smi_container"], [])
        self.assertEqual(st["smi_container"], "skipped")
        self.assertEqual(len(st), len(report.CHECKS))

    def test_sim_mode_marks_hardware_only(self):
        st = statuses(passing_raw("sim"))
        want = {"runtime", "nvidia_smi", "overhead_target", "startup_ratio", "two_containers_pidns"}
        self.assertEqual({n for n, s in st.items() if s == "hardware-only"}, want)
        self.assertNotIn("fail", st.values())

    def test_sim_with_pid_namespaces_judges_them(self):
        kv = passing_raw("sim")
        kv["containers.pid_namespaces"] = "1"
        self.assertEqual(statuses(kv)["two_containers_pidns"], "pass")

    def assert_only_fails(self, change, *names):
        kv = passing_raw()
        for k, v in change.items():
            if v is None:
                del kv[k]
            else:
                kv[k] = str(v)
        st = statuses(kv)
        self.assertEqual(sorted(n for n, s in st.items() if s == "fail"), sorted(names), change)

    def test_memory_cap_failures(self):
        self.assert_only_fails({"memcap.path.pitch.refusal_rc": 999}, "memcap_pitch")
        self.assert_only_fails({"memcap.path.managed.truth_full": SLICE + 1}, "memcap_managed")
        self.assert_only_fails({"memcap.path.async.left_after_free": 4096}, "memcap_async")
        # Stopped far below the slice: the cap refused too early.
        self.assert_only_fails({"memcap.path.pool.used_full": SLICE // 2}, "memcap_pool")
        self.assert_only_fails({"memcap.path.alloc.one_more_rc": 0}, "memcap_alloc")
        self.assert_only_fails({"memcap.path.alloc.used_full": SLICE - 512}, "memcap_alloc")
        self.assert_only_fails({"memcap.path.pool.exact_rc": 2}, "memcap_pool")
        self.assert_only_fails({"memcap.path.managed.one_more_rc": 0}, "memcap_managed")
        # Paths whose sizes the driver decides are judged within one piece, not to the byte.
        kv = passing_raw()
        self.assertEqual(kv["memcap.path.array2d.used_full"], str(SLICE - 30 * MIB))
        self.assert_only_fails({"memcap.device_total_mem": 80 << 30}, "memcap_meminfo")
        self.assert_only_fails({"memcap.path.vmm_host.charged": 64 * MIB}, "memcap_vmm_host")

    def test_context_and_module(self):
        self.assert_only_fails({"ctxmod.64m.ctx_rc": 0}, "ctx_refused")
        self.assert_only_fails({"ctxmod.64m.ctx_truth": 500 * MIB}, "ctx_refused")
        self.assert_only_fails({"ctxmod.1g.ctx_used": 100 * MIB}, "ctx_charged")
        self.assert_only_fails({"ctxmod.tight.module_truth": 600 * MIB}, "module_tight")

    def test_runtime(self):
        self.assert_only_fails({"runtime.malloc_refusal": 1}, "runtime")
        self.assert_only_fails({"runtime.driver_version": None}, "runtime_loads")
        self.assert_only_fails({"runtime.entry_launch_lib": "libcuda.so.1"}, "runtime")
        self.assert_only_fails({"runtime.kernel_values_right": 0}, "runtime")

    def test_smi(self):
        self.assert_only_fails({"smi.view.nvml_used": 0}, "smi_nvml")
        self.assert_only_fails({"smi.pynvml.nvml_total": 80 << 30}, "smi_pynvml")
        self.assert_only_fails({"smi.nvidia_smi.total_mib": 143771}, "nvidia_smi")

    def test_smi_container_when_available(self):
        held = 1536 * MIB
        kv = passing_raw()
        kv.update({"smi_container.available": "1", "smi_container.holder.used": str(held),
                   "smi_container.view.nvml_total": str(4 << 30),
                   "smi_container.view.nvml_used": str(held),
                   "smi_container.nvidia_smi.total_mib": "4096",
                   "smi_container.nvidia_smi.used_mib": "1536"})
        self.assertEqual(statuses(kv)["smi_container"], "pass")
        kv["smi_container.view.nvml_total"] = str(80 << 30)
        self.assertEqual(statuses(kv)["smi_container"], "fail")

    def test_compute_cap(self):
        self.assert_only_fails({"cap.c25.busy_share": 0.40}, "cap_c25")
        self.assert_only_fails({"cap.c100.per_s": 100}, "cap_c100")
        self.assert_only_fails({"cap.pair2.busy_share": 0.5}, "cap_pair")
        # The uncapped run is the reference of the 100 % check only.
        self.assert_only_fails({"cap.plain.per_s": 0}, "cap_c100")

    def test_overhead_and_startup(self):
        self.assert_only_fails({"overhead.hooked_differs": 0}, "overhead_measured")
        self.assert_only_fails({"overhead.launch_added_ns": 500}, "overhead_target")
        self.assert_only_fails({"startup.failed_rounds": 1}, "startup_runs")
        self.assert_only_fails({"startup.ratio": 2.0}, "startup_ratio")

    def test_two_containers(self):
        both = ("two_containers", "two_containers_pidns")
        self.assert_only_fails({"containers.truth.pid.101": 3 << 30}, *both)
        self.assert_only_fails({"containers.A.region_hostpids": "101 5"}, *both)
        self.assert_only_fails({"containers.B.p2.refusal": 0}, *both)
        self.assert_only_fails({"containers.pid_namespaces": 0}, "two_containers_pidns")

    def test_missing_and_malformed_input_fail_only_their_check(self):
        self.assert_only_fails({"memcap.path.array3d.truth_full": None}, "memcap_array3d")
        self.assert_only_fails({"startup.ratio": "n/a"}, "startup_ratio", "startup_runs")
        kv = passing_raw()
        del kv["runtime.kernel_values_right"]
        res = {n: f for n, _, f in report.judge(kv)}
        self.assertIn("runtime.kernel_values_right", res["runtime"]["error"])

    def test_empty_input_fails_everything_but_optional(self):
        st = statuses({"mode": "hardware"})
        self.assertEqual({s for s in st.values()}, {"fail"})


class MainTest(unittest.TestCase):
    def run_main(self, kv):
        with tempfile.TemporaryDirectory() as d:
            raw = os.path.join(d, "raw.txt")
            with open(raw, "w") as f:
                f.write("".join(f"{k}={v}\n" for k, v in kv.items()))
            res, md = os.path.join(d, "results.txt"), os.path.join(d, "report.md")
            p = subprocess.run([sys.executable, report.__file__, raw, res, md])
            with open(res) as f:
                lines = f.read().splitlines()
            with open(md) as f:
                text = f.read()
            return p.returncode, lines, text

    def test_exit_status_and_files(self):
        rc, lines, md = self.run_main(passing_raw())
        self.assertEqual(rc, 0)
        checks = [l for l in lines if l.startswith("check.")]
        self.assertEqual(len(checks), len(report.CHECKS))
        self.assertIn("check.memcap_alloc=pass", checks)
        self.assertIn("memcap_alloc.exact_rc=0", lines)
        self.assertIn("| memcap_alloc | pass |", md)
        kv = passing_raw()
        kv["memcap.path.alloc.refusal_rc"] = "0"
        rc, lines, _ = self.run_main(kv)
        self.assertEqual(rc, 1)
        self.assertIn("check.memcap_alloc=fail", lines)


if __name__ == "__main__":
    unittest.main()
