/*
 * hostile-netfront: plays the Xen netfront side of a vif from user space in
 * a Linux PV guest that has NOT loaded xen-netfront, and misbehaves on
 * command. Used by tests/xen/test_hostile.py against xvif (the backend).
 *
 * It grants its ring and data pages to the backend through
 * /dev/xen/gntalloc, allocates an unbound event channel for the backend
 * through /dev/xen/evtchn, and talks to xenstore through /dev/xen/xenbus
 * (the wire protocol of xen/include/public/io/xs_wire.h, paths relative to
 * the guest's home /local/domain/<domid>). Ring layouts follow
 * xen/include/public/io/ring.h (64-byte shared header: req_prod,
 * req_event, rsp_prod, rsp_event, padding; 256 entries per page) and
 * io/netif.h (TX request {gref u32, offset u16, flags u16, id u16, size
 * u16}, TX response {id u16, status s16}; RX request {id u16, pad u16,
 * gref u32}, RX response {id u16, offset u16, flags u16, status s16}).
 *
 * Usage: hostile-netfront [-v DEVID] [-s OUR_IP] [-t TARGET_IP] [-d SECONDS]
 *                         [-r RELEASE_FILE] [-x STOP_FILE] MODE
 * Every run first brings the frontend back to a fresh state (Closing,
 * Closed, Initialising until the backend is in InitWait again), connects,
 * and proves the connection with a broadcast ARP request for TARGET_IP (the
 * backend's management address) and its reply. Then MODE:
 *   good        5 more ARP exchanges
 *   ahead       TX req_prod 1000 ahead of the backend (XSA-39)
 *   backwards   TX req_prod moved back by 2 after 3 good packets (XSA-39)
 *   slots20     one TX packet of 20 slots (fatal in Linux netback)
 *   slots19     one TX packet of 19 slots (dropped), then a probe
 *   crosspage   one TX slot with offset 4000, size 200 (crosses its page)
 *   badgref     TX packets with bad grant refs (out of range, freed,
 *               granted to dom0 instead of the backend), then RX requests
 *               with bad refs (posted before the good ones at connect:
 *               out of range, freed, granted to dom0, read-only), probes
 *   badring     connects with a bad tx-ring-ref (out of range), one
 *               granted to dom0, a read-only rx ring; expects the backend
 *               to refuse each (state Closing, error node), then connects
 *               properly and probes
 *   zerofrag    zero-length fragments (XSA-448): 4 empty frags after a full
 *               first slot; an empty first slot; an empty frag with a bad
 *               gref; then a probe
 *   tiny18      an ARP request of 112 bytes in 18 slots (XSA-432): the
 *               backend must gather it and answer
 *   doublefetch rewrites each posted request while the backend reads it
 *               (XSA-155): phase 1 flips size 60 <-> 8 (accept vs runt
 *               drop) on 200 packets, phase 2 flips offset 0 <-> 4090
 *               (accept vs crossing the page: fatal) until the vif stops
 *               answering or 200 packets
 *   storm       IOCTL_EVTCHN_NOTIFY as fast as possible for -d seconds
 *               (XSA-332), a probe, then close, unbind, reconnect with a
 *               new port and probe again
 *   flap        writes its state Closing/Initialising/Connected as fast as
 *               it can for -d seconds or until STOP_FILE exists, then
 *               settles, reconnects and probes
 *   nodes       creates 400 nodes under its own `state` node and removes
 *               them, again and again for -d seconds or until STOP_FILE
 *               exists (XSA-349), then probes
 *   ctrl        connects with two queues and a control ring (io/netif.h
 *               "Control ring": 16-byte requests {id u16, type u16,
 *               data[3] u32}, 12-byte responses {id u16, type u16, status
 *               u32, data u32}, 128 per page), sets Toeplitz, hash types,
 *               a 40-byte key and a mapping table, reads the flags and the
 *               table size back, sends bad requests (bad and dom0 grants,
 *               a 41-byte key, a table entry naming queue 2, unknown
 *               types) and checks each status; then steers the backend's
 *               ARP replies (no hash type covers ARP: hash 0, table entry
 *               0) to queue 1, then to queue 0, with the table, probes
 *               once more with hashing off, and leaves Toeplitz selected
 *   ctrlahead   connects like ctrl, then moves the control ring's req_prod
 *               1000 ahead of the backend: the vif must be disabled
 * After MODE it prints HOSTILE-HOLD and, with -r, waits until RELEASE_FILE
 * exists; then closes the frontend (Closing, Closed) and frees everything.
 * Results are printed as `RESULT key=value ...` lines.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef uint16_t domid_t; /* xen/evtchn.h uses it without defining it */
#include <xen/evtchn.h>
#include <xen/gntalloc.h>

#define PAGE 4096u
#define RING 256u
#define HDR 64u
#define NTX 8u
#define NRX 32u
#define MAXBADRX 8u
#define CRING 128u /* control ring entries: (4096 - 64) / 16, a power of two */
#define FREED_REF 0xfffffffeu /* in badrx: a ref freed just before posting */

/* io/netif.h */
#define NETTXF_more_data 4
#define NETRXF_more_data 4
#define NETRXF_extra_info 8
#define RSP_OKAY 0
#define RSP_ERROR (-1)
#define RSP_NULL 1
/* io/xenbus.h */
enum { ST_INITIALISING = 1, ST_INITWAIT = 2, ST_CONNECTED = 4, ST_CLOSING = 5, ST_CLOSED = 6 };
/* io/xs_wire.h */
enum { XS_DIRECTORY = 1, XS_READ = 2, XS_WRITE = 11, XS_RM = 13, XS_WATCH_EVENT = 15, XS_ERROR = 16 };

struct txreq { uint32_t gref; uint16_t offset, flags, id, size; };
struct ctrlreq { uint16_t id, type; uint32_t data[3]; };
struct ctrlrsp { uint16_t id, type; uint32_t status, data; };
_Static_assert(sizeof(struct ctrlreq) == 16 && sizeof(struct ctrlrsp) == 12, "xen_netif_ctrl_*");
/* io/netif.h control ring */
enum { CT_GET_FLAGS = 1, CT_SET_FLAGS = 2, CT_SET_KEY = 3, CT_GET_MAP_SIZE = 4, CT_SET_MAP_SIZE = 5, CT_SET_MAP = 6,
       CT_SET_ALG = 7 };
