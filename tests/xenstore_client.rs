//! The real xenstore client against an in-memory xenstore speaking the wire
//! protocol over a ring page, including hostile and broken replies.

use xvif::testing::xenstore::FakeXenstore;
use xvif::xen::xenstore::client::{MAX_TX_RETRIES, MAX_WATCH_EVENTS, RSP_RING};
use xvif::xen::xenstore::wire::{Header, MsgType};
use xvif::xen::xenstore::{Client, Perm, PermKind, WatchEvent, XsError};

fn setup() -> (FakeXenstore, Client) {
    (FakeXenstore::new(5), Client::new())
}

#[test]
fn read_write_mkdir_rm_directory() {
    let (xs, mut c) = setup();
    assert_eq!(c.read_str(&xs, 0, "domid").unwrap(), "5");
    c.write(&xs, 0, "data/a", b"hello").unwrap();
    assert_eq!(xs.get("/local/domain/5/data/a").unwrap(), b"hello");
    assert_eq!(c.read(&xs, 0, "data/a").unwrap(), b"hello");
    c.mkdir(&xs, 0, "data/dir").unwrap();
    c.write(&xs, 0, "data/dir/x", b"1").unwrap();
    c.write(&xs, 0, "data/dir/y", b"2").unwrap();
    assert_eq!(c.directory(&xs, 0, "data/dir").unwrap(), vec!["x", "y"]);
    c.rm(&xs, 0, "data/dir").unwrap();
    assert!(c.read(&xs, 0, "data/dir/x").unwrap_err().is_enoent());
    assert_eq!(c.read_u64(&xs, 0, "data/dir/y").unwrap_err(), XsError::Server("ENOENT".into()));
    // A value larger than one ring's worth streams through.
    let big = vec![b'z'; 3000];
    c.write(&xs, 0, "data/big", &big).unwrap();
    assert_eq!(c.read(&xs, 0, "data/big").unwrap(), big);
}

#[test]
fn permissions_roundtrip() {
    let (xs, mut c) = setup();
    c.write(&xs, 0, "data/p", b"").unwrap();
    let perms = [Perm { kind: PermKind::None, domid: 5 }, Perm { kind: PermKind::Read, domid: 7 }];
    c.set_perms(&xs, 0, "data/p", &perms).unwrap();
    assert_eq!(c.get_perms(&xs, 0, "data/p").unwrap(), perms.to_vec());
    assert!(matches!(c.set_perms(&xs, 0, "data/p", &[]), Err(XsError::BadRequest(_))));
}

#[test]
fn watches_fire_and_queue_is_bounded() {
    let (xs, mut c) = setup();
    c.watch(&xs, "data/w", "tok").unwrap();
    // Fires once on registration.
    assert_eq!(c.next_event(), Some(WatchEvent { path: "/local/domain/5/data/w".into(), token: "tok".into() }));
    xs.set("/local/domain/5/data/w/k", b"v", 0);
    xs.serve();
    c.pump(xvif::xen::xenstore::XsIo::mem(&xs)).unwrap();
    assert_eq!(c.next_event().unwrap().path, "/local/domain/5/data/w/k");
    assert_eq!(c.next_event(), None);
    // A flood of events keeps only the newest MAX_WATCH_EVENTS and counts the rest.
    for i in 0..(MAX_WATCH_EVENTS + 44) {
        xs.set(&format!("/local/domain/5/data/w/{i}"), b"v", 0);
        xs.serve();
        c.pump(xvif::xen::xenstore::XsIo::mem(&xs)).unwrap();
    }
    assert_eq!(c.stats.events_dropped, 44);
    let mut n = 0;
    while c.next_event().is_some() {
        n += 1;
    }
    assert_eq!(n, MAX_WATCH_EVENTS);
    c.unwatch(&xs, "data/w", "tok").unwrap();
    xs.set("/local/domain/5/data/w/after", b"v", 0);
    xs.serve();
    c.pump(xvif::xen::xenstore::XsIo::mem(&xs)).unwrap();
    assert_eq!(c.next_event(), None);
}

#[test]
fn transactions_retry_on_eagain_and_give_up() {
    let (xs, mut c) = setup();
    xs.fail_commits.set(3);
    let mut attempts = 0;
    c.transaction(&xs, |c, tx| {
        attempts += 1;
        c.write(&xs, tx, "data/t", b"1")
    })
    .unwrap();
    assert_eq!(attempts, 4);
    xs.fail_commits.set(1000);
    let mut attempts = 0;
    let e = c
        .transaction(&xs, |_, _| {
            attempts += 1;
            Ok(())
        })
        .unwrap_err();
    assert!(e.is_eagain());
    assert_eq!(attempts, MAX_TX_RETRIES);
    // An error inside the body aborts (no commit) and is returned.
    xs.fail_commits.set(0);
    let e = c.transaction(&xs, |c, tx| c.read(&xs, tx, "data/missing")).unwrap_err();
    assert!(e.is_enoent());
    assert_eq!(xs.log.borrow().last().unwrap().0, MsgType::TransactionEnd);
}

