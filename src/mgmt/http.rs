//! The management stack's HTTP/1.0 endpoint (TCP port 9100):
//!
//! * `GET /metrics`: every counter in Prometheus text format;
//! * `GET /capture?port=<name>&count=<N>&secs=<T>`: the frames seen on
//!   that switch port, streamed in pcap format (`curl ... | tcpdump -r -`)
//!   until N frames (default 100, at most 100000) were captured or T
//!   seconds (default 10, at most 600) have passed. The capture leaves out
//!   its own HTTP connection. One capture runs at a time; an unknown port
//!   or a bad parameter gets a 400 with a message.
#![forbid(unsafe_code)]

use super::{MAX_REQUEST, Mgmt, metrics};
use crate::drivers::port::PortStats;
use crate::switch::Switch;
use crate::switch::capture::{self, CaptureError};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use log::info;
use smoltcp::socket::tcp;

/// Frames a capture takes when the request does not say.
const DEFAULT_COUNT: u32 = 100;
/// Seconds a capture runs when the request does not say, and at most.
const DEFAULT_SECS: u64 = 10;
const MAX_SECS: u64 = 600;

/// What the endpoint asks of the switch's owner.
pub trait HttpHost {
    /// Appends metrics of its own to `/metrics`.
    fn metrics(&self, _out: &mut String) {}
    /// Starts capturing `count` frames on the port named `name`, leaving
    /// out TCP frames between ports `exclude` (the capture's own stream).
    fn capture_start(&mut self, _name: &str, _count: u32, _exclude: (u16, u16)) -> Result<(), CaptureError> {
        Err(CaptureError::UnknownPort)
    }
    /// Moves captured bytes into `out`: `Some(0)` when none are waiting,
    /// None when no capture runs any more (its port went away).
    fn capture_take(&mut self, _out: &mut [u8]) -> Option<usize> {
        None
    }
    /// True once the capture recorded its count.
    fn capture_full(&self) -> bool {
        true
    }
    /// Ends the capture; returns (frames recorded, frames dropped).
    fn capture_stop(&mut self) -> (u64, u64) {
        (0, 0)
    }
}

/// Metrics of the stack alone, no capture.
pub struct NoHost;
impl HttpHost for NoHost {}

impl HttpHost for Switch {
    fn metrics(&self, out: &mut String) {
        self.render_prometheus(out);
    }
    fn capture_start(&mut self, name: &str, count: u32, exclude: (u16, u16)) -> Result<(), CaptureError> {
        self.start_capture(name, count)?;
        if let Some(c) = self.capture_mut() {
            c.exclude_tcp(exclude.0, exclude.1);
        }
        Ok(())
    }
    fn capture_take(&mut self, out: &mut [u8]) -> Option<usize> {
        self.capture_mut().map(|c| c.take(out))
    }
    fn capture_full(&self) -> bool {
        self.capture_ref().is_none_or(capture::Capture::full)
    }
    fn capture_stop(&mut self) -> (u64, u64) {
        self.stop_capture().map_or((0, 0), |c| (c.recorded, c.dropped))
    }
}

/// One connection's state.
#[derive(Default)]
pub(super) struct HttpConn {
    request: Vec<u8>,
    answered: bool,
    /// The response, sent as the socket's buffer frees up (it can be larger
    /// than the buffer with many switch ports).
    response: Vec<u8>,
    sent: usize,
    /// Streaming a capture: its port and when it ends (ns).
    capture: Option<(String, u64)>,
}

/// A capture request's parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Port name.
    pub port: String,
    /// Frames.
    pub count: u32,
    /// Seconds.
    pub secs: u64,
}