enum { CS_SUCCESS = 0, CS_NOT_SUPPORTED = 1, CS_INVALID = 2, CS_OVERFLOW = 3 };
struct txrsp { uint16_t id; int16_t status; };
struct rxreq { uint16_t id, pad; uint32_t gref; };
struct rxrsp { uint16_t id, offset, flags; int16_t status; };
_Static_assert(sizeof(struct txreq) == 12, "netif_tx_request");
_Static_assert(sizeof(struct rxreq) == 8 && sizeof(struct rxrsp) == 8, "netif_rx_*");

static int xsfd = -1, gfd = -1, efd = -1;
static char fe[64] = "device/vif/0", be[128];
static int bedom = -1;
static uint8_t mac[6];
static uint32_t sip, tip; /* network order */
static int duration = 10;
static const char *release_file, *stop_file;

static void die(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	fprintf(stdout, "HOSTILE-ERROR ");
	vfprintf(stdout, fmt, ap);
	fprintf(stdout, " (errno %d %s)\n", errno, strerror(errno));
	va_end(ap);
	fflush(stdout);
	exit(2);
}

static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void msleep(int ms) { usleep(ms * 1000); }
static int exists(const char *p) { struct stat st; return p && stat(p, &st) == 0; }
#define mb() __sync_synchronize()

/* ---------------- xenstore over /dev/xen/xenbus ---------------- */
struct xsmsg { uint32_t type, req_id, tx_id, len; };
static uint32_t xs_id;

static void full_read(void *p, size_t n) {
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(xsfd, (char *)p + got, n - got);
		if (r <= 0) die("xenbus read");
		got += r;
	}
}

/* Sends one request; returns the reply type, the payload in out (NUL
 * terminated, truncated to outmax-1). */
static int xs_req(int type, const char *path, const char *val, char *out, size_t outmax) {
	char buf[4096 + sizeof(struct xsmsg)];
	size_t pl = strlen(path) + 1, vl = val ? strlen(val) : 0;
	if (pl + vl > 4096) die("xenstore request too long");
	struct xsmsg h = { type, ++xs_id, 0, (uint32_t)(pl + vl) };
	memcpy(buf, &h, sizeof h);
	memcpy(buf + sizeof h, path, pl);
	if (vl) memcpy(buf + sizeof h + pl, val, vl);
	if (write(xsfd, buf, sizeof h + pl + vl) != (ssize_t)(sizeof h + pl + vl)) die("xenbus write %s", path);
	for (;;) {
		struct xsmsg r;
		full_read(&r, sizeof r);
		char body[4097];
		if (r.len > 4096) die("xenbus reply too long");
		full_read(body, r.len);
		body[r.len] = 0;
		if (r.type == XS_WATCH_EVENT || r.req_id != h.req_id) continue;
		if (out && outmax) {
			size_t n = r.len < outmax - 1 ? r.len : outmax - 1;
			memcpy(out, body, n);
			out[n] = 0;
		}
		return r.type;
	}
}

static int xs_read(const char *path, char *out, size_t n) { return xs_req(XS_READ, path, NULL, out, n) == XS_READ; }
static void xs_write(const char *path, const char *val) {
	char e[64];
	if (xs_req(XS_WRITE, path, val, e, sizeof e) != XS_WRITE) die("xenstore write %s=%s: %s", path, val, e);
}
static int xs_write_try(const char *path, const char *val) { return xs_req(XS_WRITE, path, val, NULL, 0) == XS_WRITE; }
static void xs_rm(const char *path) { xs_req(XS_RM, path, NULL, NULL, 0); }

static void fe_write(const char *key, const char *fmt, ...) {
	char p[128], v[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v, sizeof v, fmt, ap);
	va_end(ap);
	snprintf(p, sizeof p, "%s/%s", fe, key);
	xs_write(p, v);
}
static void fe_rm(const char *key) { char p[128]; snprintf(p, sizeof p, "%s/%s", fe, key); xs_rm(p); }
static void fe_state(int s) { fe_write("state", "%d", s); }

static int be_state(void) {
	char p[160], v[32];
	snprintf(p, sizeof p, "%s/state", be);
	return xs_read(p, v, sizeof v) ? atoi(v) : -1;
}

/* Waits until the backend's state is in `mask` (bit per state). */
static int wait_be(unsigned mask, double secs) {
	double end = now() + secs;
	int s;
	while (!((s = be_state()) >= 0 && (mask >> s) & 1)) {
		if (now() > end) return -s - 100;
		msleep(20);
	}
	return s;
}

/* ---------------- grants and event channels ---------------- */
struct gpages { uint64_t index; uint32_t count; uint32_t refs[64]; uint8_t *mem; };

static void galloc(struct gpages *g, uint32_t count, int to_dom, int writable) {
	char buf[sizeof(struct ioctl_gntalloc_alloc_gref) + 64 * 4];
	struct ioctl_gntalloc_alloc_gref *a = (void *)buf;
	if (count > 64) die("galloc count");
	memset(buf, 0, sizeof buf);
	a->domid = to_dom;
	a->flags = writable ? GNTALLOC_FLAG_WRITABLE : 0;
	a->count = count;
	if (ioctl(gfd, IOCTL_GNTALLOC_ALLOC_GREF, a) < 0) die("IOCTL_GNTALLOC_ALLOC_GREF");
	g->index = a->index;
	g->count = count;
	memcpy(g->refs, a->gref_ids, count * 4);
	g->mem = mmap(NULL, count * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, a->index);
	if (g->mem == MAP_FAILED) die("mmap gntalloc");
	memset(g->mem, 0, count * PAGE);
}

static void gfree(struct gpages *g) {
	if (!g->count) return;
	munmap(g->mem, g->count * PAGE);
	struct ioctl_gntalloc_dealloc_gref d = { g->index, g->count };
	if (ioctl(gfd, IOCTL_GNTALLOC_DEALLOC_GREF, &d) < 0) die("IOCTL_GNTALLOC_DEALLOC_GREF");
	g->count = 0;
}

/* A grant reference that is not granted any more. */
static uint32_t freed_ref(void) {
	struct gpages g;
	galloc(&g, 1, bedom, 1);
	uint32_t r = g.refs[0];
	gfree(&g);
	return r;
}