#[test]
fn error_and_wrong_type_replies_are_typed() {
    let (xs, mut c) = setup();
    xs.errors.borrow_mut().insert("/local/domain/5/data/secret".into(), "EACCES".into());
    assert_eq!(c.read(&xs, 0, "data/secret"), Err(XsError::Server("EACCES".into())));
    // A reply of the wrong type for our request id.
    let raw = xvif::xen::xenstore::wire::encode(MsgType::Directory, 2, 0, &[b"x\0"]).unwrap();
    *xs.raw_next_reply.borrow_mut() = Some(raw);
    assert_eq!(c.read(&xs, 0, "domid"), Err(XsError::UnexpectedReply { sent: MsgType::Read, got: MsgType::Directory }));
    // Still usable afterwards.
    assert_eq!(c.read_str(&xs, 0, "domid").unwrap(), "5");
    xs.set("/local/domain/5/data/n", b"12x", 0);
    assert!(matches!(c.read_u64(&xs, 0, "data/n"), Err(XsError::BadReply(_))));
    xs.set("/local/domain/5/data/n", b"99999999999999999999999", 0);
    assert!(matches!(c.read_u64(&xs, 0, "data/n"), Err(XsError::BadReply(_))));
    assert!(matches!(c.read(&xs, 0, "bad\0path"), Err(XsError::BadRequest(_))));
    assert!(matches!(c.write(&xs, 0, "data/huge", &vec![0u8; 5000]), Err(XsError::BadRequest(_))));
}

#[test]
fn oversized_header_kills_the_connection_without_panic() {
    let (xs, mut c) = setup();
    let mut raw = Header { ty: MsgType::Read, req_id: 1, tx_id: 0, len: 0 }.encode().to_vec();
    raw[12..16].copy_from_slice(&60_000u32.to_le_bytes());
    *xs.raw_next_reply.borrow_mut() = Some(raw);
    assert!(matches!(c.read(&xs, 0, "domid"), Err(XsError::Protocol(_))));
    assert!(c.dead().is_some());
    assert!(matches!(c.read(&xs, 0, "domid"), Err(XsError::Protocol(_))));
}

#[test]
fn corrupt_ring_indices_are_a_protocol_error() {
    let (xs, mut c) = setup();
    c.read(&xs, 0, "domid").unwrap();
    xs.corrupt_rsp_indices();
    assert!(matches!(c.read(&xs, 0, "domid"), Err(XsError::Protocol(_))));
}

#[test]
fn no_answer_times_out() {
    let (xs, mut c) = setup();
    xs.answering.set(false);
    assert_eq!(c.read(&xs, 0, "domid"), Err(XsError::Timeout { ty: MsgType::Read }));
}

/// Poor man's fuzzing of the reply path: random bytes (from a fixed-seed
/// generator) written into the response ring must give typed results only.
#[test]
fn random_reply_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let xs = FakeXenstore::new(1);
        let mut c = Client::new();
        let len = (rand() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
        if rand() % 2 == 0 && bytes.len() >= 16 {
            // Keep the header plausible half the time to reach payload parsing.
            bytes[12..16].copy_from_slice(&((len - 16) as u32).to_le_bytes());
            bytes[0..4].copy_from_slice(&((rand() % 24) as u32).to_le_bytes());
        }
        let mem = xvif::xen::xenstore::XsIo::mem(&xs);
        let _ = RSP_RING.write(mem, &bytes);
        if rand() % 4 == 0 {
            mem.write_u32(RSP_RING.prod, rand() as u32);
        }
        let _ = c.pump(mem);
        while c.next_event().is_some() {}
    }
}

#[test]
fn writes_without_waiting_land_and_their_replies_are_dropped() {
    let (xs, mut c) = setup();
    // More than one ring's worth of requests: the rest goes out on later pumps.
    for i in 0..40 {
        c.write_nowait(&xs, &format!("data/n/{i}"), format!("value-{i:040}").as_bytes()).unwrap();
    }
    assert!(c.unacked() > 0);
    for _ in 0..100 {
        if c.unacked() == 0 {
            break;
        }
        xs.serve();
        c.pump(xvif::xen::xenstore::XsIo::mem(&xs)).unwrap();
        xs.serve();
    }
    assert_eq!(c.unacked(), 0);
    for i in 0..40 {
        assert_eq!(xs.get(&format!("/local/domain/5/data/n/{i}")).unwrap(), format!("value-{i:040}").as_bytes());
    }
    // A removal without waiting; the next synchronous call still gets its own reply.
    c.rm_nowait(&xs, "data/n/3").unwrap();
    assert_eq!(c.read(&xs, 0, "data/n/4").unwrap(), format!("value-{:040}", 4).as_bytes());
    assert!(c.read(&xs, 0, "data/n/3").unwrap_err().is_enoent());
    assert_eq!(c.stats.stray_replies, 0);
    assert_eq!(c.stats.nowait_errors, 0);
    // An error reply to a request nobody waits for is counted, not queued.
    c.rm_nowait(&xs, "data/absent/deeper").unwrap();
    c.read(&xs, 0, "domid").unwrap();
    assert_eq!(c.stats.nowait_errors, 1);
    assert_eq!(c.stats.stray_replies, 0);
}

