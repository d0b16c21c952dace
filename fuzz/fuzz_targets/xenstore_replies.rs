//! Arbitrary bytes as xenstore replies, with requests outstanding so that
//! replies can match them: header parsing, payload splitting, reply
//! matching, watch-event queueing and error handling must never panic or
//! loop. Checked beyond that: the event queue stays bounded, events are
//! counted, a stream error kills the client for good, and a dead client
//! refuses every later request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvif::testing::xenstore::FakeXenstore;
use xvif::xen::xenstore::client::{MAX_WATCH_EVENTS, RSP_RING};
use xvif::xen::xenstore::{Client, XsIo};

fuzz_target!(|data: &[u8]| {
    let xs = FakeXenstore::new(1);
    let mut c = Client::new();
    let mem = xs.mem();
    // Requests 1..=3 wait for replies the input may carry.
    let ids: Vec<u32> = ["a", "b", "c"].iter().filter_map(|p| c.submit_read(p).ok()).collect();
    let _ = c.filter_exact("tok", "/exact");
    let mut events = 0u64;
    // Feed the bytes in ring-sized pieces, as a server would.
    for chunk in data.chunks(1024) {
        let _ = RSP_RING.write(mem, chunk);
        let r = c.pump(mem);
        let mut n = 0;
        while c.next_event().is_some() {
            n += 1;
        }
        assert!(n <= MAX_WATCH_EVENTS, "{n} events queued");
        events += n as u64;
        for &id in &ids {
            let _ = c.poll_reply(id);
        }
        if r.is_err() {
            assert!(c.dead().is_some(), "a stream error left the client alive");
            assert!(c.pump(mem).is_err() && c.submit_read("d").is_err(), "a dead client kept working");
            break;
        }
    }
    let s = c.stats;
    assert!(events + s.events_dropped + s.events_filtered <= s.events, "events: {events} out, {s:?}");
    let _ = xvif::xen::xenstore::wire::split_strings(data);
});