static int evtchn_alloc(void) {
	struct ioctl_evtchn_bind_unbound_port b = { (unsigned)bedom };
	int port = ioctl(efd, IOCTL_EVTCHN_BIND_UNBOUND_PORT, &b);
	if (port < 0) die("IOCTL_EVTCHN_BIND_UNBOUND_PORT");
	return port;
}
static int notify(int port) { struct ioctl_evtchn_notify n = { (unsigned)port }; return ioctl(efd, IOCTL_EVTCHN_NOTIFY, &n); }
static void unbind(int port) { struct ioctl_evtchn_unbind u = { (unsigned)port }; ioctl(efd, IOCTL_EVTCHN_UNBIND, &u); }

/* ---------------- one connection ---------------- */
struct conn {
	struct gpages txr, rxr, txd, rxd;
	int port, up;
	uint32_t tx_prod, tx_cons, rx_prod, rx_cons;
	uint16_t id;
	uint32_t badrx[MAXBADRX];
	unsigned nbadrx;
};
/* C is queue 0 and carries all our transmits; Q1 is queue 1 of a
 * two-queue connection (mode ctrl), whose RX ring only receives. */
static struct conn C, Q1;
static int nqueues = 1, reply_queue = -1;
/* The control ring (mode ctrl), when connected with one. */
static struct { struct gpages ring; int port, on; uint32_t prod, cons; uint16_t id; } K;
static unsigned long rx_ok, rx_err, tx_ok, tx_err, tx_null, tx_other;

static volatile uint32_t *idx(struct gpages *r, unsigned off) { return (volatile uint32_t *)(r->mem + off); }
#define REQ_PROD 0
#define REQ_EVENT 4
#define RSP_PROD 8
#define RSP_EVENT 12
static volatile struct txreq *txslot(uint32_t i) { return (volatile struct txreq *)(C.txr.mem + HDR + (i % RING) * 12); }
static volatile struct txrsp *txrsp(uint32_t i) { return (volatile struct txrsp *)(C.txr.mem + HDR + (i % RING) * 12); }
static volatile struct rxreq *rxslot(struct conn *c, uint32_t i) { return (volatile struct rxreq *)(c->rxr.mem + HDR + (i % RING) * 8); }
static volatile struct rxrsp *rxrsp(struct conn *c, uint32_t i) { return (volatile struct rxrsp *)(c->rxr.mem + HDR + (i % RING) * 8); }

static void rx_post(struct conn *c, uint16_t id, uint32_t gref) {
	volatile struct rxreq *r = rxslot(c, c->rx_prod++);
	r->id = id;
	r->pad = 0;
	r->gref = gref;
}
static void rx_push(struct conn *c) { mb(); *idx(&c->rxr, REQ_PROD) = c->rx_prod; mb(); notify(c->port); }

/* Rings, RX buffers and an event channel for queue 1 (its TX ring stays
 * empty); published under queue-1/. */
static void open_queue1(void) {
	memset(&Q1, 0, sizeof Q1);
	galloc(&Q1.txr, 1, bedom, 1);
	galloc(&Q1.rxr, 1, bedom, 1);
	galloc(&Q1.rxd, NRX, bedom, 1);
	*idx(&Q1.txr, REQ_EVENT) = 1;
	*idx(&Q1.txr, RSP_EVENT) = 1;
	*idx(&Q1.rxr, REQ_EVENT) = 1;
	*idx(&Q1.rxr, RSP_EVENT) = 1;
	Q1.port = evtchn_alloc();
	for (unsigned i = 0; i < NRX; i++) rx_post(&Q1, i, Q1.rxd.refs[i]);
	mb();
	*idx(&Q1.rxr, REQ_PROD) = Q1.rx_prod;
}

/* The control ring page and its event channel (SHARED_RING_INIT). */
static void open_ctrl(void) {
	memset(&K, 0, sizeof K);
	galloc(&K.ring, 1, bedom, 1);
	*idx(&K.ring, REQ_EVENT) = 1;
	*idx(&K.ring, RSP_EVENT) = 1;
	K.port = evtchn_alloc();
	K.on = 1;
	K.id = 0x100;
}

/* Brings the frontend back to a fresh state: the backend in InitWait. */
static void reset_frontend(void) {
	int s = be_state();
	if (s == ST_INITWAIT) return;
	printf("reset: backend state %d\n", s);
	fe_state(ST_CLOSING);
	s = wait_be(1u << ST_CLOSING | 1u << ST_CLOSED, 20);
	fe_state(ST_CLOSED);
	s = wait_be(1u << ST_CLOSED, 20);
	if (s < 0) printf("reset: backend did not reach Closed (%d)\n", -s - 100);
	fe_state(ST_INITIALISING);
	s = wait_be(1u << ST_INITWAIT, 20);
	if (s < 0) die("reset: backend not back in InitWait (state %d)", -s - 100);
}

enum ringhack { RING_GOOD, RING_TX_OUT_OF_RANGE, RING_TX_TO_DOM0, RING_RX_READONLY };

/* Allocates rings and buffers, publishes them and goes Connected; returns
 * the backend's state after waiting (4 when it connected). */
