//! Arbitrary bytes as xenstore replies: header parsing, payload splitting,
//! watch-event queueing and error handling must never panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvif::testing::xenstore::FakeXenstore;
use xvif::xen::xenstore::client::RSP_RING;
use xvif::xen::xenstore::{Client, XsIo};

fuzz_target!(|data: &[u8]| {
    let xs = FakeXenstore::new(1);
    let mut c = Client::new();
    let mem = xs.mem();
    // Feed the bytes in ring-sized pieces, as a server would.
    for chunk in data.chunks(1024) {
        let _ = RSP_RING.write(mem, chunk);
        if c.pump(mem).is_err() {
            break;
        }
        while c.next_event().is_some() {}
    }
    let _ = xvif::xen::xenstore::wire::split_strings(data);
});
