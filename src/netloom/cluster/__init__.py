"""The control plane process: REST API and topology service on one NSDB.

:mod:`~netloom.cluster.config` (options, store, API socket), :mod:`~netloom.cluster.logs`
(logfmt), :mod:`~netloom.cluster.run` (the server itself).
"""
