// SPDX-License-Identifier: GPL-2.0
/* netloom kernel datapath: one tc ingress program for every port of a host.
 *
 *   VM veth (host side) / uplink / internal  -> parse -> masked lookup -> actions | upcall
 *   VXLAN device (collect_md)                -> VNI -> local port (no lookup), else as above
 *   injection veth (agent packet-out)        -> skb->mark selects an exec slot: re-lookup as
 *                                               if received on slot.in_port, or run slot.acts
 *
 * Connection tracking (nl_ct, the rules of datapath/conntrack.py): an IPv4 packet entering from
 * a local port looks its tuple up at that port (the zone) before the flow lookup and carries
 * the answer in key.ct_state; NL_A_CT_COMMIT inserts the tuple as it arrived; an output with
 * NL_AF_CT makes the receiver insert the reversed delivered tuple as the reply direction (a
 * tunnel carries that duty in the NL_VNI_CT bit of the VNI).
 *
 * Matching is tuple-space search: nl_masks lists the masks in use in priority order (most
 * specific first); for each, the packet key is masked and looked up in one LRU hash keyed by
 * (mask id, masked key). First hit wins. The LRU hash bounds the table: when full, the kernel
 * evicts the least recently used flow (a later packet of it simply misses and upcalls again).
 *
 * Header rewrites go through bpf_skb_load/store_bytes + bpf_l3/l4_csum_replace so that both
 * complete checksums (CHECKSUM_NONE, e.g. `ethtool -K tx off` in the VM) and partial ones
 * (CHECKSUM_PARTIAL from veth) stay right: BPF_F_PSEUDO_HDR for addresses (they are in the
 * TCP/UDP pseudo-header, RFC 793 3.1 / RFC 768), BPF_F_MARK_MANGLED_0 for UDP so that a
 * "no checksum" 0 stays 0 and a computed 0 is sent as 0xffff (RFC 768).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "netloom.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nl_flow_key);
	__type(value, struct nl_flow);
} nl_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NL_MAX_MASKS);
	__type(key, __u32);
	__type(value, struct nl_mask);
} nl_masks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct nl_port);
} nl_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct nl_vni_dst);
} nl_vni SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_config);
} nl_config SEC(".maps");

struct nl_exec {
	__u32 in_port;
	__u32 tun_key;
	__u32 lookup; /* 1: look the packet up as if received on in_port; 0: run acts */
	__u32 pad;
	__u64 cookie;
	struct nl_action acts[NL_MAX_ACTIONS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NL_EXEC_SLOTS);
	__type(key, __u32);
	__type(value, struct nl_exec);
} nl_exec SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_verdict);
} nl_verdict SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} nl_upcalls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct nl_bucket);
} nl_upcall_tb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nl_stats);
} nl_stats SEC(".maps");

/* Sized by the loader (bpf_map__set_max_entries, the agent's --conntrack-size). Every
 * connection commits an entry that nothing deletes before the LRU evicts it, so the table runs
 * full: per-CPU LRU lists (BPF_F_NO_COMMON_LRU) evict without the common list's lock. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 262144);
	__type(key, struct nl_ct_key);
	__type(value, struct nl_ct_entry);
} nl_ct SEC(".maps");

#define CONTINUE (-1)

struct parsed {
	struct nl_key key;
	__u32 l3_off;
	__u32 l4_off;
	__u32 tun_key;
	__u32 in_port;
	__u64 cookie;
	__u32 vlan_hw; /* a VLAN tag sits in skb metadata (hw-accel), not in the data */
	__u32 tagged;  /* an 802.1Q / 802.1ad tag in the data */
	__u32 ip_options; /* an IPv4 header longer than 20 bytes (ipv4_check) */
	__u32 trace;
	__u32 tunnel_ifindex;
	__u32 local_ip;
	__u32 underlay_ifindex;
	__u32 udp_port;
	__u32 underlay_mask;
	__u32 upcall_cost_ns;
	__u32 upcall_burst;
	__u32 tunnel_mtu;
	__u32 ct_tcp_ms;
	__u32 ct_closing_ms;
	__u32 ct_other_ms;
	__u32 ct_close; /* a tracked TCP FIN/RST: deliveries shorten the reply entry */
};

struct nl_actions {
	struct nl_action a[NL_MAX_ACTIONS];
};

/* Global (non-static) functions are verified once each, on their own, instead of once per
 * path through the action loop: this keeps verification fast (tens of ms, not seconds). */
#define NL_FUNC __attribute__((noinline))

static __always_inline __u64 mac_u64(const __u8 *m)
{
	return ((__u64)m[0] << 40) | ((__u64)m[1] << 32) | ((__u64)m[2] << 24) |
	       ((__u64)m[3] << 16) | ((__u64)m[4] << 8) | (__u64)m[5];
}

static __always_inline void note(struct parsed *p, __u32 action, __u32 ifindex, __u32 vni,
				 __u32 remote)
{
	__u32 zero = 0;
	struct nl_verdict *v;

	if (!p->trace)
		return;
	v = bpf_map_lookup_elem(&nl_verdict, &zero);
	if (!v)
		return;
	v->action = action;
	v->ifindex = ifindex;
	v->vni = vni;
	v->remote = remote;
	v->count++;
}

/* Direct packet access: the linear part of the packet, [data, data_end). */
#define PKT_DATA(skb) ((void *)(long)(skb)->data)
#define PKT_END(skb) ((void *)(long)(skb)->data_end)

/* The common case read in place: untagged IPv4 with a 20-byte header and 4 bytes of L4 in the
 * linear part (every packet a local TCP/UDP stack hands to a veth). No helper call, no copy;
 * the key is exactly what the general parser below produces. 0: not this case, nothing set. */