static int do_connect(enum ringhack hack, double wait) {
	reset_frontend();
	C.tx_prod = C.tx_cons = C.rx_prod = C.rx_cons = 0;
	C.id = 0;
	if (hack == RING_TX_TO_DOM0) galloc(&C.txr, 1, 0, 1);
	else galloc(&C.txr, 1, bedom, 1);
	galloc(&C.rxr, 1, bedom, hack != RING_RX_READONLY);
	galloc(&C.txd, NTX, bedom, 1);
	galloc(&C.rxd, NRX, bedom, 1);
	*idx(&C.txr, REQ_EVENT) = 1;
	*idx(&C.txr, RSP_EVENT) = 1;
	*idx(&C.rxr, REQ_EVENT) = 1;
	*idx(&C.rxr, RSP_EVENT) = 1;
	C.port = evtchn_alloc();
	/* a freed ref is taken only now: the allocations above could reuse one */
	for (unsigned i = 0; i < C.nbadrx; i++) rx_post(&C, 0x1000 + i, C.badrx[i] == FREED_REF ? freed_ref() : C.badrx[i]);
	for (unsigned i = 0; i < NRX; i++) rx_post(&C, i, C.rxd.refs[i]);
	mb();
	*idx(&C.rxr, REQ_PROD) = C.rx_prod;
	fe_rm("event-channel-tx");
	fe_rm("event-channel-rx");
	fe_rm("queue-0");
	fe_rm("queue-1");
	fe_rm("ctrl-ring-ref");
	fe_rm("event-channel-ctrl");
	if (nqueues == 2) {
		/* io/netif.h: several queues write their keys under queue-N/ only */
		open_queue1();
		fe_rm("tx-ring-ref");
		fe_rm("rx-ring-ref");
		fe_rm("event-channel");
		fe_write("multi-queue-num-queues", "2");
		fe_write("queue-0/tx-ring-ref", "%u", C.txr.refs[0]);
		fe_write("queue-0/rx-ring-ref", "%u", C.rxr.refs[0]);
		fe_write("queue-0/event-channel", "%d", C.port);
		fe_write("queue-1/tx-ring-ref", "%u", Q1.txr.refs[0]);
		fe_write("queue-1/rx-ring-ref", "%u", Q1.rxr.refs[0]);
		fe_write("queue-1/event-channel", "%d", Q1.port);
	} else {
		fe_write("tx-ring-ref", "%u", hack == RING_TX_OUT_OF_RANGE ? 0x7ffffff0u : C.txr.refs[0]);
		fe_write("rx-ring-ref", "%u", C.rxr.refs[0]);
		fe_write("event-channel", "%d", C.port);
		fe_rm("multi-queue-num-queues");
	}
	if (K.on) {
		open_ctrl();
		fe_write("ctrl-ring-ref", "%u", K.ring.refs[0]);
		fe_write("event-channel-ctrl", "%d", K.port);
	}
	fe_write("request-rx-copy", "1");
	fe_write("feature-rx-notify", "1");
	fe_write("feature-sg", "1");
	fe_write("feature-gso-tcpv4", "0");
	fe_write("feature-gso-tcpv6", "0");
	fe_write("feature-ipv6-csum-offload", "0");
	fe_state(ST_CONNECTED);
	int s = wait_be(1u << ST_CONNECTED | 1u << ST_CLOSING | 1u << ST_CLOSED, wait);
	C.up = s == ST_CONNECTED;
	if (C.up) notify(C.port);
	if (C.up && nqueues == 2) notify(Q1.port);
	return s < 0 ? -s - 100 : s;
}

/* Frees what do_connect allocated (after the backend let go). */
static void release_conn(void) {
	unbind(C.port);
	gfree(&C.txr);
	gfree(&C.rxr);
	gfree(&C.txd);
	gfree(&C.rxd);
	if (nqueues == 2) {
		unbind(Q1.port);
		gfree(&Q1.txr);
		gfree(&Q1.rxr);
		gfree(&Q1.rxd);
	}
	if (K.ring.count) {
		unbind(K.port);
		gfree(&K.ring);
	}
	C.up = 0;
}

/* Closing, then Closed, the way netfront leaves. Returns the backend state. */
static int do_close(void) {
	fe_state(ST_CLOSING);
	int s = wait_be(1u << ST_CLOSING | 1u << ST_CLOSED, 20);
	fe_state(ST_CLOSED);
	s = wait_be(1u << ST_CLOSED, 20);
	release_conn();
	return s < 0 ? -s - 100 : s;
}

static void connect_or_die(void) {
	int s = do_connect(RING_GOOD, 60);
	if (s != ST_CONNECTED) die("backend did not connect (state %d)", s);
	printf("connected: port %d tx-ring-ref %u rx-ring-ref %u\n", C.port, C.txr.refs[0], C.rxr.refs[0]);
}

/* ---------------- TX and RX ---------------- */
static void tx_put(uint32_t gref, uint16_t off, uint16_t flags, uint16_t size) {
	volatile struct txreq *r = txslot(C.tx_prod++);
	r->gref = gref;
	r->offset = off;
	r->flags = flags;
	r->id = C.id++;
	r->size = size;
}
static void tx_push(void) { mb(); *idx(&C.txr, REQ_PROD) = C.tx_prod; mb(); notify(C.port); }

/* Collects TX responses until `n` came or `secs` passed; returns how many. */
static int tx_collect(int n, double secs, int *ok, int *err) {
	double end = now() + secs;
	int got = 0;
	while (got < n) {
		uint32_t prod = *idx(&C.txr, RSP_PROD);
		mb();
		while (C.tx_cons != prod) {
			int st = txrsp(C.tx_cons++)->status;
			got++;
			if (st == RSP_OKAY) { tx_ok++; if (ok) (*ok)++; }
			else if (st == RSP_ERROR) { tx_err++; if (err) (*err)++; }
			else if (st == RSP_NULL) tx_null++;
			else tx_other++;
		}
		if (got >= n || now() > end) break;
		usleep(500);
	}
	return got;
}

/* Consumes the RX responses of one queue (reposting good buffers);
 * returns 1 when an ARP reply from the target was among them. */
static int rx_scan(struct conn *c) {
	int found = 0, repost = 0;
	uint32_t prod = *idx(&c->rxr, RSP_PROD);
	mb();
	while (c->rx_cons != prod) {
		volatile struct rxrsp *r = rxrsp(c, c->rx_cons++);
		uint16_t id = r->id, off = r->offset, flags = r->flags;
		int16_t st = r->status;
		if (st < 0) rx_err++;
		else if (st > 0) rx_ok++;
		if (id < NRX) {
			const uint8_t *p = c->rxd.mem + id * PAGE + off;
			if (st >= 42 && off <= PAGE - 42 && !(flags & NETRXF_extra_info) && p[12] == 8 && p[13] == 6 &&
			    p[20] == 0 && p[21] == 2 && !memcmp(p + 28, &tip, 4))
				found = 1;
			rx_post(c, id, c->rxd.refs[id]);
			repost = 1;
		}
	}
	if (repost) rx_push(c);
	return found;
}

/* Consumes RX responses on every queue; returns 1 when an ARP reply from
 * the target arrived within `secs` (reply_queue says on which queue). */
static int rx_wait_reply(double secs) {
	double end = now() + secs;
	do {
		if (rx_scan(&C)) { reply_queue = 0; return 1; }
		if (nqueues == 2 && rx_scan(&Q1)) { reply_queue = 1; return 1; }
		usleep(1000);
	} while (now() < end);
	return 0;
}

/* A broadcast ARP request for tip from (mac, sip), padded to `len`. */
static void arp_frame(uint8_t *p, unsigned len) {
	memset(p, 0, len);
	memset(p, 0xff, 6);
	memcpy(p + 6, mac, 6);
	p[12] = 8; p[13] = 6;
	p[14] = 0; p[15] = 1; p[16] = 8; p[17] = 0; p[18] = 6; p[19] = 4; p[20] = 0; p[21] = 1;
	memcpy(p + 22, mac, 6);
	memcpy(p + 28, &sip, 4);
	memcpy(p + 38, &tip, 4);
}

