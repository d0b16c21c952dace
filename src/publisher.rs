//! Counters published under `data/xvif`, paced by xenstored's replies.
//!
//! Every publish period the caller hands over the full set of entries
//! (path → text); the publisher keeps the ones that differ from what was
//! last written, plus removals of paths that are gone, as pending work.
//! Each loop turn it sends pending writes only while fewer than `in_flight`
//! requests of ours wait for xenstored's reply, so however many vifs there
//! are, the counters never fill the xenstore ring ahead of the backend's
//! own requests (a guest being connected): with 32 vifs a period brings
//! some 70 writes of up to 500 bytes, far more than one 1 KiB ring holds,
//! and a nested xenstored answers them slowly. A path written again before
//! its pending write went out is sent once, with the newest text, and keeps
//! its place in the queue: entries go out oldest first, so when more change
//! each period than the caller lets out, the ones that change every period
//! cannot starve the rest (every pending entry is sent after at most
//! `pending()` sends).
#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::string::String;

/// What happened to one pending entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Sent (its reply is not waited for).
    Yes,
    /// Not sent: try again on a later turn.
    Later,
}

/// Counters of the publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Writes and removals sent.
    pub sent: u64,
    /// Entries whose newer text replaced a pending one before it went out.
    pub coalesced: u64,
    /// Sends the client refused (retried later).
    pub refused: u64,
}

/// See the module comment.
#[derive(Debug, Default)]
pub struct Publisher {
    /// What was last sent, by path.
    published: BTreeMap<String, String>,
    /// Waiting to be sent, by path: its place in `order`, and the new text
    /// or None to remove the path.
    pending: BTreeMap<String, (u64, Option<String>)>,
    /// The pending paths by the order they were first queued in.
    order: BTreeMap<u64, String>,
    /// The place the next newly queued path takes.
    next_seq: u64,
    stats: PublishStats,
}

impl Publisher {
    /// An empty publisher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters.
    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Entries waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The text last sent for `path`.
    pub fn published(&self, path: &str) -> Option<&str> {
        self.published.get(path).map(String::as_str)
    }

    /// Takes the full set of entries of this period: what changed (or is
    /// new) becomes pending, and every published path not in the set is to
    /// be removed.
    pub fn update(&mut self, entries: BTreeMap<String, String>) {
        let gone: alloc::vec::Vec<String> =
            self.published.keys().filter(|k| !entries.contains_key(*k)).cloned().collect();
        for path in gone {
            self.queue(path, None);
        }
        for (path, text) in entries {
            if self.published.get(&path) == Some(&text) {
                // Unchanged since it was sent: a pending older text must not
                // go out after it.
                if let Some((seq, _)) = self.pending.remove(&path) {
                    self.order.remove(&seq);
                }
                continue;
            }
            self.queue(path, Some(text));
        }
    }

    fn queue(&mut self, path: String, value: Option<String>) {
        if let Some(slot) = self.pending.get_mut(&path) {
            slot.1 = value;
            self.stats.coalesced += 1;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, path.clone());
        self.pending.insert(path, (seq, value));
    }