/// Parses the query of `GET /capture?...`; `Err` is the 400's message.
pub fn parse_capture(query: &str) -> Result<CaptureRequest, String> {
    let mut req = CaptureRequest { port: String::new(), count: DEFAULT_COUNT, secs: DEFAULT_SECS };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("parameter '{kv}' has no value"))?;
        let number = |max: u64| v.parse::<u64>().ok().filter(|n| (1..=max).contains(n));
        match k {
            "port" if !v.is_empty() && v.len() <= 32 && v.bytes().all(|b| b.is_ascii_graphic()) => {
                req.port = String::from(v);
            }
            "count" => req.count = number(u64::from(capture::MAX_COUNT)).ok_or("count must be 1..100000")? as u32,
            "secs" => req.secs = number(MAX_SECS).ok_or("secs must be 1..600")?,
            _ => return Err(format!("unknown or malformed parameter '{kv}'")),
        }
    }
    if req.port.is_empty() {
        return Err(String::from("port= is missing"));
    }
    Ok(req)
}

fn pcap_head() -> Vec<u8> {
    let mut r =
        Vec::from(&b"HTTP/1.0 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\nConnection: close\r\n\r\n"[..]);
    r.extend_from_slice(&capture::global_header());
    r
}

impl Mgmt {
    /// Sends what the socket takes of a pending response; once all of it
    /// is queued, closes the socket (unless a capture streams on). True
    /// when bytes moved.
    fn http_send(s: &mut tcp::Socket<'_>, conn: &mut HttpConn) -> bool {
        if conn.sent >= conn.response.len() {
            return false;
        }
        let rest = conn.response.get(conn.sent..).unwrap_or(&[]);
        let n = s.send_slice(rest).unwrap_or(0);
        conn.sent += n;
        if conn.sent >= conn.response.len() {
            conn.response = Vec::new();
            conn.sent = 0;
            if conn.capture.is_none() {
                s.close();
            }
        } else if !s.may_send() {
            // The peer went away mid-response.
            conn.response = Vec::new();
            conn.sent = 0;
            s.abort();
        }
        n > 0
    }

    /// Streams the running capture into the socket, as much as it takes;
    /// ends the response when the count or the time is reached and all
    /// was sent, or when the peer or the port went away.
    fn stream_capture(s: &mut tcp::Socket<'_>, conn: &mut HttpConn, host: &mut dyn HttpHost, now: u64) -> bool {
        let Some((port, deadline)) = conn.capture.clone() else { return false };
        if conn.sent < conn.response.len() {
            return false;
        }
        let end = |host: &mut dyn HttpHost, why: &str| {
            let (recorded, dropped) = host.capture_stop();
            info!("mgmt: capture on {port} ended ({why}): {recorded} frame(s), {dropped} dropped (reader too slow)");
        };
        if !s.may_send() {
            end(host, "the reader went away");
            s.abort();
            conn.capture = None;
            return true;
        }
        let mut buf = [0u8; 4096];
        let mut moved = false;
        let mut drained = false;
        loop {
            let room = s.send_capacity().saturating_sub(s.send_queue()).min(buf.len());
            if room == 0 {
                break;
            }
            match host.capture_take(buf.get_mut(..room).unwrap_or(&mut [])) {
                None => {
                    end(host, "the port went away");
                    s.close();
                    conn.capture = None;
                    return true;
                }
                Some(0) => {
                    drained = true;
                    break;
                }
                Some(n) => {
                    let _ = s.send_slice(buf.get(..n).unwrap_or(&[]));
                    moved = true;
                }
            }
        }
        let over = if host.capture_full() { Some("count reached") } else { (now >= deadline).then_some("time is up") };
        if let (true, Some(why)) = (drained, over) {
            end(host, why);
            s.close();
            conn.capture = None;
            return true;
        }
        moved
    }

