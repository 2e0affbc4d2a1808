"""``python -m netloom.agent [OPTIONS]``: the host agent alone, the same options as
``netloom agent`` (one parser, :func:`netloom.agent.options.parse_argv`).

Why a second entry point: ``netloom`` imports every command module (API client, lab, demo,
benchmarks) before running any of them, which costs 0.5-1.5 s on a busy 2-core host. An agent
restarted after a crash must serve new flows again within 1 s, so the lab starts agents through
this module, which imports only the agent's own code.
"""

from __future__ import annotations

import sys

from netloom.agent.runner import main

if __name__ == "__main__":
    sys.exit(main())