static __always_inline int parse_ipv4_inplace(struct __sk_buff *skb, struct parsed *p)
{
	__u8 *eth = PKT_DATA(skb), *end = PKT_END(skb), *l4;
	struct iphdr *ip = (void *)(eth + ETH_HLEN);
	__u16 frag;

	if ((void *)(ip + 1) + 4 > (void *)end)
		return 0;
	if (eth[12] != 0x08 || eth[13] != 0x00 || ip->ihl != 5)
		return 0;
	l4 = (void *)(ip + 1);
	p->key.eth_dst = mac_u64(eth);
	p->key.eth_src = mac_u64(eth + 6);
	p->key.eth_type = ETH_P_IP;
	p->l3_off = ETH_HLEN;
	p->key.ip_src = bpf_ntohl(ip->saddr);
	p->key.ip_dst = bpf_ntohl(ip->daddr);
	p->key.ip_proto = ip->protocol;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x1fff)
		p->key.ip_frag = 2;
	else if (frag & 0x2000)
		p->key.ip_frag = 1;
	p->l4_off = ETH_HLEN + sizeof(*ip);
	if (p->key.ip_frag == 2)
		return 1;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		p->key.tp_src = ((__u16)l4[0] << 8) | l4[1];
		p->key.tp_dst = ((__u16)l4[2] << 8) | l4[3];
	} else if (ip->protocol == IPPROTO_ICMP) {
		p->key.tp_src = l4[0];
		p->key.tp_dst = l4[1];
	}
	return 1;
}

/* Parse Ethernet / 802.1Q / IPv4 / TCP, UDP, ICMP / ARP into the flow key (OVS conventions:
 * ICMP type/code in tp_src/tp_dst; ARP op in ip_proto, SPA/TPA in ip_src/ip_dst). */
static __always_inline int parse(struct __sk_buff *skb, struct parsed *p)
{
	__u8 eth[14];
	__u16 type;
	__u32 off = ETH_HLEN;

	if (!p->vlan_hw && parse_ipv4_inplace(skb, p))
		return 0;
	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(eth)) < 0)
		return -1;
	p->key.eth_dst = mac_u64(eth);
	p->key.eth_src = mac_u64(eth + 6);
	type = ((__u16)eth[12] << 8) | eth[13];
	if (p->vlan_hw)
		p->key.vlan = skb->vlan_tci & 0xfff;
	if (type == ETH_P_8021Q || type == ETH_P_8021AD) {
		__u8 tag[4];

		if (bpf_skb_load_bytes(skb, off, tag, sizeof(tag)) < 0)
			return -1;
		p->key.vlan = (((__u16)tag[0] << 8) | tag[1]) & 0xfff;
		type = ((__u16)tag[2] << 8) | tag[3];
		off += 4;
		p->tagged = 1;
	}
	p->key.eth_type = type;
	p->l3_off = off;
	if (type == ETH_P_IP) {
		struct iphdr ip;
		__u16 frag;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return 0;
		if (ip.ihl < 5)
			return 0;
		p->key.ip_src = bpf_ntohl(ip.saddr);
		p->key.ip_dst = bpf_ntohl(ip.daddr);
		p->key.ip_proto = ip.protocol;
		frag = bpf_ntohs(ip.frag_off);
		if (frag & 0x1fff)
			p->key.ip_frag = 2;
		else if (frag & 0x2000)
			p->key.ip_frag = 1;
		p->l4_off = off + ip.ihl * 4;
		if (p->key.ip_frag == 2)
			return 0;
		if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
			__be16 ports[2];

			if (bpf_skb_load_bytes(skb, p->l4_off, ports, sizeof(ports)) == 0) {
				p->key.tp_src = bpf_ntohs(ports[0]);
				p->key.tp_dst = bpf_ntohs(ports[1]);
			}
		} else if (ip.protocol == IPPROTO_ICMP) {
			__u8 tc[2];

			if (bpf_skb_load_bytes(skb, p->l4_off, tc, sizeof(tc)) == 0) {
				p->key.tp_src = tc[0];
				p->key.tp_dst = tc[1];
			}
		}
	} else if (type == ETH_P_ARP) {
		__u8 arp[28];

		if (bpf_skb_load_bytes(skb, off, arp, sizeof(arp)) == 0) {
			p->key.ip_proto = arp[7];
			p->key.ip_src = ((__u32)arp[14] << 24) | ((__u32)arp[15] << 16) |
					((__u32)arp[16] << 8) | arp[17];
			p->key.ip_dst = ((__u32)arp[24] << 24) | ((__u32)arp[25] << 16) |
					((__u32)arp[26] << 8) | arp[27];
		}
	}
	return 0;
}

#define UPCALL_CLASS(N)                                                                       \
	static __noinline int upcall_##N(struct __sk_buff *skb, struct nl_upcall *h)         \
	{                                                                                     \
		struct {                                                                      \
			struct nl_upcall h;                                                   \
			__u8 data[N];                                                         \
		} *e;                                                                         \
		__u32 cap = h->cap_len;                                                       \
		if (cap > N)                                                                  \
			cap = N;                                                              \
		if (cap < 1)                                                                  \
			return -1;                                                            \
		e = bpf_ringbuf_reserve(&nl_upcalls, sizeof(*e), 0);                          \
		if (!e)                                                                       \
			return -1;                                                            \
		e->h = *h;                                                                    \
		e->h.cap_len = cap;                                                           \
		if (bpf_skb_load_bytes(skb, 0, e->data, cap) < 0) {                           \
			bpf_ringbuf_discard(e, 0);                                            \
			return -1;                                                            \
		}                                                                             \
		bpf_ringbuf_submit(e, 0);                                                     \
		return 0;                                                                     \
	}

UPCALL_CLASS(128)
UPCALL_CLASS(512)
UPCALL_CLASS(2048)
UPCALL_CLASS(9216)

static __always_inline struct nl_stats *stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&nl_stats, &zero);
}

/* ---- connection tracking (the rules of datapath/conntrack.py) ------------------------------ */
#define NL_TCP_FIN 0x01
#define NL_TCP_SYN 0x02
#define NL_TCP_RST 0x04
#define NL_NS_PER_MS 1000000ull
#define NL_CT_REFRESH_NS 1000000000ull /* an entry's expiry is written at most once a second */

/* The TCP flags octet (RFC 793 3.1), 0 if not TCP. */
static __always_inline __u8 tcp_flags(struct __sk_buff *skb, struct parsed *p)
{
	__u8 *data = PKT_DATA(skb), fl = 0;

	if (p->key.eth_type != ETH_P_IP || p->key.ip_proto != IPPROTO_TCP || p->key.ip_frag == 2 ||
	    !p->l4_off)
		return 0;
	if (p->l4_off == ETH_HLEN + 20 && data + ETH_HLEN + 20 + 14 <= (__u8 *)PKT_END(skb))
		return data[ETH_HLEN + 20 + 13];
	if (bpf_skb_load_bytes(skb, p->l4_off + 13, &fl, 1) < 0)
		return 0;
	return fl;
}

