//! The ledger protocol of SPEC.md §5: reservation, release, slot lifecycle, reclaim, audit.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Barrier};

use shm_layout::*;

const UUID0: &str = "GPU-11111111-2222-3333-4444-555555555555";
const UUID1: &str = "MIG-66666666-7777-8888-9999-000000000000";

fn region_with_limit(limit: u64) -> Box<Region> {
    let region = Region::new_boxed();
    init(
        &region,
        &InitParams {
            devices: vec![
                DeviceInit {
                    uuid: UUID0.into(),
                    limit_bytes: limit,
                    sm_limit: 30,
                },
                DeviceInit {
                    uuid: UUID1.into(),
                    limit_bytes: 0,
                    sm_limit: 0,
                },
            ],
            priority: 0,
            created_unix_ns: 0,
            boot_id_hash: 0,
        },
    )
    .unwrap();
    region
}

fn total(region: &Region, dev: usize) -> u64 {
    region.device(dev).unwrap().reserved_bytes.load(SeqCst)
}

#[test]
fn init_writes_hami_header_and_devices() {
    let region = region_with_limit(1000);
    assert_eq!(region.v1.magic.load(Relaxed), HAMI_MAGIC);
    assert_eq!(region.v1.major_version.load(Relaxed), 1);
    assert_eq!(region.v1.device_num.load(Relaxed), 2);
    assert_eq!(region.v1.utilization_switch.load(Relaxed), 1);
    assert_eq!(region.v1.recent_kernel.load(Relaxed), 2);
    assert_eq!(region.v1.priority.load(Relaxed), 0);
    assert_eq!(region.v1.limit[0].load(Relaxed), 1000);
    assert_eq!(region.v1.sm_limit[0].load(Relaxed), 30);
    assert_eq!(region.device(0).unwrap().limit_bytes.load(Relaxed), 1000);
    assert_eq!(region.uuid_str(0).as_deref(), Some(UUID0));
    assert_eq!(region.uuid_str(1).as_deref(), Some(UUID1));
    assert_eq!(region.uuid_str(2), None);
    assert_eq!(region.uuid_str(99), None);
    assert_eq!(region.find_device(UUID1), Some(1));
    assert_eq!(region.find_device("GPU-nope"), None);
    assert_eq!(region.register_device(UUID1, 5, 5), Ok(1));
    assert_eq!(region.register_device("GPU-third", 7, 0), Ok(2));
    assert_eq!(region.v1.device_num.load(Relaxed), 3);
    assert_eq!(
        region.device(2).unwrap().uuid_key.load(Relaxed),
        uuid_key("GPU-third")
    );
    assert_eq!(
        region.set_uuid(0, &"x".repeat(UUID_LEN)),
        Err(LayoutError::BadUuid { len: UUID_LEN })
    );
    assert_eq!(
        region.set_uuid(MAX_DEVICES, "GPU-x"),
        Err(LayoutError::DeviceIndex(MAX_DEVICES))
    );
}

#[test]
fn reinit_zeroes_previous_content() {
    let region = region_with_limit(1000);
    let slot = region.claim_slot(owner_token(7, 1), 7, 70, 1).unwrap();
    region.try_reserve(slot, 0, 10).unwrap();
    region.init_unpublished(&InitParams::default()).unwrap();
    assert!(region.is_all_zero() || region.v1.magic.load(Relaxed) == 0);
    assert_eq!(total(&region, 0), 0);
    assert_eq!(region.v1.procs[slot].status.load(Relaxed), 0);
}

