//! The management stack: smoltcp on a `Port`, with ARP/NDP and ICMP/ICMPv6
//! echo (answered by smoltcp itself), a UDP echo service on port 7, a TCP
//! endpoint on port 9100 serving every counter in Prometheus text format over
//! HTTP/1.0, and a static address or DHCPv4.
//!
//! Received frames are screened (`filter`) and copied once into a reused
//! buffer for smoltcp (the management path is not the data path; the netback
//! path uses `Port` directly without copies). Transmit is zero-copy: smoltcp
//! writes straight into the NIC's transmit buffer.
#![forbid(unsafe_code)]

pub mod filter;
pub mod http;
pub mod metrics;

use crate::config::IpConfig;
use crate::drivers::port::{Port, PortStats};
use alloc::vec;
use alloc::vec::Vec;
use filter::{FilterStats, Verdict, screen};
use http::{HttpConn, HttpHost, NoHost};
use log::{info, warn};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr, Ipv6Address};

/// UDP echo port.
pub const ECHO_PORT: u16 = 7;
/// Metrics port.
pub const METRICS_PORT: u16 = 9100;
/// Concurrent metrics connections.
const HTTP_SOCKETS: usize = 2;
/// Largest HTTP request head accepted.
const MAX_REQUEST: usize = 1024;

/// Management configuration from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MgmtConfig {
    /// Address (None: IPv6 link-local only).
    pub ip: Option<IpConfig>,
    /// Default IPv4 gateway.
    pub gw: Option<[u8; 4]>,
}

/// Counters of the management services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MgmtStats {
    /// Ingress screening.
    pub filter: FilterStats,
    /// UDP datagrams echoed.
    pub udp_echo_packets: u64,
    /// UDP payload bytes echoed.
    pub udp_echo_bytes: u64,
    /// UDP datagrams that could not be echoed (send buffer full).
    pub udp_echo_drops: u64,
    /// HTTP requests answered.
    pub http_requests: u64,
    /// DHCP leases acquired.
    pub dhcp_leases: u64,
}

/// The stack and its sockets.
pub struct Mgmt {
    iface: Interface,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    http: [SocketHandle; HTTP_SOCKETS],
    conns: [HttpConn; HTTP_SOCKETS],
    dhcp: Option<SocketHandle>,
    gw: Option<Ipv4Address>,
    rxbuf: Vec<u8>,
    echo_buf: Vec<u8>,
    filter: FilterStats,
    stats: MgmtStats,
}

fn instant(now_ns: u64) -> Instant {
    Instant::from_micros((now_ns / 1000) as i64)
}

