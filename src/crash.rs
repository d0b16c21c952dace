//! Crash reports: exception names and a bounded frame-pointer backtrace.
#![forbid(unsafe_code)]

use core::ops::Range;

/// Name of an x86 exception vector.
pub fn exception_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error (#DE)",
        1 => "debug (#DB)",
        2 => "non-maskable interrupt",
        3 => "breakpoint (#BP)",
        4 => "overflow (#OF)",
        5 => "bound range (#BR)",
        6 => "invalid opcode (#UD)",
        7 => "device not available (#NM)",
        8 => "double fault (#DF)",
        10 => "invalid TSS (#TS)",
        11 => "segment not present (#NP)",
        12 => "stack fault (#SS)",
        13 => "general protection (#GP)",
        14 => "page fault (#PF)",
        16 => "x87 floating point (#MF)",
        17 => "alignment check (#AC)",
        18 => "machine check (#MC)",
        19 => "SIMD floating point (#XM)",
        20 => "virtualisation (#VE)",
        21 => "control protection (#CP)",
        _ => "reserved exception",
    }
}

/// Walks saved frame pointers: each frame holds `[saved rbp, return address]`.
/// Stops at a null, misaligned or out-of-stack pointer, a non-increasing
/// chain, or after `max` frames, so a corrupt stack cannot loop or fault.
pub fn backtrace(
    mut rbp: u64,
    stacks: &[Range<u64>],
    read_u64: impl Fn(u64) -> Option<u64>,
    max: usize,
    mut visit: impl FnMut(usize, u64),
) -> usize {
    let mut n = 0;
    while n < max {
        let in_stack = stacks.iter().any(|s| rbp >= s.start && rbp.saturating_add(16) <= s.end);
        if rbp == 0 || !rbp.is_multiple_of(8) || !in_stack {
            break;
        }
        let (Some(next), Some(ret)) = (read_u64(rbp), read_u64(rbp + 8)) else { break };
        if ret == 0 {
            break;
        }
        visit(n, ret);
        n += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    n
}

/// Page-fault error code, decoded.
pub fn page_fault_cause(err: u64) -> &'static str {
    match (err & 1 != 0, err & 2 != 0, err & 16 != 0) {
        (_, _, true) => "instruction fetch",
        (false, false, _) => "read of a not-present page",
        (false, true, _) => "write to a not-present page",
        (true, false, _) => "read protection violation",
        (true, true, _) => "write protection violation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn backtrace_follows_chain_and_stops_safely() {
        let mut mem = HashMap::new();
        // frames at 0x1000 -> 0x1040 -> 0x1080 -> 0 (end)
        mem.insert(0x1000, 0x1040);
        mem.insert(0x1008, 0xaaaa);
        mem.insert(0x1040, 0x1080);
        mem.insert(0x1048, 0xbbbb);
        mem.insert(0x1080, 0);
        mem.insert(0x1088, 0xcccc);
        let read = |a: u64| mem.get(&a).copied();
        let mut seen = Vec::new();
        let n = backtrace(0x1000, &[0x1000..0x2000], read, 16, |_, r| seen.push(r));
        assert_eq!(n, 3);
        assert_eq!(seen, vec![0xaaaa, 0xbbbb, 0xcccc]);
        // A loop in the chain stops.
        let mut loopy = HashMap::new();
        loopy.insert(0x1000, 0x1000);
        loopy.insert(0x1008, 0x1);
        let n = backtrace(0x1000, &[0x1000..0x2000], |a| loopy.get(&a).copied(), 16, |_, _| {});
        assert_eq!(n, 1);
        // Outside the stack or misaligned: nothing read.
        assert_eq!(backtrace(0x5000, &[0x1000..0x2000], |_| panic!("read"), 16, |_, _| {}), 0);
        assert_eq!(backtrace(0x1003, &[0x1000..0x2000], |_| panic!("read"), 16, |_, _| {}), 0);
    }

    #[test]
    fn names() {
        assert_eq!(exception_name(14), "page fault (#PF)");
        assert_eq!(exception_name(31), "reserved exception");
        assert_eq!(page_fault_cause(0), "read of a not-present page");
        assert_eq!(page_fault_cause(0x10), "instruction fetch");
    }
}
