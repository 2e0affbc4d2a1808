"""Insights on the cluster side: what it keeps of what the agents saw: the flow history (the
analytics store of kernel flows) and its exports, the simulation log."""