static __always_inline __u64 ct_life(struct parsed *p, __u8 proto, __u32 closing)
{
	__u32 ms;

	if (proto != IPPROTO_TCP)
		ms = p->ct_other_ms ? p->ct_other_ms : 60000;
	else if (closing)
		ms = p->ct_closing_ms ? p->ct_closing_ms : 10000;
	else
		ms = p->ct_tcp_ms ? p->ct_tcp_ms : 21600000;
	return (__u64)ms * NL_NS_PER_MS;
}

static __always_inline void ct_key_of(struct parsed *p, __u32 zone, __u32 reverse,
				      struct nl_ct_key *k)
{
	__u16 sp = 0, dp = 0;

	if (p->key.ip_proto == IPPROTO_TCP || p->key.ip_proto == IPPROTO_UDP) {
		sp = p->key.tp_src;
		dp = p->key.tp_dst;
	}
	k->zone = zone;
	k->proto = p->key.ip_proto;
	if (reverse) {
		k->src = p->key.ip_dst;
		k->dst = p->key.ip_src;
		k->sport = dp;
		k->dport = sp;
	} else {
		k->src = p->key.ip_src;
		k->dst = p->key.ip_dst;
		k->sport = sp;
		k->dport = dp;
	}
}

/* The live entry of k; an expired one counts as absent and goes. */
static __always_inline struct nl_ct_entry *ct_get(struct nl_ct_key *k, __u64 now)
{
	struct nl_ct_entry *e = bpf_map_lookup_elem(&nl_ct, k);

	if (e && e->expires_ns <= now) {
		bpf_map_delete_elem(&nl_ct, k);
		return NULL;
	}
	return e;
}

/* A hit: a FIN/RST shortens the entry for good; else refresh, at most once a second. */
static __always_inline void ct_touch(struct parsed *p, struct nl_ct_entry *e, __u8 proto,
				     __u32 closing, __u64 now)
{
	if (closing) {
		__u64 exp = now + ct_life(p, proto, 1);

		e->flags |= NL_CTF_CLOSING;
		if (e->expires_ns > exp)
			e->expires_ns = exp;
		e->refreshed_ns = now;
	} else if (!(e->flags & NL_CTF_CLOSING) && now - e->refreshed_ns >= NL_CT_REFRESH_NS) {
		e->expires_ns = now + ct_life(p, proto, 0);
		e->refreshed_ns = now;
	}
}

static __always_inline int is_ipv4(struct parsed *p)
{
	return p->key.eth_type == ETH_P_IP && p->l4_off;
}

/* Fill key.ct_state of a packet entering from a local port (its zone). The coarse clock is
 * enough for lifetimes of seconds and far cheaper in a VM than a clocksource read. */
NL_FUNC int ct_lookup(struct __sk_buff *skb, struct parsed *p)
{
	struct nl_ct_key k = {};
	struct nl_ct_entry *e;
	struct nl_stats *st;
	__u64 now;
	__u8 fl;

	if (!p || !is_ipv4(p))
		return 0;
	fl = tcp_flags(skb, p);
	p->ct_close = !!(fl & (NL_TCP_FIN | NL_TCP_RST));
	ct_key_of(p, p->in_port, 0, &k);
	now = bpf_ktime_get_coarse_ns();
	e = ct_get(&k, now);
	if (!e) {
		p->key.ct_state = NL_CT_NEW;
		if (p->key.ip_proto == IPPROTO_TCP && !(fl & NL_TCP_SYN)) {
			st = stats();
			if (st)
				st->ct_lost++;
		}
		return 0;
	}
	ct_touch(p, e, k.proto, p->ct_close, now);
	p->key.ct_state = NL_CT_EST | ((e->flags & NL_CTF_REPLY) ? NL_CT_RPL : 0);
	return 0;
}

/* Insert the packet's tuple at zone (reversed: as the reply direction) unless a live entry
 * exists, which a FIN/RST then shortens. The LRU map evicts when full, never refuses. */
NL_FUNC int ct_commit(struct parsed *p, __u32 zone, __u32 reverse, __u32 closing)
{
	struct nl_ct_entry *e, fresh = {};
	struct nl_ct_key k = {};
	struct nl_stats *st;
	__u64 now;

	if (!p || !is_ipv4(p))
		return 0;
	ct_key_of(p, zone, reverse, &k);
	now = bpf_ktime_get_coarse_ns();
	e = ct_get(&k, now);
	if (e) {
		if (closing)
			ct_touch(p, e, k.proto, 1, now);
		return 0;
	}
	fresh.expires_ns = now + ct_life(p, k.proto, closing);
	fresh.refreshed_ns = now;
	fresh.flags = (reverse ? NL_CTF_REPLY : 0) | (closing ? NL_CTF_CLOSING : 0);
	if (bpf_map_update_elem(&nl_ct, &k, &fresh, BPF_ANY) == 0) {
		st = stats();
		if (st)
			st->ct_commits++;
	}
	return 0;
}

/* The receiver's side, on delivery to local port ifindex: commit the reversed tuple (ct), or
 * let a FIN/RST shorten it. */
NL_FUNC int deliver_ct(struct parsed *p, __u32 ifindex, __u32 ct)
{
	struct nl_ct_key k = {};
	struct nl_ct_entry *e;
	__u64 now;

	if (!p)
		return 0;
	if (ct)
		return ct_commit(p, ifindex, 1, p->ct_close);
	if (!p->ct_close || !is_ipv4(p))
		return 0;
	ct_key_of(p, ifindex, 1, &k);
	now = bpf_ktime_get_coarse_ns();
	e = ct_get(&k, now);
	if (e)
		ct_touch(p, e, k.proto, 1, now);
	return 0;
}

/* A token bucket per port, kept in the kernel so that a VM sending a new flow per packet (a
 * port scan) costs the agent at most `burst` + rate x t upcalls, and the ring buffer keeps
 * room for the other ports' first packets. Credit is time: it grows 1 ns per ns up to
 * burst x cost, an upcall spends `cost` ns. Two CPUs racing on one bucket may both pass:
 * the bound is approximate by a packet or two, which is all it has to be. */
