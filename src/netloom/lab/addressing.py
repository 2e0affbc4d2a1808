"""The lab's address plan and fixed ports: one home for every number the lab, the demo and the
benches must agree on. Documentation ranges only (RFC 5737) for the underlay and tunnels."""

from __future__ import annotations

import ipaddress

UNDERLAY = ipaddress.IPv4Network("192.0.2.0/24")  # RFC 5737 documentation range
# a separate tunnel network (Lab.cable_tunnel_link): RFC 5737 TEST-NET-2
TUNNEL_NET = ipaddress.IPv4Network("198.51.100.0/24")
TUNNEL_IF = "data0"
SWITCH_IP = "192.0.2.1"
API_PORT = 8181
TOPOLOGY_PORT = 8182
NEUTRON_PORT = 9696  # Neutron's own default port
CLUSTER_PORT_STEP = 10  # cluster process i of a lab listens on the ports above + 10 * i
MAX_CLUSTERS = 9
HOST_IP_BASE = 10  # host N has 192.0.2.(10 + N)
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 (RFC 7348)
TENANT_NET = ipaddress.IPv4Network("10.0.0.0/24")
TENANT_GW = "10.0.0.1"
VM_IP_BASE = 10  # VMs get 10.0.0.10, .11, ...
MAX_HOSTS = 99
# a VM's slot is one MAC byte (vm_mac) and "<lab>h99v250" still fits IFNAMSIZ: 100 VMs on
# one agent fit with room to spare
MAX_VMS_PER_HOST = 250

# -- the outside world (``lab up --gateways N``): RFC 2544 benchmark and RFC 5737 ranges --------
MAX_GATEWAYS = 32
GATEWAY_IP_BASE = 200  # gateway host G has 192.0.2.(200 + G) on the underlay
UPLINK_IF = "uplink0"  # the gateway host's NIC cabled to the upstream router (the uplink port's)
UPLINKS = ipaddress.IPv4Network("198.19.0.0/16")  # uplink G is 198.19.G.0/24 (RFC 2544)
UPLINK_PREFIXLEN = 24
UPSTREAM_HOST = 1  # the upstream router's address on every uplink: 198.19.G.1
GATEWAY_PORT_HOST = 2  # the uplink router port's address: 198.19.G.2
EXTERNAL_NET = ipaddress.IPv4Network("198.18.0.0/24")  # behind the upstream: "the internet"
EXTERNAL_GW = "198.18.0.1"  # the upstream router on the external net
EXTERNAL_HOST_IP = "198.18.0.10"  # the external host
EXTERNAL_IF = "ext0"  # the upstream's NIC on the external net (eth0 in the external host)
# the cloud's public addresses, advertised by the gateways (RFC 5737 TEST-NET-3): the SNAT
# address of tenant router K is 203.0.113.K, floating IPs start at 203.0.113.64
PUBLIC_NET = ipaddress.IPv4Network("203.0.113.0/24")
SNAT_IP_BASE = 0
FLOATING_IP_BASE = 64
MAX_EDGE_ROUTERS = 63
# interior links provider router <-> tenant router K: 198.18.128.(4K-4)/30, provider .1, tenant .2
TRANSIT_NET = ipaddress.IPv4Network("198.18.128.0/24")
TRANSIT_PREFIXLEN = 30
UPSTREAM_AS = 64512  # private AS numbers (RFC 6996)
GATEWAY_AS = 64513
BGP_HOLD_TIME = 3  # seconds (RFC 4271 §4.2: 0 or >= 3); keepalive a third of it
BGP_KEEPALIVE = 1
BFD_INTERVAL_MS = 100  # BFD (RFC 5880) min tx/rx interval on the upstream
BFD_MULTIPLIER = 5
# prefixes the upstream announces on top when a benchmark loads the gateways' tables
# (``bench northsouth``: 1000 host routes), RFC 2544 range
BENCH_ANNOUNCED = ipaddress.IPv4Network("198.18.32.0/22")
# ``bench northsouth``'s routed baseline: the upstream's cable to a plain Linux router
# (upstream .1, router .2), the uplink number no gateway takes
BENCH_ROUTED_UPLINK = ipaddress.IPv4Network("198.19.0.0/24")