/// The ring of a xenstore that never answers.
struct Silent<'a>(&'a FakeXenstore);

impl xvif::xen::xenstore::XsIo for Silent<'_> {
    fn mem(&self) -> &dyn xvif::hal::SharedMem {
        xvif::xen::xenstore::XsIo::mem(self.0)
    }
    fn notify(&self) {}
    fn wait(&self) {}
    fn now_ns(&self) -> u64 {
        0
    }
}

#[test]
fn requests_in_flight_without_waiting_are_bounded() {
    let (xs, mut c) = setup();
    let limit = xvif::xen::xenstore::client::MAX_UNACKED;
    let silent = Silent(&xs);
    let mut sent = 0;
    while c.write_nowait(&silent, "data/x", b"1").is_ok() {
        sent += 1;
        assert!(sent <= limit, "no bound");
    }
    assert_eq!(sent, limit);
}

#[test]
fn submitted_requests_are_collected_on_a_later_turn() {
    let (xs, mut c) = setup();
    let silent = Silent(&xs);
    let mem = xvif::xen::xenstore::XsIo::mem(&xs);
    let a = c.submit_read("domid").unwrap();
    let b = c.submit_read("data/missing").unwrap();
    c.flush(&silent).unwrap();
    assert_eq!(c.poll_reply(a), None, "not answered yet");
    xs.serve();
    c.pump(mem).unwrap();
    assert!(c.poll_reply(b).unwrap().unwrap_err().is_enoent());
    assert_eq!(c.poll_reply(a), Some(Ok(b"5".to_vec())));
    assert!(c.poll_reply(a).unwrap().is_err(), "an id is answered once");
    // A cancelled request's reply is dropped when it comes, not kept.
    let x = c.submit_read("domid").unwrap();
    c.flush(&silent).unwrap();
    c.cancel(x);
    xs.serve();
    c.pump(mem).unwrap();
    assert_eq!((c.tracked(), c.unacked(), c.stats.stray_replies), (0, 0, 0));
    // A synchronous call in between still gets its own reply.
    let y = c.submit_read("domid").unwrap();
    assert_eq!(c.read(&xs, 0, "domid").unwrap(), b"5");
    assert_eq!(c.poll_reply(y), Some(Ok(b"5".to_vec())));
    // Bounded.
    let limit = xvif::xen::xenstore::client::MAX_TRACKED;
    let mut n = 0;
    while c.submit_read("domid").is_ok() {
        n += 1;
        assert!(n <= limit, "no bound");
    }
    assert_eq!(n, limit);
}

#[test]
fn exact_watches_keep_only_the_watched_node() {
    let (xs, mut c) = setup();
    let path = "/local/domain/5/data/state";
    c.watch(&xs, path, "exact").unwrap();
    c.filter_exact("exact", path).unwrap();
    c.watch(&xs, "/local/domain/5/data/tree", "tree").unwrap();
    while c.next_event().is_some() {}
    for i in 0..400 {
        xs.set(&format!("{path}/child{i}"), b"x", 5);
    }
    xs.set(path, b"4", 5);
    xs.set("/local/domain/5/data/tree/leaf", b"x", 5);
    for _ in 0..100 {
        xs.serve();
        c.pump(xvif::xen::xenstore::XsIo::mem(&xs)).unwrap();
    }
    assert_eq!(c.next_event(), Some(WatchEvent { path: path.into(), token: "exact".into() }));
    assert_eq!(c.next_event().unwrap().path, "/local/domain/5/data/tree/leaf", "other watches keep children");
    assert_eq!(c.next_event(), None);
    assert_eq!((c.stats.events_filtered, c.stats.events_dropped), (400, 0));
    c.unfilter("exact");
    xs.set(&format!("{path}/late"), b"x", 5);
    xs.serve();
    c.pump(xvif::xen::xenstore::XsIo::mem(&xs)).unwrap();
    assert_eq!(c.next_event().unwrap().path, format!("{path}/late"));
}