    /// Sends pending entries, oldest first, while `room()` says another
    /// request may go (it is asked before each), through
    /// `send(path, Some(text))` for a write and `send(path, None)` for a
    /// removal. Stops at the first `Sent::Later`, which keeps its place.
    /// Returns how many were sent.
    pub fn pump(&mut self, mut room: impl FnMut() -> bool, mut send: impl FnMut(&str, Option<&str>) -> Sent) -> usize {
        let mut n = 0;
        while room() {
            let Some((seq, path)) = self.order.pop_first() else { break };
            // Every path in `order` is pending (they are added and removed together).
            let Some((_, value)) = self.pending.remove(&path) else { continue };
            if send(&path, value.as_deref()) == Sent::Later {
                self.stats.refused += 1;
                self.order.insert(seq, path.clone());
                self.pending.insert(path, (seq, value));
                break;
            }
            self.stats.sent += 1;
            n += 1;
            match value {
                Some(text) => {
                    self.published.insert(path, text);
                }
                None => {
                    self.published.remove(&path);
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec::Vec;

    fn set(n: usize, tag: &str) -> BTreeMap<String, String> {
        (0..n).map(|i| (format!("data/xvif/vifs/vif{i}_0"), format!("packets={tag}"))).collect()
    }

    /// Sends at most `limit` per pump, as a client with that many
    /// unanswered requests allowed would.
    fn pump(p: &mut Publisher, limit: usize, log: &mut Vec<(String, Option<String>)>) -> usize {
        let mut left = limit;
        p.pump(
            || {
                let ok = left > 0;
                left = left.saturating_sub(1);
                ok
            },
            |path, v| {
                log.push((path.into(), v.map(String::from)));
                Sent::Yes
            },
        )
    }

    #[test]
    fn a_period_of_many_entries_goes_out_a_few_at_a_time() {
        let mut p = Publisher::new();
        let mut log = Vec::new();
        p.update(set(64, "1"));
        assert_eq!(pump(&mut p, 4, &mut log), 4);
        assert_eq!(p.pending(), 60);
        while pump(&mut p, 4, &mut log) > 0 {}
        assert_eq!(log.len(), 64);
        // Nothing changed: nothing to send.
        p.update(set(64, "1"));
        assert_eq!((p.pending(), pump(&mut p, 4, &mut log)), (0, 0));
    }

    #[test]
    fn a_newer_text_replaces_the_pending_one_and_gone_paths_are_removed() {
        let mut p = Publisher::new();
        let mut log = Vec::new();
        p.update(set(3, "1"));
        while pump(&mut p, 10, &mut log) > 0 {}
        p.update(set(3, "2"));
        p.update(set(2, "3"));
        log.clear();
        while pump(&mut p, 10, &mut log) > 0 {}
        assert_eq!(
            log,
            vec![
                ("data/xvif/vifs/vif0_0".into(), Some("packets=3".into())),
                ("data/xvif/vifs/vif1_0".into(), Some("packets=3".into())),
                ("data/xvif/vifs/vif2_0".into(), None),
            ]
        );
        assert_eq!(p.stats().coalesced, 3);
        assert_eq!(p.published("data/xvif/vifs/vif2_0"), None);
    }

    #[test]
    fn a_value_back_to_what_was_sent_cancels_its_pending_write() {
        let mut p = Publisher::new();
        let mut log = Vec::new();
        p.update(set(1, "1"));
        pump(&mut p, 1, &mut log);
        p.update(set(1, "2"));
        p.update(set(1, "1"));
        assert_eq!(p.pending(), 0);
    }

    /// Entries that change every period must not keep the others from ever
    /// going out when the caller lets out fewer sends per period than there
    /// are changes: the last paths in name order are sent too.
    #[test]
    fn entries_that_change_every_period_do_not_starve_the_rest() {
        let mut p = Publisher::new();
        let mut log = Vec::new();
        let mut sent_at: BTreeMap<String, usize> = BTreeMap::new();
        for period in 0..40 {
            // 40 entries change every period; 4 go out per period.
            p.update(set(40, &format!("{period}")));
            log.clear();
            pump(&mut p, 4, &mut log);
            for (path, _) in &log {
                sent_at.entry(path.clone()).or_insert(period);
            }
        }
        assert_eq!(
            sent_at.len(),
            40,
            "never sent: {:?}",
            set(40, "").keys().filter(|k| !sent_at.contains_key(*k)).collect::<Vec<_>>()
        );
        // Oldest first: each goes out within pending() / 4 periods.
        assert!(sent_at.values().all(|&t| t < 10), "{sent_at:?}");
    }

    #[test]
    fn a_refused_send_is_kept_for_later() {
        let mut p = Publisher::new();
        p.update(set(2, "1"));
        let n = p.pump(|| true, |_, _| Sent::Later);
        assert_eq!((n, p.pending(), p.stats().refused), (0, 2, 1));
        let mut log = Vec::new();
        while pump(&mut p, 1, &mut log) > 0 {}
        assert_eq!(log.len(), 2);
    }
}