#[test]
fn usage_helper_keeps_total_equal_to_parts() {
    let region = region_with_limit(0);
    let slot = &region.v1.procs[3];
    slot.store_usage(
        1,
        &SlotUsage {
            context_size: 100,
            module_size: 20,
            data_size: 3,
        },
    );
    assert_eq!(slot.used[1].total.load(Relaxed), 123);
    let after = slot.adjust_usage(1, MemoryKind::Data, 1000);
    assert_eq!(after.total(), 1123);
    let after = slot.adjust_usage(1, MemoryKind::Module, -50);
    assert_eq!(after.module_size, 0, "saturates instead of wrapping");
    let (usage, total) = slot.load_usage(1);
    assert_eq!(usage, after);
    assert_eq!(total, usage.total());
    assert_eq!(slot.seqlock.load(Relaxed) % 2, 0);
    assert_eq!(slot.seqlock.load(Relaxed), 6, "three writes, +2 each");
}

#[test]
fn concurrent_usage_writers_keep_invariant() {
    let region: Arc<Region> = Arc::from(region_with_limit(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let region = Arc::clone(&region);
            std::thread::spawn(move || {
                let kind = [MemoryKind::Context, MemoryKind::Module, MemoryKind::Data][t % 3];
                for _ in 0..2000 {
                    region.v1.procs[0].adjust_usage(0, kind, 3);
                    let (usage, total) = region.v1.procs[0].load_usage(0);
                    assert_eq!(usage.total(), total);
                    region.v1.procs[0].adjust_usage(0, kind, -1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (usage, total) = region.v1.procs[0].load_usage(0);
    assert_eq!(total, 4 * 2000 * 2);
    assert_eq!(usage.total(), total);
}

#[test]
fn reserve_respects_limit_and_release_restores() {
    let region = region_with_limit(1000);
    let slot = region.claim_slot(owner_token(10, 1), 10, 555, 1).unwrap();
    assert_eq!(region.try_reserve(slot, 0, 600), Ok(600));
    assert_eq!(
        region.try_reserve(slot, 0, 401),
        Err(ReserveError::OverLimit {
            limit: 1000,
            reserved: 600,
            requested: 401
        })
    );
    // A reservation counts as the peak only once granted (note_peak): one the driver then
    // refuses and gives back never does.
    region.note_peak(0);
    assert_eq!(
        region.device(0).unwrap().peak_reserved_bytes.load(Relaxed),
        600
    );
    assert_eq!(region.try_reserve(slot, 0, 400), Ok(1000));
    assert_eq!(
        region.device(0).unwrap().peak_reserved_bytes.load(Relaxed),
        600
    );
    region.note_peak(0);
    assert_eq!(region.release(slot, 0, 300), 300);
    assert_eq!(total(&region, 0), 700);
    // Releasing more than the slot holds returns only what it holds.
    assert_eq!(region.release(slot, 0, 10_000), 700);
    assert_eq!(total(&region, 0), 0);
    // Device 1 has no cap, but the total still cannot overflow.
    assert_eq!(region.try_reserve(slot, 1, u64::MAX), Ok(u64::MAX));
    assert!(region.try_reserve(slot, 1, 1).is_err());
    assert_eq!(
        region.try_reserve(slot, MAX_DEVICES, 1),
        Err(ReserveError::BadIndex)
    );
    let dev0 = region.device(0).unwrap();
    assert_eq!(dev0.peak_reserved_bytes.load(Relaxed), 1000);
    assert_eq!(dev0.reserve_failures.load(Relaxed), 1);
    assert_eq!(region.ext.slots[slot].op_seq.load(Relaxed) % 2, 0);
}

#[test]
fn racing_for_the_last_bytes_exactly_one_wins() {
    const THREADS: usize = 8;
    for round in 0..50u64 {
        let region: Arc<Region> = Arc::from(region_with_limit(1000));
        let slots: Vec<usize> = (0..THREADS)
            .map(|t| {
                region
                    .claim_slot(owner_token(t as i32 + 1, 1), t as i32 + 1, round, 0)
                    .unwrap()
            })
            .collect();
        let filler = slots[0];
        region.try_reserve(filler, 0, 900).unwrap();
        let barrier = Arc::new(Barrier::new(THREADS));
        let winners: usize = slots
            .iter()
            .map(|&slot| {
                let region = Arc::clone(&region);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    region.try_reserve(slot, 0, 60).is_ok() as usize
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(winners, 1, "round {round}");
        assert_eq!(total(&region, 0), 960);
        assert_eq!(region.audit_totals().unwrap()[0], 960);
    }
}

#[test]
fn many_threads_never_exceed_limit_and_ledger_is_exact() {
    let region: Arc<Region> = Arc::from(region_with_limit(10_000));
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let region = Arc::clone(&region);
            std::thread::spawn(move || {
                let slot = region
                    .claim_slot(owner_token(100 + t, 9), 100 + t, 1, 0)
                    .unwrap();
                let mut held = 0u64;
                for i in 0..20_000u64 {
                    let size = 1 + (i * 7919 + t as u64 * 31) % 700;
                    if region.try_reserve(slot, 0, size).is_ok() {
                        held += size;
                    }
                    assert!(total(&region, 0) <= 10_000);
                    if i % 3 == 0 {
                        held -= region.release(slot, 0, size.min(held));
                    }
                }
                assert_eq!(region.ext.slots[slot].reserved[0].load(SeqCst), held);
                held
            })
        })
        .collect();
    let held: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total(&region, 0), held);
    assert_eq!(region.audit_totals().unwrap()[0], held);
}

#[test]
fn claim_and_release_lifecycle() {
    let region = region_with_limit(1000);
    let token_a = owner_token(41, 5);
    let a = region.claim_slot(token_a, 41, 4100, 11).unwrap();
    let b = region.claim_slot(owner_token(42, 5), 42, 4200, 12).unwrap();
    assert_eq!((a, b), (0, 1));
    assert_eq!(region.v1.proc_num.load(Relaxed), 2);
    assert_eq!(region.v1.procs[a].status.load(Relaxed), SLOT_STATUS_ACTIVE);
    assert_eq!(region.v1.procs[a].pid.load(Relaxed), 41);
    let ext = &region.ext.slots[a];
    assert_eq!(ext.state.load(Relaxed), slot_state::ACTIVE);
    assert_eq!(ext.start_time.load(Relaxed), 4100);
    assert_eq!(ext.owner_token.load(Relaxed) >> 32, 41);
    region.try_reserve(a, 0, 250).unwrap();
    region.try_reserve(a, 1, 7).unwrap();
    region.try_reserve(b, 0, 100).unwrap();
    assert_eq!(
        region.reclaim_slot(a, token_a ^ 2),
        Err(LayoutError::NotOwner { slot: a })
    );
    let report = region.reclaim_slot(a, token_a).unwrap();
    assert_eq!(report.returned[0], 250);
    assert_eq!(report.returned[1], 7);
    assert!(!report.audit_needed);
    assert_eq!(total(&region, 0), 100);
    assert_eq!(total(&region, 1), 0);
    assert_eq!(ext.state.load(Relaxed), slot_state::FREE);
    assert_eq!(ext.owner_token.load(Relaxed), 0);
    assert_eq!(region.v1.procs[a].status.load(Relaxed), 0);
    assert_eq!(region.v1.procs[a].pid.load(Relaxed), 0);
    // Slots never move: the freed slot 0 is reused in place, slot 1 stays at 1,
    // and proc_num (a high-water mark) does not shrink.
    let c = region.claim_slot(owner_token(43, 5), 43, 4300, 13).unwrap();
    assert_eq!(c, 0);
    assert_eq!(region.v1.procs[b].pid.load(Relaxed), 42);
    assert_eq!(region.v1.proc_num.load(Relaxed), 2);
    assert!(region.ext.header.generation.load(Relaxed) >= 4);
}

#[test]
fn owner_killed_mid_operation_is_fixed_by_audit() {
    let region = region_with_limit(1000);
    let token = owner_token(50, 1);
    let dead = region.claim_slot(token, 50, 1, 0).unwrap();
    let live = region.claim_slot(owner_token(51, 1), 51, 1, 0).unwrap();
    region.try_reserve(live, 0, 300).unwrap();
    region.try_reserve(dead, 0, 200).unwrap();
    // Simulate SIGKILL between the CAS on the total and the slot count: total charged,
    // slot count not, op_seq odd.
    let slot = &region.ext.slots[dead];
    slot.op_seq.fetch_add(1, SeqCst);
    region
        .device(0)
        .unwrap()
        .reserved_bytes
        .fetch_add(50, SeqCst);
    assert_eq!(total(&region, 0), 550);
    // While the dead slot is ACTIVE and odd, audits refuse (they cannot tell what it did).
    assert_eq!(region.audit_totals(), Err(AuditBusy));
    let report = region.reclaim_slot(dead, token).unwrap();
    assert!(report.audit_needed);
    assert_eq!(report.returned, [0; MAX_DEVICES]);
    assert!(region.audit_needed());
    let sums = region.audit_totals().unwrap();
    assert_eq!(sums[0], 300);
    assert_eq!(total(&region, 0), 300);
    assert!(!region.audit_needed());
}

#[test]
fn audit_is_exact_under_concurrent_traffic() {
    let region: Arc<Region> = Arc::from(region_with_limit(1 << 20));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let region = Arc::clone(&region);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let slot = region
                    .claim_slot(owner_token(t + 1, 3), t + 1, 0, 0)
                    .unwrap();
                let mut i = 0u64;
                while !stop.load(Relaxed) {
                    let size = 1 + i % 977;
                    if region.try_reserve(slot, 0, size).is_ok() {
                        region.release(slot, 0, size / 2);
                    }
                    i += 1;
                    if total(&region, 0) > (1 << 19) {
                        region.release(slot, 0, u64::MAX);
                    }
                }
            })
        })
        .collect();
    // Corrupt the total once; audits must repair it exactly while traffic runs.
    region
        .device(0)
        .unwrap()
        .reserved_bytes
        .fetch_add(12_345, SeqCst);
    let mut successes = 0;
    for _ in 0..20_000 {
        if region.audit_totals().is_ok() {
            successes += 1;
        }
    }
    stop.store(true, Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(successes > 0, "audit never found a quiet instant");
    let slot_sum: u64 = (0..3)
        .map(|i| region.ext.slots[i].reserved[0].load(SeqCst))
        .sum();
    assert_eq!(total(&region, 0), slot_sum);
}

#[test]
fn proc_stat_parsing_and_liveness() {
    let stat = "1234 (my (weird) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 \
                4 0 987654 12345678 300 18446744073709551615";
    assert_eq!(
        parse_proc_stat(stat),
        Some(ProcStat {
            state: 'S',
            start_time: 987654
        })
    );
    assert!(owner_is_alive(987654, Some(stat)));
    assert!(!owner_is_alive(987655, Some(stat)), "pid reused");
    assert!(!owner_is_alive(987654, None), "gone");
    let zombie = stat.replace(") S ", ") Z ");
    assert!(!owner_is_alive(987654, Some(&zombie)));
    assert_eq!(parse_proc_stat("garbage"), None);
    // This process, for real.
    let own = std::fs::read_to_string("/proc/self/stat").unwrap();
    let parsed = parse_proc_stat(&own).unwrap();
    assert!(owner_is_alive(parsed.start_time, Some(&own)));
}

#[test]
fn owner_token_encodes_pid_and_is_never_zero() {
    assert_eq!(owner_token(0, 0), 1);
    assert_eq!(owner_token(77, 4) >> 32, 77);
    assert_ne!(owner_token(77, 4) & 0xffff_ffff, 0);
}

/// A reservation that publishes the monitor's figure (`try_reserve_with_usage`) moves the
/// slot's `used` and `reserved` together, a refused one moves neither, and a release with
/// usage takes both back: with threads of one slot racing near the cap, every slot's
/// `used` equals its `reserved`, and the total the sum, at the end.
#[test]
fn reserve_with_usage_moves_used_and_reserved_together() {
    let region = region_with_limit(1000);
    let slot = region.claim_slot(owner_token(11, 1), 11, 5, 1).unwrap();
    let used = |r: &Region| r.v1.procs[slot].load_usage(0).0;
    assert_eq!(
        region.try_reserve_with_usage(slot, 0, 600, Some(MemoryKind::Data)),
        Ok(600)
    );
    assert_eq!((used(&region).data_size, used(&region).total()), (600, 600));
    assert!(region
        .try_reserve_with_usage(slot, 0, 401, Some(MemoryKind::Data))
        .is_err());
    assert_eq!(
        used(&region).total(),
        600,
        "a refused reservation publishes nothing"
    );
    assert_eq!(
        region.release_with_usage(slot, 0, 600, Some(MemoryKind::Data)),
        600
    );
    assert_eq!((used(&region).total(), total(&region, 0)), (0, 0));
    assert_eq!(region.v1.procs[slot].seqlock.load(SeqCst) % 2, 0);

    let region: Arc<Region> = Arc::from(region_with_limit(10_000));
    let slot = region.claim_slot(owner_token(12, 1), 12, 5, 1).unwrap();
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let region = Arc::clone(&region);
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in 0..20_000u64 {
                    let size = 1 + (i * 7919 + t * 31) % 900;
                    if region
                        .try_reserve_with_usage(slot, 0, size, Some(MemoryKind::Data))
                        .is_ok()
                    {
                        held.push(size);
                    }
                    assert!(total(&region, 0) <= 10_000);
                    if i % 2 == 0 {
                        if let Some(size) = held.pop() {
                            region.release_with_usage(slot, 0, size, Some(MemoryKind::Data));
                        }
                    }
                }
                held.iter().sum::<u64>()
            })
        })
        .collect();
    let held: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let (usage, _) = region.v1.procs[slot].load_usage(0);
    assert_eq!(usage.data_size, held);
    assert_eq!(region.ext.slots[slot].reserved[0].load(SeqCst), held);
    assert_eq!(total(&region, 0), held);
    assert_eq!(region.audit_totals().unwrap()[0], held);
}