static __always_inline int upcall_admit(__u32 port, __u64 cost, __u64 burst)
{
	__u64 now = bpf_ktime_get_ns(), cap = cost * burst, credit;
	struct nl_bucket *b = bpf_map_lookup_elem(&nl_upcall_tb, &port);

	if (!b) {
		struct nl_bucket fresh = {.credit_ns = cap > cost ? cap - cost : 0, .stamp_ns = now};

		bpf_map_update_elem(&nl_upcall_tb, &port, &fresh, BPF_ANY);
		return 1;
	}
	credit = b->credit_ns + (now > b->stamp_ns ? now - b->stamp_ns : 0);
	if (credit > cap)
		credit = cap;
	b->stamp_ns = now;
	if (credit < cost) {
		b->credit_ns = credit;
		return 0;
	}
	b->credit_ns = credit - cost;
	return 1;
}

/* Park the packet with the agent: copy it into the ring (constant size classes keep the
 * verifier happy) and drop it here; the agent re-injects it once it has decided. */
NL_FUNC int upcall(struct __sk_buff *skb, struct parsed *p, __u32 reason)
{
	struct nl_upcall h = {};
	struct nl_stats *st;
	int r;

	if (!p)
		return TC_ACT_SHOT;
	if (p->upcall_cost_ns && !upcall_admit(p->in_port, p->upcall_cost_ns, p->upcall_burst)) {
		st = stats();
		if (st)
			st->upcalls_throttled++;
		note(p, NL_A_DROP, p->in_port, reason, 0);
		return TC_ACT_SHOT;
	}

	h.in_port = p->in_port;
	h.reason = reason;
	h.tun_key = p->tun_key;
	h.pkt_len = skb->len;
	h.cap_len = skb->len;
	h.cookie = p->cookie;
	h.ct_state = p->key.ct_state;
	note(p, NL_A_USERSPACE, p->in_port, reason, 0);
	if (h.pkt_len <= 128)
		r = upcall_128(skb, &h);
	else if (h.pkt_len <= 512)
		r = upcall_512(skb, &h);
	else if (h.pkt_len <= 2048)
		r = upcall_2048(skb, &h);
	else
		r = upcall_9216(skb, &h);
	if (r < 0) {
		st = stats();
		if (st)
			st->upcalls_lost++;
	}
	return TC_ACT_SHOT;
}

/* Over-MTU check of the egress port (the agent answers with ICMP "fragmentation needed").
 * GSO super-packets are segmented later to the size the sender chose, so they pass. */
static __always_inline int too_big(struct __sk_buff *skb, struct parsed *p, __u32 mtu)
{
	if (!mtu || skb->gso_size)
		return 0;
	return skb->len > p->l3_off + mtu;
}

NL_FUNC int output(struct __sk_buff *skb, struct parsed *p, __u32 ifindex, __u32 flags)
{
	struct nl_port *port = bpf_map_lookup_elem(&nl_ports, &ifindex);

	if (!p)
		return TC_ACT_SHOT;
	if (!port) {
		note(p, NL_A_DROP, ifindex, 0, 0);
		return TC_ACT_SHOT;
	}
	if (too_big(skb, p, port->mtu))
		return upcall(skb, p, NL_UP_MTU);
	if ((flags & NL_AF_CT) || p->ct_close)
		deliver_ct(p, ifindex, flags & NL_AF_CT);
	note(p, NL_A_OUTPUT, ifindex, 0, 0);
	if (flags & NL_AF_CLONE) {
		bpf_clone_redirect(skb, ifindex, 0);
		return CONTINUE;
	}
	if (port->kind == NL_PORT_VM)
		return bpf_redirect_peer(ifindex, 0);
	return bpf_redirect(ifindex, 0);
}

/* ---- VXLAN in BPF (RFC 7348), the fast path ------------------------------------------------
 *
 * The collect_md VXLAN device costs every packet a second pass through the host's IP stack on
 * both sides (route lookup, UDP socket, vxlan_rcv, gro_cells). Unicast IPv4 frames skip it:
 * encap() prepends outer IPv4/UDP/VXLAN + the inner Ethernet header with bpf_skb_adjust_room
 * (the ENCAP flags keep GSO super-packets whole: SKB_GSO_UDP_TUNNEL, inner headers set) and
 * hands the packet to the underlay NIC with bpf_redirect_neigh (FIB + neighbour fill the outer
 * MACs); underlay_ingress() pops the same 50 bytes for a VNI bound to a local port and redirects
 * straight into the VM. Anything else (ARP, VLAN, clones, non-TCP GSO, a VNI without a local
 * port, a non-zero outer UDP checksum) takes the device path, which stays as the fallback. */
#define NL_VXLAN_HLEN (sizeof(struct iphdr) + sizeof(struct udphdr) + 8 + ETH_HLEN)
#define NL_VXLAN_FLAG_I 0x08 /* RFC 7348 5: "I" flag, the VNI is valid */

struct nl_vxlan_encap {
	struct iphdr ip;
	struct udphdr udp;
	__u8 vxlan[8];
	__u8 eth[ETH_HLEN];
} __attribute__((packed));

