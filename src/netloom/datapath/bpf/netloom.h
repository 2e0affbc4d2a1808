/* netloom datapath: structures shared by the BPF program and the Python loader.
 *
 * The Python side (netloom.datapath.bpf.abi) packs exactly these layouts with `struct`;
 * NL_ABI_VERSION is stored in the config map so that a process adopting pinned maps refuses a
 * layout it does not understand instead of misreading it.
 */
#ifndef NETLOOM_H
#define NETLOOM_H

#include <linux/types.h>

#define NL_ABI_VERSION 5
#define NL_MAX_MASKS 32
#define NL_MAX_ACTIONS 8
#define NL_EXEC_SLOTS 64

/* Flow key: every field host byte order, MACs as 48-bit integers (see flows/model.py).
 * Viewed as 6 u64 words for masking; padding must stay zero. */
struct nl_key {
	__u64 eth_src;
	__u64 eth_dst;
	__u32 in_port;
	__u32 tun_key;
	__u32 ip_src;
	__u32 ip_dst;
	__u16 eth_type;
	__u16 vlan;
	__u16 tp_src;
	__u16 tp_dst;
	__u8 ip_proto;
	__u8 ip_frag;
	__u8 ct_state; /* NL_CT_* from the conntrack lookup; 0 = not tracked */
	__u8 pad[5];
};
#define NL_KEY_WORDS 6

/* Hash key of the flow table: tuple-space search = one (mask id, masked key) entry per flow. */
struct nl_flow_key {
	__u32 mask_id;
	__u32 pad;
	struct nl_key key;
};

/* Masks in use, in priority order (most specific first); an entry with valid == 0 ends the list. */
struct nl_mask {
	__u32 id;
	__u32 valid;
	struct nl_key mask;
};

enum nl_action_type {
	NL_A_NONE = 0,
	NL_A_SET_ETH_SRC = 1,
	NL_A_SET_ETH_DST = 2,
	NL_A_SET_IP_SRC = 3,
	NL_A_SET_IP_DST = 4,
	NL_A_SET_TP_SRC = 5,
	NL_A_SET_TP_DST = 6,
	NL_A_DEC_TTL = 7,
	NL_A_PUSH_VLAN = 8,
	NL_A_POP_VLAN = 9,
	NL_A_OUTPUT = 10,  /* arg = port (ifindex) */
	NL_A_TUNNEL = 11,  /* arg = vni, arg64 = remote IPv4 (host order) */
	NL_A_DROP = 12,
	NL_A_USERSPACE = 13,
	NL_A_CT_COMMIT = 14, /* commit the packet's tuple as it arrived, at its in_port */
};

/* flags of an action */
#define NL_AF_CLONE 1 /* an output that is not the last one: clone the packet */
#define NL_AF_CT 2    /* output/tunnel: the receiver commits the reversed delivered tuple */

/* ct_state bits of the flow key (flows/model.py CT_*) */
#define NL_CT_NEW 1
#define NL_CT_EST 2
#define NL_CT_RPL 4

/* Spare VNI bits (tunnel keys use 20 bits): the receiver's conntrack duties. */
#define NL_VNI_CT (1u << 23)       /* commit the reversed tuple at the destination port */
#define NL_VNI_CT_CLOSE (1u << 22) /* a TCP FIN/RST: shorten that entry */
#define NL_VNI_FLAGS (NL_VNI_CT | NL_VNI_CT_CLOSE)

/* Conntrack: zone = the local port the connection is seen at; ICMP and non-TCP/UDP use
 * ports 0/0. */