const EXITING_ONLY: ReapScope = ReapScope {
    pid_ns: 0,
    unknown_ns: true,
    only_exiting: true,
};

#[test]
fn an_exiting_slot_keeps_its_charges_until_its_owner_is_gone() {
    let region = region_with_limit(1000);
    let token = owner_token(60, 3);
    let leaving = region.claim_slot(token, 60, 6000, 0).unwrap();
    let staying = region.claim_slot(owner_token(61, 3), 61, 6100, 0).unwrap();
    region
        .try_reserve_with_usage(leaving, 0, 700, Some(MemoryKind::Data))
        .unwrap();
    region.try_reserve(staying, 0, 200).unwrap();
    // Only the owner's token marks it; marking credits nothing and keeps the v1 entry.
    assert!(!region.mark_exiting(leaving, token ^ 2));
    assert!(!region.any_exiting());
    assert!(region.mark_exiting(leaving, token));
    assert!(
        !region.mark_exiting(leaving, token),
        "only ACTIVE -> EXITING"
    );
    assert!(region.any_exiting());
    let ext = &region.ext.slots[leaving];
    assert_eq!(ext.state.load(Relaxed), slot_state::EXITING);
    assert_eq!(total(&region, 0), 900);
    assert_eq!(
        region.v1.procs[leaving].status.load(Relaxed),
        SLOT_STATUS_ACTIVE
    );
    assert_eq!(region.v1.procs[leaving].load_usage(0).0.data_size, 700);
    // The exiting slot's charge is still the container's: the neighbour cannot take it.
    assert!(region.try_reserve(staying, 0, 101).is_err());
    // An audit counts the exiting slot (the driver may still hold its memory).
    region.device(0).unwrap().reserved_bytes.store(5, SeqCst);
    assert_eq!(region.audit_totals().unwrap()[0], 900);
    // While the owner runs, a reap leaves it; the cheap pass looks at exiting slots only.
    let mut asked = Vec::new();
    let n = region.reap_gone(EXITING_ONLY, &mut |pid, _| {
        asked.push(pid);
        false
    });
    assert_eq!((n, asked), (0, vec![60]));
    assert_eq!(total(&region, 0), 900);
    // Gone: reclaimed, and the neighbour gets the memory at once.
    let n = region.reap_gone(EXITING_ONLY, &mut |pid, start| pid == 60 && start == 6000);
    assert_eq!(n, 1);
    assert_eq!(total(&region, 0), 200);
    assert_eq!(ext.state.load(Relaxed), slot_state::FREE);
    assert_eq!(region.v1.procs[leaving].status.load(Relaxed), 0);
    assert!(!region.any_exiting());
    region.try_reserve(staying, 0, 800).unwrap();
}