    fn answer(
        conn: &mut HttpConn,
        host: &mut dyn HttpHost,
        now: u64,
        shown: (&str, &PortStats),
        stats: &super::MgmtStats,
        peer_port: u16,
    ) {
        let req = &conn.request;
        let path = req
            .strip_prefix(b"GET ")
            .and_then(|r| r.split(|&b| b == b' ').next())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let response = if path == "/metrics" || path == "/" {
            let mut body = String::new();
            metrics::render(&mut body, shown.0, shown.1, stats, now);
            host.metrics(&mut body);
            metrics::response(200, "OK", &body).into_bytes()
        } else if let Some(q) =
            path.strip_prefix("/capture?").or(path.strip_prefix("/capture").filter(|r| r.is_empty()))
        {
            match parse_capture(q) {
                Err(m) => metrics::response(400, "Bad Request", &format!("bad capture request: {m}\n")).into_bytes(),
                Ok(c) => match host.capture_start(&c.port, c.count, (super::METRICS_PORT, peer_port)) {
                    Ok(()) => {
                        info!("mgmt: capture on {} started: {} frame(s), {} s at most", c.port, c.count, c.secs);
                        conn.capture = Some((c.port, now.saturating_add(c.secs * 1_000_000_000)));
                        pcap_head()
                    }
                    Err(CaptureError::UnknownPort) => {
                        metrics::response(400, "Bad Request", &format!("no port '{}'\n", c.port)).into_bytes()
                    }
                    Err(CaptureError::Busy) => {
                        metrics::response(503, "Service Unavailable", "a capture is already running\n").into_bytes()
                    }
                },
            }
        } else {
            metrics::response(404, "Not Found", "try GET /metrics or GET /capture?port=NAME&count=N&secs=T\n")
                .into_bytes()
        };
        conn.response = response;
        conn.sent = 0;
    }

    pub(super) fn http_poll(
        &mut self,
        port_name: &str,
        port_stats: &PortStats,
        now_ns: u64,
        host: &mut dyn HttpHost,
    ) -> bool {
        let mut busy = false;
        for (h, conn) in self.http.iter().zip(self.conns.iter_mut()) {
            let s = self.sockets.get_mut::<tcp::Socket>(*h);
            if !s.is_open() {
                if conn.capture.is_some() {
                    host.capture_stop();
                }
                *conn = HttpConn::default();
                let _ = s.listen(super::METRICS_PORT);
                continue;
            }
            if conn.answered {
                busy |= Self::http_send(s, conn);
                busy |= Self::stream_capture(s, conn, host, now_ns);
                continue;
            }
            while s.can_recv() && conn.request.len() < MAX_REQUEST {
                let room = MAX_REQUEST - conn.request.len();
                let got = s.recv(|b| {
                    let n = b.len().min(room);
                    (n, b.get(..n).map(<[u8]>::to_vec).unwrap_or_default())
                });
                match got {
                    Ok(bytes) if !bytes.is_empty() => conn.request.extend_from_slice(&bytes),
                    _ => break,
                }
                busy = true;
            }
            let complete = conn.request.windows(4).any(|w| w == b"\r\n\r\n");
            let peer_done = !s.may_recv() && !conn.request.is_empty();
            if !(complete || peer_done || conn.request.len() >= MAX_REQUEST) {
                continue;
            }
            conn.answered = true;
            busy = true;
            self.stats.http_requests += 1;
            let peer_port = s.remote_endpoint().map_or(0, |e| e.port);
            Self::answer(conn, host, now_ns, (port_name, port_stats), &self.stats, peer_port);
            Self::http_send(s, conn);
        }
        busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_requests_are_checked() {
        assert_eq!(
            parse_capture("port=vif3.0&count=20&secs=5"),
            Ok(CaptureRequest { port: "vif3.0".into(), count: 20, secs: 5 })
        );
        assert_eq!(parse_capture("port=mgmt"), Ok(CaptureRequest { port: "mgmt".into(), count: 100, secs: 10 }));
        for bad in [
            "",
            "count=5",
            "port=",
            "port=a&count=0",
            "port=a&count=100001",
            "port=a&secs=601",
            "port=a&x=1",
            "port=a&count=ten",
            "port=a&count",
            "port=a%20b c",
        ] {
            assert!(parse_capture(bad).is_err(), "{bad}");
        }
    }
}
