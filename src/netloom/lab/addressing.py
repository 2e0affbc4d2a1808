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
HOST_IP_BASE = 10  # host N has 192.0.2.(10 + N)
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 (RFC 7348)
TENANT_NET = ipaddress.IPv4Network("10.0.0.0/24")
TENANT_GW = "10.0.0.1"
VM_IP_BASE = 10  # VMs get 10.0.0.10, .11, ...
MAX_HOSTS = 99
# a VM's slot is one MAC byte (vm_mac) and "<lab>h99v250" still fits IFNAMSIZ: 100 VMs on
# one agent fit with room to spare
MAX_VMS_PER_HOST = 250