#[test]
fn a_reaper_leaves_alone_the_slots_of_another_pid_namespace() {
    let region = region_with_limit(1000);
    let a = region.claim_slot(owner_token(70, 1), 70, 1, 0).unwrap();
    let b = region.claim_slot(owner_token(71, 1), 71, 1, 0).unwrap();
    let c = region.claim_slot(owner_token(72, 1), 72, 1, 0).unwrap();
    region.ext.slots[a].pid_ns.store(111, Relaxed);
    region.ext.slots[b].pid_ns.store(222, Relaxed);
    // c: written before the field existed (0): judged as before.
    for s in [a, b, c] {
        region.try_reserve(s, 0, 100).unwrap();
    }
    // Every pid reads as gone to this reaper, but only a (its namespace) may be judged by
    // it, and c (unknown) only by a reaper that knows all users share its namespace.
    let strict = ReapScope {
        pid_ns: 111,
        unknown_ns: false,
        only_exiting: false,
    };
    assert_eq!(region.reap_gone(strict, &mut |_, _| true), 1, "a only");
    assert_eq!(region.ext.slots[c].state.load(Relaxed), slot_state::ACTIVE);
    let lenient = ReapScope {
        unknown_ns: true,
        ..strict
    };
    assert_eq!(region.reap_gone(lenient, &mut |_, _| true), 1, "c");
    assert_eq!(region.ext.slots[b].state.load(Relaxed), slot_state::ACTIVE);
    assert_eq!(total(&region, 0), 100);
    assert_eq!(
        region.ext.slots[a].pid_ns.load(Relaxed),
        0,
        "cleared on reclaim"
    );
}