/* One ARP request in one slot; 1 when it was answered OKAY and replied to. */
static int probe(const char *what) {
	uint8_t *d = C.txd.mem;
	arp_frame(d, 60);
	tx_put(C.txd.refs[0], 0, 0, 60);
	tx_push();
	int ok = 0, err = 0;
	int got = tx_collect(1, 5, &ok, &err);
	int reply = ok ? rx_wait_reply(5) : 0;
	printf("probe %s: tx_response=%s arp_reply=%d\n", what, got ? (ok ? "okay" : "error") : "none", reply);
	fflush(stdout);
	return ok && reply;
}

/* Places `frame` (len bytes) in data page `pg` and posts it as n slots:
 * the first slot carries `first` bytes, the rest share what is left
 * equally (the last takes the remainder). */
static void tx_slots(unsigned pg, const uint8_t *frame, unsigned len, unsigned n, unsigned first) {
	uint8_t *d = C.txd.mem + pg * PAGE;
	memcpy(d, frame, len);
	unsigned rest = len - first, each = n > 1 ? rest / (n - 1) : 0, pos = first;
	tx_put(C.txd.refs[pg], 0, n > 1 ? NETTXF_more_data : 0, len);
	for (unsigned i = 1; i < n; i++) {
		unsigned sz = i == n - 1 ? len - pos : each;
		tx_put(C.txd.refs[pg], pos, i == n - 1 ? 0 : NETTXF_more_data, sz);
		pos += sz;
	}
}

/* ---------------- modes ---------------- */
static int mode_good(void) {
	int n = 0;
	for (int i = 0; i < 5; i++) n += probe("good");
	printf("RESULT mode=good exchanges=%d/5\n", n);
	return n == 5 ? 0 : 1;
}

/* After a fatal violation: does the vif still answer anything? */
static void after_fatal(const char *mode) {
	int ok = 0, err = 0;
	int got = tx_collect(RING, 3, &ok, &err);
	uint32_t rsp_before = *idx(&C.txr, RSP_PROD);
	/* a valid packet in the next slot: a disabled vif never answers it */
	arp_frame(C.txd.mem + PAGE, 60);
	tx_put(C.txd.refs[1], 0, 0, 60);
	mb();
	notify(C.port);
	msleep(3000);
	printf("RESULT mode=%s responses_after=%d (okay %d error %d) rsp_prod_moved=%d\n", mode, got, ok, err,
	       *idx(&C.txr, RSP_PROD) != rsp_before);
}

static int mode_ahead(void) {
	*idx(&C.txr, REQ_PROD) = C.tx_prod + 1000;
	mb();
	notify(C.port);
	after_fatal("ahead");
	return 0;
}

static int mode_backwards(void) {
	for (int i = 0; i < 3; i++) probe("before");
	*idx(&C.txr, REQ_PROD) = C.tx_prod - 2;
	mb();
	notify(C.port);
	after_fatal("backwards");
	return 0;
}

static int mode_slots(int n) {
	uint8_t f[PAGE];
	unsigned len = 30 * n;
	arp_frame(f, len);
	tx_slots(2, f, len, n, 30);
	tx_push();
	if (n >= 20) {
		after_fatal("slots20");
		return 0;
	}
	int ok = 0, err = 0;
	int got = tx_collect(n, 5, &ok, &err);
	rx_wait_reply(1);
	int p = probe("after");
	printf("RESULT mode=slots%d responses=%d okay=%d error=%d probe_after=%d\n", n, got, ok, err, p);
	return 0;
}

static int mode_crosspage(void) {
	arp_frame(C.txd.mem + 2 * PAGE + 4000, 60);
	tx_put(C.txd.refs[2], 4000, 0, 200);
	tx_push();
	after_fatal("crosspage");
	return 0;
}

static int mode_badgref(void) {
	uint32_t refs[4];
	const char *names[4] = { "out_of_range", "max", "freed", "to_dom0" };
	struct gpages d0;
	galloc(&d0, 1, 0, 1); /* granted to dom0, not to the backend */
	arp_frame(d0.mem, 60);
	refs[0] = 0x7ffffff0u;
	refs[1] = 0xffffffffu;
	refs[2] = freed_ref();
	refs[3] = d0.refs[0];
	int ok = 0, err = 0;
	for (int i = 0; i < 4; i++) {
		arp_frame(C.txd.mem + 3 * PAGE, 60);
		tx_put(refs[i], 0, 0, 60);
		tx_push();
		int o = 0, e = 0;
		tx_collect(1, 5, &o, &e);
		printf("tx bad gref %s (%#x): %s\n", names[i], refs[i], o ? "okay" : e ? "error" : "no response");
		ok += o;
		err += e;
	}
	int p = probe("after tx");
	printf("RESULT mode=badgref tx_okay=%d tx_error=%d rx_error=%lu rx_ok=%lu probe_after=%d\n", ok, err, rx_err, rx_ok, p);
	gfree(&d0);
	return 0;
}

static int mode_badring(void) {
	const struct { enum ringhack h; const char *name; } v[] = {
		{ RING_TX_OUT_OF_RANGE, "tx_out_of_range" }, { RING_TX_TO_DOM0, "tx_to_dom0" }, { RING_RX_READONLY, "rx_readonly" } };
	/* the connection made by main() first: leave it */
	do_close();
	for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) {
		int s = do_connect(v[i].h, 20);
		char p[160], err[256] = "";
		snprintf(p, sizeof p, "%s/error", be);
		xs_read(p, err, sizeof err);
		printf("RESULT mode=badring variant=%s backend_state=%d error=\"%s\"\n", v[i].name, s, err);
		fflush(stdout);
		do_close();
	}
	connect_or_die();
	int pr = probe("after badring");
	printf("RESULT mode=badring probe_after=%d\n", pr);
	return 0;
}