static __always_inline __u16 csum_fold32(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The IPv4 header checksum of a 20-byte header (RFC 791 3.1), summed in place: the outer
 * header is built on the stack, where a loop of 10 words beats a bpf_csum_diff call. */
static __always_inline __u16 ipv4_csum(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold32(sum);
}

NL_FUNC int encap(struct __sk_buff *skb, struct parsed *p, __u32 vni, __u32 remote)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
			    BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
			    BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN);
	struct nl_vxlan_encap h = {};
	struct iphdr ip = {};
	__u32 len, hash;
	__u8 *data;

	if (!p)
		return TC_ACT_SHOT;
	if (p->vlan_hw || p->l3_off != ETH_HLEN || p->key.eth_type != ETH_P_IP)
		return CONTINUE;
	if (skb->len - ETH_HLEN + NL_VXLAN_HLEN > 0xffff)
		return CONTINUE;
	data = PKT_DATA(skb);
	if (data + ETH_HLEN > (__u8 *)PKT_END(skb))
		return CONTINUE;
	__builtin_memcpy(h.eth, data, ETH_HLEN);
	/* RFC 7348 5: the source port is a hash of the inner headers, for ECMP on the underlay.
	 * A packet from a local socket carries its flow hash already (sk_txhash). */
	hash = skb->hash;
	if (!hash)
		hash = bpf_get_hash_recalc(skb);
	h.udp.source = bpf_htons(49152 | (hash & 0x3fff));
	if (bpf_skb_adjust_room(skb, NL_VXLAN_HLEN, BPF_ADJ_ROOM_MAC, flags) < 0)
		return CONTINUE; /* unchanged: e.g. UDP GSO, which the helper refuses */
	len = skb->len - ETH_HLEN;
	ip.version = 4;
	ip.ihl = 5;
	ip.ttl = 64;
	ip.protocol = IPPROTO_UDP;
	ip.frag_off = bpf_htons(0x4000); /* DF: the overlay MTU already leaves room */
	ip.tot_len = bpf_htons(len);
	ip.saddr = bpf_htonl(p->local_ip);
	ip.daddr = bpf_htonl(remote);
	ip.check = ipv4_csum(&ip);
	h.ip = ip;
	h.udp.dest = bpf_htons(p->udp_port);
	h.udp.len = bpf_htons(len - sizeof(ip));
	h.udp.check = 0; /* RFC 7348 5: zero over IPv4 */
	h.vxlan[0] = NL_VXLAN_FLAG_I;
	h.vxlan[4] = vni >> 16;
	h.vxlan[5] = vni >> 8;
	h.vxlan[6] = vni;
	/* adjust_room pushed the 50 bytes into the head: they are linear, write them in place */
	data = PKT_DATA(skb);
	if (data + ETH_HLEN + sizeof(h) <= (__u8 *)PKT_END(skb))
		__builtin_memcpy(data + ETH_HLEN, &h, sizeof(h));
	else if (bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0) < 0)
		return TC_ACT_SHOT;
	note(p, NL_A_TUNNEL, p->underlay_ifindex, vni, remote);
	if (p->underlay_mask && !((remote ^ p->local_ip) & p->underlay_mask)) {
		/* On-link remote: it is its own next hop, no FIB lookup needed. */
		struct bpf_redir_neigh nh = {.nh_family = 2 /* AF_INET */};

		nh.ipv4_nh = bpf_htonl(remote);
		return bpf_redirect_neigh(p->underlay_ifindex, &nh, sizeof(nh), 0);
	}
	return bpf_redirect_neigh(p->underlay_ifindex, 0, 0, 0);
}

struct nl_vxlan_frame {
	__u8 eth[ETH_HLEN];
	struct nl_vxlan_encap e;
} __attribute__((packed));

NL_FUNC int underlay_ingress(struct __sk_buff *skb, struct parsed *p)
{
	struct nl_vxlan_frame copy, *f;
	__u8 inner[ETH_HLEN], *data;
	struct nl_vni_dst *dst;
	__u32 vni, ifindex, ct;

	if (!p || !p->underlay_ifindex)
		return TC_ACT_OK;
	f = PKT_DATA(skb);
	if ((void *)(f + 1) > PKT_END(skb)) { /* headers not linear: read a copy */
		if (bpf_skb_load_bytes(skb, 0, &copy, sizeof(copy)) < 0)
			return TC_ACT_OK;
		f = &copy;
	}
	if (f->eth[12] != 0x08 || f->eth[13] != 0x00 || skb->vlan_present)
		return TC_ACT_OK;
	if (f->e.ip.version != 4 || f->e.ip.ihl != 5 || f->e.ip.protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	if ((f->e.ip.frag_off & bpf_htons(0x3fff)) || f->e.ip.daddr != bpf_htonl(p->local_ip))
		return TC_ACT_OK;
	if (f->e.udp.dest != bpf_htons(p->udp_port) || f->e.udp.check)
		return TC_ACT_OK;
	if (!(f->e.vxlan[0] & NL_VXLAN_FLAG_I) || f->e.eth[12] != 0x08 || f->e.eth[13] != 0x00)
		return TC_ACT_OK;
	vni = ((__u32)f->e.vxlan[4] << 16) | ((__u32)f->e.vxlan[5] << 8) | f->e.vxlan[6];
	ct = vni & NL_VNI_FLAGS;
	vni &= ~NL_VNI_FLAGS;
	__builtin_memcpy(inner, f->e.eth, ETH_HLEN);
	dst = bpf_map_lookup_elem(&nl_vni, &vni);
	if (!dst || dst->kind != NL_PORT_VM)
		return TC_ACT_OK;
	ifindex = dst->ifindex;
	if (bpf_skb_adjust_room(skb, -(__s32)NL_VXLAN_HLEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		return TC_ACT_OK;
	/* adjust_room kept the outer MAC header at the front: the inner one replaces it */
	data = PKT_DATA(skb);
	if (data + ETH_HLEN <= (__u8 *)PKT_END(skb))
		__builtin_memcpy(data, inner, ETH_HLEN);
	else if (bpf_skb_store_bytes(skb, 0, inner, ETH_HLEN, 0) < 0)
		return TC_ACT_SHOT;
	if (ct && parse(skb, p) == 0) { /* the sender asked for the receiver's conntrack side */
		p->ct_close = !!(ct & NL_VNI_CT_CLOSE);
		deliver_ct(p, ifindex, ct & NL_VNI_CT);
	}
	note(p, NL_A_OUTPUT, ifindex, vni, 0);
	return bpf_redirect_peer(ifindex, 0);
}

NL_FUNC int tunnel(struct __sk_buff *skb, struct parsed *p, __u32 vni, __u32 remote,
		   __u32 flags)
{
	struct bpf_tunnel_key tk = {};
	__u32 ifindex;

	if (!p)
		return TC_ACT_SHOT;
	if (flags & NL_AF_CT)
		vni |= NL_VNI_CT;
	if (p->ct_close)
		vni |= NL_VNI_CT_CLOSE;
	if (!p->tunnel_ifindex) {
		note(p, NL_A_DROP, 0, vni, remote);
		return TC_ACT_SHOT;
	}
	ifindex = p->tunnel_ifindex;
	if (too_big(skb, p, p->tunnel_mtu)) /* the tunnel port's MTU, kept in the config map */
		return upcall(skb, p, NL_UP_MTU);
	if (!(flags & NL_AF_CLONE) && p->underlay_ifindex) {
		int r = encap(skb, p, vni, remote);

		if (r != CONTINUE)
			return r;
	}
	tk.tunnel_id = vni;
	tk.remote_ipv4 = remote;
	tk.local_ipv4 = p->local_ip;
	tk.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &tk, sizeof(tk), BPF_F_ZERO_CSUM_TX) < 0) {
		note(p, NL_A_DROP, ifindex, vni, remote);
		return TC_ACT_SHOT;
	}
	note(p, NL_A_TUNNEL, ifindex, vni, remote);
	if (flags & NL_AF_CLONE) {
		bpf_clone_redirect(skb, ifindex, 0);
		return CONTINUE;
	}
	return bpf_redirect(ifindex, 0);
}

/* Fix the TCP/UDP checksum after a change of `size` bytes (2 or 4) from `from` to `to`. */
static __always_inline void l4_fix(struct __sk_buff *skb, struct parsed *p, __u32 from, __u32 to,
				   __u64 flags)
{
	if (p->key.ip_proto == IPPROTO_TCP)
		bpf_l4_csum_replace(skb, p->l4_off + 16, from, to, flags);
	else if (p->key.ip_proto == IPPROTO_UDP)
		bpf_l4_csum_replace(skb, p->l4_off + 6, from, to, flags | BPF_F_MARK_MANGLED_0);
}

/* RFC 1624 eq. 3, HC' = ~(~HC + ~m + m'): the checksum after one 16-bit word went from m to
 * m' (network order in, network order out: one's complement sums do not care). */
static __always_inline __u16 csum16_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + (__u32)new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

NL_FUNC int set_ip(struct __sk_buff *skb, struct parsed *p, __u32 field, __u32 ip)
{
	__u32 old, new = bpf_htonl(ip);
	struct iphdr *iph;

	if (!p || p->key.eth_type != ETH_P_IP || !p->l4_off)
		return 0;
	iph = (void *)((__u8 *)PKT_DATA(skb) + ETH_HLEN);
	if (p->l3_off == ETH_HLEN && (void *)(iph + 1) <= PKT_END(skb)) {
		/* in place; the header checksum by RFC 1624, one 16-bit half at a time */
		__u32 *addr = field == 12 ? &iph->saddr : &iph->daddr;

		old = *addr;
		*addr = new;
		iph->check = csum16_replace(csum16_replace(iph->check, old >> 16, new >> 16),
					    old & 0xffff, new & 0xffff);
	} else {
		if (bpf_skb_load_bytes(skb, p->l3_off + field, &old, 4) < 0)
			return 0;
		bpf_skb_store_bytes(skb, p->l3_off + field, &new, 4, 0);
		bpf_l3_csum_replace(skb, p->l3_off + 10, old, new, 4);
	}
	/* L4 through the helper: only it knows whether the checksum is partial (a pseudo-header
	 * sum, from veth) or complete */
	if (p->key.ip_frag != 2)
		l4_fix(skb, p, old, new, BPF_F_PSEUDO_HDR | 4);
	if (field == 12)
		p->key.ip_src = ip;
	else
		p->key.ip_dst = ip;
	return 0;
}

NL_FUNC int set_tp(struct __sk_buff *skb, struct parsed *p, __u32 field, __u32 port)
{
	__u16 old, new = bpf_htons((__u16)port);

	if (!p || p->key.eth_type != ETH_P_IP || !p->l4_off || p->key.ip_frag == 2)
		return 0;
	if (p->key.ip_proto != IPPROTO_TCP && p->key.ip_proto != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, p->l4_off + field, &old, 2) < 0)
		return 0;
	bpf_skb_store_bytes(skb, p->l4_off + field, &new, 2, 0);
	l4_fix(skb, p, old, new, 2);
	if (field == 0)
		p->key.tp_src = port;
	else
		p->key.tp_dst = port;
	return 0;
}