#[test]
fn a_claim_looks_from_the_hint_on_then_wraps_and_any_free_slot_is_taken() {
    let region = region_with_limit(0);
    let a = region.claim_slot(owner_token(1, 1), 1, 10, 0).unwrap();
    let b = region.claim_slot(owner_token(2, 1), 2, 20, 0).unwrap();
    assert_eq!((a, b), (0, 1));
    assert_eq!(region.free_slot_hint(), 2, "the first slot that looks free");
    // From a hint past every free slot it wraps around to the first free one.
    region.reclaim_slot(a, owner_token(1, 1)).unwrap();
    assert_eq!(region.free_slot_hint(), 0);
    let last = MAX_PROCS - 1;
    let from_end = region
        .claim_slot_from(last, owner_token(3, 1), 3, 30, 0)
        .unwrap();
    assert_eq!(from_end, last);
    let wrapped = region
        .claim_slot_from(last, owner_token(4, 1), 4, 40, 0)
        .unwrap();
    assert_eq!(wrapped, 0, "wrapped to the freed slot");
    // A stale hint (the slot taken meanwhile) only means looking on.
    let on = region
        .claim_slot_from(1, owner_token(5, 1), 5, 50, 0)
        .unwrap();
    assert_eq!(on, 2);
    assert_eq!(region.ext.slots[on].pid.load(Relaxed), 5);
    assert_eq!(region.v1.procs[on].status.load(Relaxed), SLOT_STATUS_ACTIVE);
}