static int mode_zerofrag(void) {
	uint8_t f[128];
	arp_frame(f, 60);
	int res[3][2] = { { 0 } }, replies[3];
	/* 1: a full first slot and 4 empty frags */
	memcpy(C.txd.mem + 4 * PAGE, f, 60);
	tx_put(C.txd.refs[4], 0, NETTXF_more_data, 60);
	for (int i = 0; i < 4; i++) tx_put(C.txd.refs[5], 0, i < 3 ? NETTXF_more_data : 0, 0);
	tx_push();
	tx_collect(5, 5, &res[0][0], &res[0][1]);
	replies[0] = rx_wait_reply(3);
	/* 2: an empty first slot, the data in two frags */
	memcpy(C.txd.mem + 5 * PAGE, f, 60);
	tx_put(C.txd.refs[4], 0, NETTXF_more_data, 60);
	tx_put(C.txd.refs[5], 0, NETTXF_more_data, 30);
	tx_put(C.txd.refs[5], 30, 0, 30);
	tx_push();
	tx_collect(3, 5, &res[1][0], &res[1][1]);
	replies[1] = rx_wait_reply(3);
	/* 3: an empty frag with a bad grant ref between two good ones */
	memcpy(C.txd.mem + 4 * PAGE, f, 60);
	tx_put(C.txd.refs[4], 0, NETTXF_more_data, 60);
	tx_put(0xfffffff0u, 0, NETTXF_more_data, 0);
	tx_put(C.txd.refs[5], 0, 0, 0);
	tx_push();
	tx_collect(3, 5, &res[2][0], &res[2][1]);
	replies[2] = rx_wait_reply(3);
	int p = probe("after");
	printf("RESULT mode=zerofrag empty_frags=%d/%d/%d empty_first=%d/%d/%d empty_badref=%d/%d/%d probe_after=%d\n",
	       res[0][0], res[0][1], replies[0], res[1][0], res[1][1], replies[1], res[2][0], res[2][1], replies[2], p);
	printf("(each: okay responses/error responses/arp reply)\n");
	return 0;
}

static int mode_tiny18(void) {
	uint8_t f[112];
	arp_frame(f, sizeof f);
	tx_slots(6, f, sizeof f, 18, 10); /* 10 + 17 x 6 = 112 bytes */
	tx_push();
	int ok = 0, err = 0;
	int got = tx_collect(18, 5, &ok, &err);
	int reply = rx_wait_reply(5);
	int p = probe("after");
	printf("RESULT mode=tiny18 responses=%d okay=%d error=%d arp_reply=%d probe_after=%d\n", got, ok, err, reply, p);
	return 0;
}

/* Posts one ARP request and flips the field at `field` between a and b
 * until it is answered or 3 s pass. Returns 1 okay, 0 error, -1 none. */
static int flip_one(int field, uint16_t a, uint16_t b, unsigned long *flips) {
	arp_frame(C.txd.mem + 7 * PAGE, 60);
	uint32_t slot = C.tx_prod;
	tx_put(C.txd.refs[7], 0, 0, 60);
	volatile uint16_t *f = field ? &txslot(slot)->offset : &txslot(slot)->size;
	mb();
	*idx(&C.txr, REQ_PROD) = C.tx_prod;
	mb();
	notify(C.port);
	double end = now() + 3;
	for (;;) {
		for (int i = 0; i < 64; i++) {
			*f = b;
			*f = a;
			(*flips)++;
		}
		uint32_t prod = *idx(&C.txr, RSP_PROD);
		mb();
		if (prod != C.tx_cons) break;
		if (now() > end) return -1;
	}
	int ok = 0, err = 0;
	tx_collect(1, 1, &ok, &err);
	return ok ? 1 : err ? 0 : -1;
}

static int mode_doublefetch(void) {
	unsigned long flips = 0;
	int ok1 = 0, err1 = 0, none1 = 0, ok2 = 0, err2 = 0, none2 = 0, n2 = 0;
	for (int i = 0; i < 200; i++) {
		int r = flip_one(0, 60, 8, &flips);
		if (r == 1) ok1++; else if (r == 0) err1++; else { none1++; break; }
	}
	/* drain the replies of phase 1 */
	rx_wait_reply(2);
	printf("RESULT mode=doublefetch phase=1 packets=%d okay=%d error=%d unanswered=%d flips=%lu\n", ok1 + err1 + none1, ok1, err1,
	       none1, flips);
	fflush(stdout);
	flips = 0;
	for (n2 = 0; n2 < 200; n2++) {
		int r = flip_one(1, 0, 4090, &flips);
		if (r == 1) ok2++; else if (r == 0) err2++; else { none2++; n2++; break; }
	}
	printf("RESULT mode=doublefetch phase=2 packets=%d okay=%d error=%d unanswered=%d flips=%lu\n", n2, ok2, err2, none2, flips);
	return 0;
}

static int mode_storm(void) {
	unsigned long n = 0, fails = 0;
	double t0 = now(), end = t0 + duration;
	while (1) {
		for (int i = 0; i < 256; i++) if (notify(C.port) < 0) fails++;
		n += 256;
		if (now() > end) break;
	}
	double secs = now() - t0;
	int old = C.port;
	int p1 = probe("after storm");
	int s = do_close();
	connect_or_die();
	int p2 = probe("after rebind");
	printf("RESULT mode=storm notifies=%lu failed=%lu secs=%.1f rate=%.0f/s probe_after_storm=%d closed_state=%d "
	       "old_port=%d new_port=%d probe_after_rebind=%d\n", n, fails, secs, n / secs, p1, s, old, C.port, p2);
	return 0;
}

static int stop_now(double end) { return now() > end || exists(stop_file); }

static int mode_flap(void) {
	static const int seq[] = { ST_CLOSING, ST_INITIALISING, ST_CONNECTED };
	unsigned long writes = 0;
	double t0 = now(), end = t0 + duration;
	while (!stop_now(end)) {
		for (int k = 0; k < 30; k++)
			for (int i = 0; i < 3; i++) { fe_state(seq[i]); writes++; }
	}
	double secs = now() - t0;
	printf("flap: %lu state writes in %.1f s (%.0f/s), backend state %d\n", writes, secs, writes / secs, be_state());
	fflush(stdout);
	/* settle: back to a clean connection on the same rings */
	do_close();
	connect_or_die();
	int p = probe("after flap");
	printf("RESULT mode=flap writes=%lu secs=%.1f rate=%.0f/s probe_after=%d\n", writes, secs, writes / secs, p);
	return 0;
}

static int mode_nodes(void) {
	unsigned long created = 0, failed = 0, rounds = 0;
	double t0 = now(), end = t0 + duration;
	char p[128];
	while (!stop_now(end)) {
		for (int i = 0; i < 400; i++) {
			snprintf(p, sizeof p, "%s/state/n%d", fe, i);
			if (xs_write_try(p, "x")) created++; else failed++;
		}
		for (int i = 0; i < 400; i++) {
			snprintf(p, sizeof p, "%s/state/n%d", fe, i);
			xs_rm(p);
		}
		rounds++;
	}
	double secs = now() - t0;
	int s = be_state();
	int pr = probe("after nodes");
	printf("RESULT mode=nodes rounds=%lu created=%lu failed=%lu secs=%.1f backend_state=%d probe_after=%d\n", rounds, created,
	       failed, secs, s, pr);
	return 0;
}

