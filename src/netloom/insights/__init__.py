"""Insights on the cluster side: the flow history (the analytics store of kernel flows) and
its exports."""