/* RFC 791: TTL decrement; RFC 1624 incremental header checksum (in place for an untagged
 * linear header, else through bpf_l3_csum_replace). */
NL_FUNC int dec_ttl(struct __sk_buff *skb, struct parsed *p)
{
	__u8 b[2];
	__u16 old, new;

	if (!p)
		return TC_ACT_SHOT;
	if (p->key.eth_type != ETH_P_IP || !p->l4_off)
		return CONTINUE;
	if (p->l3_off == ETH_HLEN) {
		__u8 *data = PKT_DATA(skb);
		struct iphdr *ip = (void *)(data + ETH_HLEN);

		if ((void *)(ip + 1) <= PKT_END(skb)) {
			if (ip->ttl <= 1)
				return upcall(skb, p, NL_UP_TTL);
			__builtin_memcpy(&old, &ip->ttl, 2); /* the ttl/protocol word */
			ip->ttl -= 1;
			__builtin_memcpy(&new, &ip->ttl, 2);
			ip->check = csum16_replace(ip->check, old, new);
			return CONTINUE;
		}
	}
	if (bpf_skb_load_bytes(skb, p->l3_off + 8, b, 2) < 0)
		return TC_ACT_SHOT;
	if (b[0] <= 1)
		return upcall(skb, p, NL_UP_TTL);
	__builtin_memcpy(&old, b, 2);
	b[0] -= 1;
	__builtin_memcpy(&new, b, 2);
	bpf_skb_store_bytes(skb, p->l3_off + 8, b, 1, 0);
	bpf_l3_csum_replace(skb, p->l3_off + 10, old, new, 2);
	return CONTINUE;
}

static __always_inline void set_mac(struct __sk_buff *skb, __u32 off, __u64 mac)
{
	__u8 m[6] = {mac >> 40, mac >> 32, mac >> 24, mac >> 16, mac >> 8, mac};
	__u8 *data = PKT_DATA(skb);

	if (data + off + 6 <= (__u8 *)PKT_END(skb))
		__builtin_memcpy(data + off, m, 6);
	else
		bpf_skb_store_bytes(skb, off, m, 6, 0);
}

