"""The gateway side of an agent: a routing sidecar (bird2) per uplink port with BGP peers."""