/* ---------------- the control ring ---------------- */
static volatile struct ctrlreq *ctrlslot(uint32_t i) { return (volatile struct ctrlreq *)(K.ring.mem + HDR + (i % CRING) * 16); }

/* One control request; waits up to 5 s for its response. Returns 1 with
 * status and data filled in, 0 when none came. */
static int ctrl_ask(uint16_t type, uint32_t d0, uint32_t d1, uint32_t d2, uint32_t *status, uint32_t *data) {
	volatile struct ctrlreq *r = ctrlslot(K.prod);
	uint16_t id = K.id++;
	r->id = id;
	r->type = type;
	r->data[0] = d0;
	r->data[1] = d1;
	r->data[2] = d2;
	K.prod++;
	mb();
	*idx(&K.ring, REQ_PROD) = K.prod;
	mb();
	notify(K.port);
	double end = now() + 5;
	while (*idx(&K.ring, RSP_PROD) == K.cons) {
		if (now() > end) return 0;
		usleep(1000);
	}
	mb();
	volatile struct ctrlrsp *p = (volatile struct ctrlrsp *)ctrlslot(K.cons++);
	*idx(&K.ring, RSP_EVENT) = K.cons + 1;
	if (p->id != id || p->type != type) {
		printf("ctrl: response id %u type %u to request id %u type %u\n", p->id, p->type, id, type);
		return 0;
	}
	*status = p->status;
	*data = p->data;
	return 1;
}

static int ctrl_checks, ctrl_good;

/* Asks and compares with the expected status (and data, unless ~0). */
static int ctrl_expect(const char *what, uint16_t type, uint32_t d0, uint32_t d1, uint32_t d2, uint32_t want_status,
		       uint32_t want_data) {
	uint32_t st = ~0u, data = ~0u;
	int got = ctrl_ask(type, d0, d1, d2, &st, &data);
	int ok = got && st == want_status && (want_data == ~0u || data == want_data);
	ctrl_checks++;
	ctrl_good += ok;
	printf("ctrl %s: %s status=%u data=%u (want status %u", what, got ? "answered" : "NO RESPONSE", st, data, want_status);
	if (want_data != ~0u) printf(" data %u", want_data);
	printf(")%s\n", ok ? "" : " BAD");
	fflush(stdout);
	return ok;
}

/* Writes `n` table entries into page `g` and sends them as entries 0..n. */
static void set_table(struct gpages *g, uint32_t n, uint32_t value, const char *what) {
	for (uint32_t i = 0; i < n; i++) ((volatile uint32_t *)g->mem)[i] = value;
	mb();
	ctrl_expect(what, CT_SET_MAP, g->refs[0], n, 0, CS_SUCCESS, 0);
}

static int mode_ctrl(void) {
	/* the RSS verification key (Microsoft, "Verifying the RSS Hash Calculation") */
	static const uint8_t key[40] = { 0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
					 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
					 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa };
	struct gpages kp, tp, d0;
	galloc(&kp, 1, bedom, 0); /* read-only grants, as io/netif.h allows */
	galloc(&tp, 1, bedom, 0);
	galloc(&d0, 1, 0, 0);     /* granted to dom0, not to the backend */
	memcpy(kp.mem, key, sizeof key);
	printf("ctrl: ring-ref %u port %d, first reply on queue %d\n", K.ring.refs[0], K.port, reply_queue);
	/* the configuration a Windows PV frontend sends */
	ctrl_expect("get_mapping_size", CT_GET_MAP_SIZE, 0, 0, 0, CS_SUCCESS, 128);
	ctrl_expect("get_flags_before_alg", CT_GET_FLAGS, 0, 0, 0, CS_NOT_SUPPORTED, ~0u);
	ctrl_expect("set_alg_toeplitz", CT_SET_ALG, 1, 0, 0, CS_SUCCESS, 0);
	ctrl_expect("get_flags", CT_GET_FLAGS, 0, 0, 0, CS_SUCCESS, 0xf);
	ctrl_expect("set_flags", CT_SET_FLAGS, 0xf, 0, 0, CS_SUCCESS, 0);
	ctrl_expect("set_key", CT_SET_KEY, kp.refs[0], 40, 0, CS_SUCCESS, 0);
	ctrl_expect("set_mapping_size", CT_SET_MAP_SIZE, 8, 0, 0, CS_SUCCESS, 0);
	/* bad requests, each answered with its status, nothing changed */
	ctrl_expect("bad_key_gref", CT_SET_KEY, 0x7ffffff0u, 40, 0, CS_INVALID, 0);
	ctrl_expect("dom0_key_gref", CT_SET_KEY, d0.refs[0], 40, 0, CS_INVALID, 0);
	ctrl_expect("key_41_bytes", CT_SET_KEY, kp.refs[0], 41, 0, CS_OVERFLOW, 0);
	((volatile uint32_t *)tp.mem)[0] = 2; /* queue 2 of a two-queue vif */
	mb();
	ctrl_expect("mapping_queue_2", CT_SET_MAP, tp.refs[0], 1, 0, CS_INVALID, 0);
	ctrl_expect("mapping_past_table", CT_SET_MAP, tp.refs[0], 2, 7, CS_INVALID, 0);
	ctrl_expect("mapping_size_129", CT_SET_MAP_SIZE, 129, 0, 0, CS_INVALID, 0);
	ctrl_expect("unknown_type_99", 99, 1, 2, 3, CS_NOT_SUPPORTED, 0);
	ctrl_expect("invalid_type_0", 0, 0, 0, 0, CS_NOT_SUPPORTED, 0);
	ctrl_expect("bad_flags", CT_SET_FLAGS, 0x10, 0, 0, CS_INVALID, 0);
	ctrl_expect("get_flags_again", CT_GET_FLAGS, 0, 0, 0, CS_SUCCESS, 0xf);
	/* steering: ARP hashes to 0, so table entry 0 picks the queue */
	set_table(&tp, 8, 1, "mapping_all_queue_1");
	int q1 = 0, q0 = 0;
	for (int i = 0; i < 3; i++) q1 += probe("steered to queue 1") && reply_queue == 1;
	set_table(&tp, 8, 0, "mapping_all_queue_0");
	for (int i = 0; i < 3; i++) q0 += probe("steered to queue 0") && reply_queue == 0;
	ctrl_expect("set_alg_none", CT_SET_ALG, 0, 0, 0, CS_SUCCESS, 0);
	int after = probe("hashing off");
	/* left configured, for the backend's published counters */
	ctrl_expect("set_alg_toeplitz_again", CT_SET_ALG, 1, 0, 0, CS_SUCCESS, 0);
	printf("RESULT mode=ctrl checks=%d as_expected=%d steered_q1=%d/3 steered_q0=%d/3 probe_after=%d\n", ctrl_checks,
	       ctrl_good, q1, q0, after);
	gfree(&d0);
	gfree(&tp);
	gfree(&kp);
	return 0;
}