NL_FUNC int run_actions(struct __sk_buff *skb, struct parsed *p, struct nl_actions *acts)
{
	int r;

	if (!p || !acts)
		return TC_ACT_SHOT;
	for (int i = 0; i < NL_MAX_ACTIONS; i++) {
		struct nl_action *a = &acts->a[i];

		switch (a->type) {
		case NL_A_NONE:
			goto end;
		case NL_A_SET_ETH_SRC:
			set_mac(skb, 6, a->arg64);
			p->key.eth_src = a->arg64;
			break;
		case NL_A_SET_ETH_DST:
			set_mac(skb, 0, a->arg64);
			p->key.eth_dst = a->arg64;
			break;
		case NL_A_SET_IP_SRC:
			set_ip(skb, p, 12, a->arg);
			break;
		case NL_A_SET_IP_DST:
			set_ip(skb, p, 16, a->arg);
			break;
		case NL_A_SET_TP_SRC:
			set_tp(skb, p, 0, a->arg);
			break;
		case NL_A_SET_TP_DST:
			set_tp(skb, p, 2, a->arg);
			break;
		case NL_A_DEC_TTL:
			r = dec_ttl(skb, p);
			if (r != CONTINUE)
				return r;
			break;
		case NL_A_PUSH_VLAN:
			if (p->vlan_hw) {
				p->l3_off += 4;
				if (p->l4_off)
					p->l4_off += 4;
			}
			bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), a->arg);
			p->vlan_hw = 1;
			break;
		case NL_A_POP_VLAN:
			if (!p->vlan_hw && p->l3_off == ETH_HLEN + 4) {
				p->l3_off -= 4;
				if (p->l4_off)
					p->l4_off -= 4;
			}
			bpf_skb_vlan_pop(skb);
			p->vlan_hw = 0;
			break;
		case NL_A_OUTPUT:
			r = output(skb, p, a->arg, a->flags);
			if (r != CONTINUE)
				return r;
			break;
		case NL_A_TUNNEL:
			r = tunnel(skb, p, a->arg, (__u32)a->arg64, a->flags);
			if (r != CONTINUE)
				return r;
			break;
		case NL_A_USERSPACE:
			return upcall(skb, p, NL_UP_USERSPACE);
		case NL_A_CT_COMMIT:
			ct_commit(p, p->in_port, 0, !!(tcp_flags(skb, p) & (NL_TCP_FIN | NL_TCP_RST)));
			break;
		case NL_A_DROP:
		default:
			goto end;
		}
	}
end:
	note(p, NL_A_DROP, 0, 0, 0);
	return TC_ACT_SHOT;
}

/* ---- edge hygiene: what a local port's packet must pass before the flow lookup --------------
 *
 * RFC 1812 5.2.2: a router must not forward an IPv4 packet whose version is not 4, whose IHL
 * is below 5, whose total length is shorter than its header or longer than the frame, or whose
 * header checksum is wrong. The flow key holds none of these, so a flow installed for a good
 * packet would forward a bad one of the same 5-tuple: every IPv4 packet from a local port is
 * checked here, first. A frame carrying an 802.1Q or 802.1ad tag is dropped, never stripped
 * and forwarded: no netloom port is tagged. Packets with IPv4 options go to the agent
 * (NL_UP_OPTIONS): no key field holds the options, so a flow set up for an option-less packet
 * must not decide for one (a source route the router refuses, RFC 7126 4.3.3); the agent
 * simulates each one and executes its decision, never installing a flow. They are rare
 * (hosts and routers drop most of them), and the port's upcall budget bounds a flood. */

/* The folded one's complement sum of a 20-byte header read in place is 0xffff when the
 * checksum is right (RFC 1071: summed as five 32-bit words, then folded, which gives the
 * same sum in any byte order). */
static __always_inline int csum20_ok(const __u32 *w)
{
	__u64 sum = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];

	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* The header copied out (not linear, or with options: up to 60 bytes), summed with
 * bpf_csum_diff. 1: valid (hlen = its length), 0: not. */
NL_FUNC int ipv4_check_copy(struct __sk_buff *skb, __u32 *hlen_out)
{
	__u8 buf[60] = {};
	__u32 hlen;
	__s64 sum;

	if (!hlen_out || bpf_skb_load_bytes(skb, ETH_HLEN, buf, 20) < 0)
		return 0;
	hlen = (buf[0] & 0xf) << 2;
	if ((buf[0] >> 4) != 4 || hlen < 20)
		return 0;
	if (hlen > 20 && bpf_skb_load_bytes(skb, ETH_HLEN, buf, hlen) < 0)
		return 0;
	sum = bpf_csum_diff(0, 0, (__be32 *)buf, hlen, 0);
	if (sum < 0)
		return 0;
	*hlen_out = hlen;
	return csum_fold32((__u64)sum) == 0;
}

/* RFC 1812 5.2.2 on the IPv4 header at ETH_HLEN (tagged frames were dropped before); sets
 * ip_options. 1: fine to forward. */
static __always_inline int ipv4_check(struct __sk_buff *skb, struct parsed *p)
{
	__u8 *data = PKT_DATA(skb);
	struct iphdr *ip = (void *)(data + ETH_HLEN);
	__u32 hlen, tot;

	if ((void *)(ip + 1) <= PKT_END(skb) && ip->version == 4 && ip->ihl == 5) {
		if (!csum20_ok((const __u32 *)ip)) /* the common case: in place, no helper */
			return 0;
		hlen = 20;
		tot = bpf_ntohs(ip->tot_len);
	} else {
		__be16 len;

		if (!ipv4_check_copy(skb, &hlen) ||
		    bpf_skb_load_bytes(skb, ETH_HLEN + 2, &len, sizeof(len)) < 0)
			return 0;
		tot = bpf_ntohs(len);
	}
	p->ip_options = hlen > 20;
	/* A GSO super-packet over 64 KiB (BIG TCP) carries total length 0: the stack's own. */
	if (tot == 0 && skb->gso_size)
		return 1;
	return tot >= hlen && tot <= skb->len - ETH_HLEN;
}

/* Tagged frames and bad IPv4 headers: dropped (and counted). CONTINUE: go on. */
static __always_inline int edge_check(struct __sk_buff *skb, struct parsed *p)
{
	struct nl_stats *st;

	if (p->vlan_hw || p->tagged) {
		st = stats();
		if (st)
			st->tagged_dropped++;
	} else if (p->key.eth_type == ETH_P_IP && !ipv4_check(skb, p)) {
		st = stats();
		if (st)
			st->ip_header_errors++;
	} else {
		return CONTINUE;
	}
	note(p, NL_A_DROP, p->in_port, 0, 0);
	return TC_ACT_SHOT;
}