/// The IPv6 link-local address derived from a MAC (EUI-64).
pub fn link_local(mac: [u8; 6]) -> Ipv6Address {
    Ipv6Address::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

impl Mgmt {
    /// Builds the interface on `port` and opens the services.
    pub fn new<P: Port>(port: &mut P, cfg: MgmtConfig, now_ns: u64) -> Self {
        let mut rxbuf = Vec::with_capacity(2048);
        let mut filter = FilterStats::default();
        let mac = port.mac();
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = now_ns ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
        let iface = {
            let mut dev = Adapter { port, rxbuf: &mut rxbuf, filter: &mut filter };
            Interface::new(config, &mut dev, instant(now_ns))
        };
        let mut sockets = SocketSet::new(Vec::new());
        let mut udp_sock = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 256 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0; 256 * 1024]),
        );
        if let Err(e) = udp_sock.bind(ECHO_PORT) {
            warn!("mgmt: cannot bind UDP port {ECHO_PORT}: {e:?}");
        }
        let udp = sockets.add(udp_sock);
        let http = core::array::from_fn(|_| {
            let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 2048]), tcp::SocketBuffer::new(vec![0; 32768]));
            if let Err(e) = s.listen(METRICS_PORT) {
                warn!("mgmt: cannot listen on TCP port {METRICS_PORT}: {e:?}");
            }
            sockets.add(s)
        });
        let mut m = Self {
            iface,
            sockets,
            udp,
            http,
            conns: Default::default(),
            dhcp: None,
            gw: cfg.gw.map(|g| Ipv4Address::new(g[0], g[1], g[2], g[3])),
            rxbuf,
            echo_buf: vec![0; 2048],
            filter,
            stats: MgmtStats::default(),
        };
        let ll = link_local(mac);
        m.iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv6(ll), 64));
        });
        match cfg.ip {
            Some(IpConfig::Static(c)) => {
                let [a, b, cc, d] = c.addr;
                m.set_ipv4(Some(Ipv4Cidr::new(Ipv4Address::new(a, b, cc, d), c.prefix)));
                info!("mgmt: {}.{}.{}.{}/{} gw {:?}, {ll} (link-local)", a, b, cc, d, c.prefix, m.gw);
            }
            Some(IpConfig::Dhcp) => {
                m.dhcp = Some(m.sockets.add(dhcpv4::Socket::new()));
                info!("mgmt: waiting for DHCP; {ll} (link-local)");
            }
            None => info!("mgmt: no IPv4 address (ip= not given); {ll} (link-local)"),
        }
        info!("mgmt: UDP echo on port {ECHO_PORT}, metrics on TCP port {METRICS_PORT}");
        m
    }

    fn set_ipv4(&mut self, cidr: Option<Ipv4Cidr>) {
        self.iface.update_ip_addrs(|a| {
            a.retain(|c| !matches!(c, IpCidr::Ipv4(_)));
            if let Some(c) = cidr {
                let _ = a.push(IpCidr::Ipv4(c));
            }
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let (Some(_), Some(gw)) = (cidr, self.gw) {
            let _ = routes.add_default_ipv4_route(gw);
        }
    }

    /// Counters.
    pub fn stats(&self) -> MgmtStats {
        MgmtStats { filter: self.filter, ..self.stats }
    }

    /// The current IPv4 address.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.iface.ip_addrs().iter().find_map(|c| match c {
            IpCidr::Ipv4(c) => Some(*c),
            _ => None,
        })
    }

    /// Runs the stack and the services once. Returns true when it did anything.
    pub fn poll<P: Port>(&mut self, port: &mut P, now_ns: u64) -> bool {
        let shown = (port.name(), port.stats());
        self.poll_with_metrics(port, now_ns, shown, &mut NoHost)
    }

    /// As `poll`; `/metrics` shows `shown` (a port name and its counters)
    /// as the port, and `host` (the switch) appends metrics of its own and
    /// runs packet captures.
    pub fn poll_with_metrics<P: Port>(
        &mut self,
        port: &mut P,
        now_ns: u64,
        shown: (&str, PortStats),
        host: &mut dyn HttpHost,
    ) -> bool {
        let ts = instant(now_ns);
        let mut busy = false;
        {
            let mut dev = Adapter { port: &mut *port, rxbuf: &mut self.rxbuf, filter: &mut self.filter };
            // Bounded ingress: at most a ring's worth per poll, so other tasks run.
            for _ in 0..256 {
                match self.iface.poll_ingress_single(ts, &mut dev, &mut self.sockets) {
                    smoltcp::iface::PollIngressSingleResult::None => break,
                    _ => busy = true,
                }
                // Echo as we go so the UDP buffers never fill under load.
                busy |= echo(&mut self.sockets, self.udp, &mut self.echo_buf, &mut self.stats);
            }
        }
        busy |= echo(&mut self.sockets, self.udp, &mut self.echo_buf, &mut self.stats);
        busy |= self.dhcp_poll();
        self.stats.filter = self.filter;
        busy |= self.http_poll(shown.0, &shown.1, now_ns, host);
        let mut dev = Adapter { port, rxbuf: &mut self.rxbuf, filter: &mut self.filter };
        self.iface.poll_maintenance(ts);
        busy |=
            self.iface.poll_egress(ts, &mut dev, &mut self.sockets) == smoltcp::iface::PollResult::SocketStateChanged;
        busy
    }

    /// When the stack next needs polling without input.
    pub fn poll_at(&mut self, now_ns: u64) -> Option<u64> {
        let at = self.iface.poll_at(instant(now_ns), &self.sockets)?;
        Some((at.total_micros().max(0) as u64).saturating_mul(1000))
    }

    fn dhcp_poll(&mut self) -> bool {
        let Some(h) = self.dhcp else { return false };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(h).poll();
        match event {
            None => false,
            Some(dhcpv4::Event::Configured(c)) => {
                let (addr, router) = (c.address, c.router);
                info!("mgmt: DHCP lease {addr} router {router:?}");
                self.stats.dhcp_leases += 1;
                if router.is_some() {
                    self.gw = router;
                }
                self.set_ipv4(Some(addr));
                true
            }
            Some(dhcpv4::Event::Deconfigured) => {
                warn!("mgmt: DHCP lease lost");
                self.set_ipv4(None);
                true
            }
        }
    }
}

