"""Shared fixtures. Tiers: `unit` (no privileges), `netns`, `bpf` (root); CI runs all tiers."""
