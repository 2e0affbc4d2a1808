"""Fixtures of the agent tests live in :mod:`agentlab` (imported by name, like the datapath
tests' ``dpvectors``), because every test runs its own asyncio scenario with ``run``."""