/* Tuple-space search; returns the flow or NULL. */
static __always_inline struct nl_flow *lookup(struct parsed *p)
{
	struct nl_flow_key fk = {};
	__u64 *k = (__u64 *)&p->key;
	__u64 *out = (__u64 *)&fk.key;

	for (__u32 i = 0; i < NL_MAX_MASKS; i++) {
		struct nl_mask *m = bpf_map_lookup_elem(&nl_masks, &i);
		struct nl_flow *f;
		__u64 *mk;

		if (!m || !m->valid)
			break;
		mk = (__u64 *)&m->mask;
		fk.mask_id = m->id;
#pragma unroll
		for (int w = 0; w < NL_KEY_WORDS; w++)
			out[w] = k[w] & mk[w];
		f = bpf_map_lookup_elem(&nl_flows, &fk);
		if (f)
			return f;
	}
	return NULL;
}

static __always_inline int lookup_and_act(struct __sk_buff *skb, struct parsed *p)
{
	struct nl_flow *f;
	__u64 now;

	p->key.in_port = p->in_port;
	p->key.tun_key = p->tun_key;
	f = lookup(p);
	if (!f)
		return upcall(skb, p, NL_UP_MISS);
	__sync_fetch_and_add(&f->packets, 1);
	__sync_fetch_and_add(&f->bytes, skb->len);
	/* The coarse clock (CLOCK_MONOTONIC at tick resolution) is enough for idle timeouts in
	 * ms and far cheaper in a VM than a clocksource read; writing only when it moved keeps
	 * the flow's cache line clean between ticks. */
	now = bpf_ktime_get_coarse_ns();
	if (f->last_used_ns != now)
		f->last_used_ns = now;
	p->cookie = f->cookie;
	return run_actions(skb, p, (struct nl_actions *)f->acts);
}

/* A packet entering from a local port (VM, uplink, internal): the edge checks, conntrack,
 * packets with IPv4 options to the agent, then the flow lookup. */
static __always_inline int local_lookup(struct __sk_buff *skb, struct parsed *p)
{
	int r = edge_check(skb, p);

	if (r != CONTINUE)
		return r;
	ct_lookup(skb, p);
	if (p->ip_options)
		return upcall(skb, p, NL_UP_OPTIONS);
	return lookup_and_act(skb, p);
}

static __always_inline void load_config(struct parsed *p)
{
	__u32 zero = 0;
	struct nl_config *cfg = bpf_map_lookup_elem(&nl_config, &zero);

	if (!cfg)
		return;
	p->trace = cfg->trace;
	p->tunnel_ifindex = cfg->tunnel_ifindex;
	p->local_ip = cfg->local_ip;
	p->underlay_ifindex = cfg->underlay_ifindex;
	p->udp_port = cfg->udp_port;
	p->underlay_mask = cfg->underlay_mask;
	p->upcall_cost_ns = cfg->upcall_cost_ns;
	p->upcall_burst = cfg->upcall_burst;
	p->tunnel_mtu = cfg->tunnel_mtu;
	p->ct_tcp_ms = cfg->ct_tcp_ms;
	p->ct_closing_ms = cfg->ct_closing_ms;
	p->ct_other_ms = cfg->ct_other_ms;
}

/* A packet from a VM (or an uplink, an internal port): parse, look up, act. */
static __always_inline int port_ingress(struct __sk_buff *skb, struct parsed *p)
{
	p->in_port = skb->ifindex;
	p->vlan_hw = skb->vlan_present;
	if (parse(skb, p) < 0)
		return TC_ACT_SHOT;
	return local_lookup(skb, p);
}

/* The entry points. The agent attaches the kind-specific ones to its VM ports and to the
 * underlay NIC: the interface's kind is known when it is attached, so those skip the nl_ports
 * lookup every packet would otherwise pay. nl_ingress finds the kind in nl_ports: it serves
 * the tunnel device and the injection veth, and BPF_PROG_TEST_RUN (any port kind by ifindex). */
SEC("tc")
int nl_port_ingress(struct __sk_buff *skb)
{
	struct parsed p = {};

	load_config(&p);
	return port_ingress(skb, &p);
}

SEC("tc")
int nl_underlay_ingress(struct __sk_buff *skb)
{
	struct parsed p = {};

	load_config(&p);
	return underlay_ingress(skb, &p);
}

SEC("tc")
int nl_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct nl_port *port = bpf_map_lookup_elem(&nl_ports, &ifindex);
	struct parsed p = {};

	if (!port)
		return TC_ACT_OK;
	load_config(&p);
	if (port->kind == NL_PORT_UNDERLAY)
		return underlay_ingress(skb, &p);
	if (port->kind != NL_PORT_INJECT && port->kind != NL_PORT_TUNNEL)
		return port_ingress(skb, &p);
	p.in_port = ifindex;
	p.vlan_hw = skb->vlan_present;
	if (parse(skb, &p) < 0)
		return TC_ACT_SHOT;

	if (port->kind == NL_PORT_INJECT) {
		__u32 mark = skb->mark, slot;
		struct nl_exec *x;

		skb->mark = 0;
		if (!(mark & NL_MARK_EXEC))
			return TC_ACT_SHOT;
		slot = mark & 0xffff;
		x = bpf_map_lookup_elem(&nl_exec, &slot);
		if (!x)
			return TC_ACT_SHOT;
		p.in_port = x->in_port;
		p.tun_key = x->tun_key;
		if (x->lookup) {
			struct nl_port *from = bpf_map_lookup_elem(&nl_ports, &p.in_port);

			if (from && (from->kind == NL_PORT_VM || from->kind == NL_PORT_UPLINK ||
				     from->kind == NL_PORT_INTERNAL))
				return local_lookup(skb, &p);
			return lookup_and_act(skb, &p);
		}
		p.cookie = x->cookie;
		return run_actions(skb, &p, (struct nl_actions *)x->acts);
	}

	/* the tunnel device (collect_md): MidoNet's rule, the sender simulated already, so the
	 * VNI names the local port */
	{
		struct bpf_tunnel_key tk = {};
		struct nl_vni_dst *dst;

		if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), 0) < 0)
			return TC_ACT_SHOT;
		p.tun_key = tk.tunnel_id & ~NL_VNI_FLAGS; /* the flags are the receiver's duties */
		dst = bpf_map_lookup_elem(&nl_vni, &p.tun_key);
		if (dst) {
			p.ct_close = !!(tk.tunnel_id & NL_VNI_CT_CLOSE);
			return output(skb, &p, dst->ifindex,
				      (tk.tunnel_id & NL_VNI_CT) ? NL_AF_CT : 0);
		}
	}
	return lookup_and_act(skb, &p);
}