struct nl_ct_key {
	__u32 zone;
	__u32 src;
	__u32 dst;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

#define NL_CTF_REPLY 1   /* the entry is the reply direction */
#define NL_CTF_CLOSING 2 /* a TCP FIN/RST was seen: closing lifetime, never extended */

struct nl_ct_entry {
	__u64 expires_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 refreshed_ns;
	__u32 flags;
	__u32 pad;
};

struct nl_action {
	__u16 type;
	__u16 flags;
	__u32 arg;
	__u64 arg64;
};

struct nl_flow {
	struct nl_action acts[NL_MAX_ACTIONS];
	__u64 cookie;
	__u64 created_ns;
	__u32 idle_ms;
	__u32 hard_ms;
	__u64 packets;
	__u64 bytes;
	__u64 last_used_ns;
};

enum nl_port_kind {
	NL_PORT_VM = 1,
	NL_PORT_TUNNEL = 2,
	NL_PORT_UPLINK = 3,
	NL_PORT_INTERNAL = 4,
	NL_PORT_INJECT = 5, /* the agent's re-injection veth: in_port comes from skb->mark */
	NL_PORT_UNDERLAY = 6, /* the host's underlay NIC: VXLAN to local ports is decapsulated here */
};

struct nl_port {
	__u32 kind;
	__u32 mtu; /* L3 MTU of the egress direction; 0 = unchecked */
};

struct nl_config {
	__u32 abi;
	__u32 tunnel_ifindex;
	__u32 local_ip; /* host order */
	__u32 trace;    /* non-zero: record the last verdict in nl_verdict (tests) */
	__u32 underlay_ifindex; /* non-zero: VXLAN encap/decap in BPF on this device (fast path) */
	__u32 udp_port;         /* VXLAN UDP port, host order */
	__u32 underlay_mask;    /* netmask of the underlay's subnet (on-link remotes skip the FIB) */
	__u32 upcall_cost_ns;   /* per-port upcall budget: ns of credit one upcall costs (1e9/rate); 0 = unlimited */
	__u32 upcall_burst;     /* upcalls a port may send back to back */
	__u32 tunnel_mtu;       /* L3 MTU of tunnelled packets (the VXLAN port's); 0 = unchecked */
	__u32 ct_tcp_ms;        /* conntrack lifetimes: TCP established */
	__u32 ct_closing_ms;    /* TCP after FIN/RST */
	__u32 ct_other_ms;      /* anything else */
	__u32 pad;
};
/* Value of nl_vni: where a VNI's packets go, and what kind of port that is (decap delivers
 * straight into a VM with bpf_redirect_peer, which only a VM's veth allows). */
struct nl_vni_dst {
	__u32 ifindex;
	__u32 kind;
};

/* Per-port upcall token bucket, in nanoseconds of credit (see upcall_admit). */
struct nl_bucket {
	__u64 credit_ns;
	__u64 stamp_ns;
};

/* Per-CPU counters of what the program did with upcalls the agent never saw. */
struct nl_stats {
	__u64 upcalls_throttled; /* over the port's budget: dropped in the kernel */
	__u64 upcalls_lost;      /* the ring buffer was full */
	__u64 ct_commits;        /* conntrack entries created */
	__u64 ct_lost;           /* TCP without SYN found no entry (evicted or expired) */
	__u64 ip_header_errors;  /* IPv4 headers a router must not forward (RFC 1812 5.2.2) */
	__u64 tagged_dropped;    /* 802.1Q / 802.1ad tagged frames from a local port */
};

struct nl_verdict {
	__u32 action; /* NL_A_OUTPUT / NL_A_TUNNEL / NL_A_DROP / NL_A_USERSPACE */
	__u32 ifindex;
	__u32 vni;
	__u32 remote;
	__u64 count;
};

enum nl_upcall_reason {
	NL_UP_MISS = 1,
	NL_UP_TTL = 2,
	NL_UP_MTU = 3,
	NL_UP_USERSPACE = 4,
	NL_UP_OPTIONS = 5, /* IPv4 options: never decided by a flow (see edge_check) */
};

struct nl_upcall {
	__u32 in_port;
	__u32 reason;
	__u32 tun_key;
	__u32 pkt_len;
	__u32 cap_len;
	__u32 ct_state; /* the key's ct_state (NL_CT_*) */
	__u64 cookie;
};

/* skb->mark of packets written on the injection veth */
#define NL_MARK_REINJECT 0x40000000u /* low 24 bits: original in_port */
#define NL_MARK_EXEC 0x80000000u     /* low 16 bits: slot in nl_exec */
#define NL_MARK_LOW24 0x00ffffffu

#endif
