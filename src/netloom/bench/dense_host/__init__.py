"""``netloom bench agent100``: one real bpf agent with many VMs on one host (plan, plumbing,
traffic, report)."""
