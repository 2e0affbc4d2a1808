"""netloom.packet: parse and build the headers the simulation and the agent handle.

``parse(bytes) -> Frame | ParseError`` never raises; ``build(Frame) -> bytes`` computes lengths
and checksums. DHCP bodies are parsed on demand with :func:`parse_dhcp`.
"""

from netloom.packet.checksum import checksum, l4_checksum
from netloom.packet.codec import build, ipv4_header_ok, parse
from netloom.packet.dhcp import DhcpMessage, build_dhcp, parse_dhcp
from netloom.packet.headers import (
    ARP_REPLY,
    ARP_REQUEST,
    ETH_BROADCAST,
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Arp,
    Ethernet,
    Frame,
    Icmp,
    IPv4,
    ParseError,
    Tcp,
    Udp,
    Vlan,
)
from netloom.packet.util import int_to_ip, int_to_mac, ip_to_int, mac_to_int

__all__ = [
    "ARP_REPLY",
    "ARP_REQUEST",
    "ETH_BROADCAST",
    "ETH_TYPE_ARP",
    "ETH_TYPE_IPV4",
    "IPPROTO_ICMP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "Arp",
    "DhcpMessage",
    "Ethernet",
    "Frame",
    "IPv4",
    "Icmp",
    "ParseError",
    "Tcp",
    "Udp",
    "Vlan",
    "build",
    "build_dhcp",
    "checksum",
    "int_to_ip",
    "int_to_mac",
    "ip_to_int",
    "ipv4_header_ok",
    "l4_checksum",
    "mac_to_int",
    "parse",
    "parse_dhcp",
]
