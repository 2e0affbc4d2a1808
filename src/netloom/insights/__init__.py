"""Insights: what the cluster keeps of what the agents saw (simulation log, flow history)."""