/// Echoes every queued datagram back to its sender, through one reused
/// scratch buffer (the socket cannot lend its receive and send buffers at once).
fn echo(sockets: &mut SocketSet<'static>, h: SocketHandle, scratch: &mut [u8], stats: &mut MgmtStats) -> bool {
    let s = sockets.get_mut::<udp::Socket>(h);
    let mut busy = false;
    for _ in 0..256 {
        if !s.can_recv() {
            break;
        }
        busy = true;
        let (len, meta) = match s.recv_slice(scratch) {
            Ok(r) => r,
            Err(_) => {
                stats.udp_echo_drops += 1;
                continue;
            }
        };
        let mut reply = udp::UdpMetadata::from(meta.endpoint);
        reply.local_address = meta.local_address;
        match scratch.get(..len).map(|d| s.send_slice(d, reply)) {
            Some(Ok(())) => {
                stats.udp_echo_packets += 1;
                stats.udp_echo_bytes += len as u64;
            }
            _ => stats.udp_echo_drops += 1,
        }
    }
    busy
}

/// Adapts a `Port` to smoltcp's `Device`.
struct Adapter<'a, P: Port> {
    port: &'a mut P,
    rxbuf: &'a mut Vec<u8>,
    filter: &'a mut FilterStats,
}

struct Rx<'a>(&'a [u8]);

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

struct Tx<'a, P: Port>(&'a mut P);

impl<P: Port> TxToken for Tx<'_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        match self.0.transmit(len, f) {
            Ok(r) => r,
            // The ring was full (counted as a drop): let smoltcp build the
            // frame into a scratch buffer that goes nowhere.
            Err(f) => f(&mut vec![0; len]),
        }
    }
}

impl<P: Port> Device for Adapter<'_, P> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b, P>
    where
        Self: 'b;

    fn receive(&mut self, _ts: Instant) -> Option<(Rx<'_>, Tx<'_, P>)> {
        for _ in 0..64 {
            let rxbuf = &mut *self.rxbuf;
            let filter = &mut *self.filter;
            let accepted = self.port.receive(|f| {
                if screen(f, filter) == Verdict::Accept {
                    rxbuf.clear();
                    rxbuf.extend_from_slice(f);
                    true
                } else {
                    false
                }
            })?;
            if accepted {
                return Some((Rx(&self.rxbuf[..]), Tx(&mut *self.port)));
            }
        }
        None
    }

    fn transmit(&mut self, _ts: Instant) -> Option<Tx<'_, P>> {
        if self.port.can_transmit() { Some(Tx(&mut *self.port)) } else { None }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps.max_burst_size = Some(64);
        // Checksums were verified by `filter::screen`; smoltcp only computes them.
        let mut cs = ChecksumCapabilities::default();
        cs.ipv4 = Checksum::Tx;
        cs.udp = Checksum::Tx;
        cs.tcp = Checksum::Tx;
        cs.icmpv4 = Checksum::Tx;
        cs.icmpv6 = Checksum::Tx;
        caps.checksum = cs;
        caps
    }
}