static int mode_ctrlahead(void) {
	uint32_t st, data;
	int ok = ctrl_ask(CT_GET_MAP_SIZE, 0, 0, 0, &st, &data) && st == CS_SUCCESS && data == 128;
	printf("ctrl before: %s\n", ok ? "answered" : "NOT ANSWERED");
	*idx(&K.ring, REQ_PROD) = K.prod + 1000;
	mb();
	notify(K.port);
	msleep(500);
	after_fatal("ctrlahead");
	return 0;
}

static int parse_mac(const char *s) {
	unsigned m[6];
	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) return -1;
	for (int i = 0; i < 6; i++) mac[i] = m[i];
	return 0;
}

int main(int argc, char **argv) {
	const char *our_ip = "10.0.3.9", *target = "10.0.3.1";
	int opt, devid = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "v:s:t:d:r:x:")) != -1) {
		switch (opt) {
		case 'v': devid = atoi(optarg); break;
		case 's': our_ip = optarg; break;
		case 't': target = optarg; break;
		case 'd': duration = atoi(optarg); break;
		case 'r': release_file = optarg; break;
		case 'x': stop_file = optarg; break;
		default: fprintf(stderr, "usage: see the head of hostile-netfront.c\n"); return 64;
		}
	}
	if (optind != argc - 1) { fprintf(stderr, "usage: hostile-netfront [options] MODE\n"); return 64; }
	const char *mode = argv[optind];
	if (inet_pton(AF_INET, our_ip, &sip) != 1 || inet_pton(AF_INET, target, &tip) != 1) die("bad address");
	snprintf(fe, sizeof fe, "device/vif/%d", devid);
	if ((xsfd = open("/dev/xen/xenbus", O_RDWR)) < 0) die("open /dev/xen/xenbus");
	if ((gfd = open("/dev/xen/gntalloc", O_RDWR)) < 0) die("open /dev/xen/gntalloc");
	if ((efd = open("/dev/xen/evtchn", O_RDWR)) < 0) die("open /dev/xen/evtchn");
	char v[128], p[128];
	snprintf(p, sizeof p, "%s/backend", fe);
	if (!xs_read(p, be, sizeof be)) die("no %s", p);
	snprintf(p, sizeof p, "%s/backend-id", fe);
	if (!xs_read(p, v, sizeof v)) die("no %s", p);
	bedom = atoi(v);
	snprintf(p, sizeof p, "%s/mac", fe);
	if (!xs_read(p, v, sizeof v) || parse_mac(v)) die("no usable %s", p);
	printf("HOSTILE-START mode=%s backend=%s backend-id=%d mac=%s backend_state=%d\n", mode, be, bedom, v, be_state());

	if (!strcmp(mode, "badgref")) {
		/* RX requests with bad refs, posted before the good ones */
		struct gpages d0, ro;
		galloc(&d0, 1, 0, 1);
		galloc(&ro, 1, bedom, 0);
		C.badrx[0] = 0x7ffffff0u;
		C.badrx[1] = FREED_REF;
		C.badrx[2] = d0.refs[0];
		C.badrx[3] = ro.refs[0];
		C.nbadrx = 4;
		connect_or_die();
		int replies = 0;
		for (int i = 0; i < 8 && !replies; i++) replies = probe("through bad rx refs");
		printf("rx: %lu error responses, %lu good\n", rx_err, rx_ok);
		printf("RESULT first_probe=%s\n", replies ? "ok" : "failed");
		/* d0 and ro stay allocated until exit (the backend may still hold them) */
	} else {
		if (!strcmp(mode, "ctrl") || !strcmp(mode, "ctrlahead")) {
			nqueues = 2;
			K.on = 1;
		}
		connect_or_die();
		if (!probe("first")) printf("RESULT first_probe=failed\n");
		else printf("RESULT first_probe=ok\n");
	}
	int rc = 0;
	if (!strcmp(mode, "good")) rc = mode_good();
	else if (!strcmp(mode, "ahead")) rc = mode_ahead();
	else if (!strcmp(mode, "backwards")) rc = mode_backwards();
	else if (!strcmp(mode, "slots20")) rc = mode_slots(20);
	else if (!strcmp(mode, "slots19")) rc = mode_slots(19);
	else if (!strcmp(mode, "crosspage")) rc = mode_crosspage();
	else if (!strcmp(mode, "badgref")) rc = mode_badgref();
	else if (!strcmp(mode, "badring")) rc = mode_badring();
	else if (!strcmp(mode, "zerofrag")) rc = mode_zerofrag();
	else if (!strcmp(mode, "tiny18")) rc = mode_tiny18();
	else if (!strcmp(mode, "doublefetch")) rc = mode_doublefetch();
	else if (!strcmp(mode, "storm")) rc = mode_storm();
	else if (!strcmp(mode, "flap")) rc = mode_flap();
	else if (!strcmp(mode, "nodes")) rc = mode_nodes();
	else if (!strcmp(mode, "ctrl")) rc = mode_ctrl();
	else if (!strcmp(mode, "ctrlahead")) rc = mode_ctrlahead();
	else die("unknown mode %s", mode);
	printf("RESULT totals tx_okay=%lu tx_error=%lu tx_null=%lu tx_other=%lu rx_ok=%lu rx_error=%lu\n", tx_ok, tx_err, tx_null,
	       tx_other, rx_ok, rx_err);
	printf("HOSTILE-HOLD backend_state=%d\n", be_state());
	fflush(stdout);
	if (release_file) {
		double end = now() + 600;
		while (!exists(release_file) && now() < end) msleep(200);
	}
	int s = do_close();
	printf("HOSTILE-CLOSED backend_state=%d\n", s);
	return rc;
}
