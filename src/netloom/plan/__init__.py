"""Topology plans: a topology as data (a list of documents) and the one applier that creates it
through the REST API.

    from netloom.plan import Applier, parse_documents

    applier = Applier(client, parse_documents(body))  # body: decoded JSON, see document.py
    created = applier.run()  # [(Document, record)], in creation order
    applier.ids["web"]  # the id of the object whose "ref" (or name) is "web"
    applier.changes  # [Change]: created / updated (fields) / unchanged / linked / bound / deleted

An object that exists already (same kind, scope and name) is updated where it differs, not
created again; ``Applier(..., prune=True)`` also deletes what the plan's tenants hold and the
plan does not name; ``dry_run=True`` writes nothing and only fills ``changes``.

``client`` is anything with the methods of :class:`PlanClient`
(:class:`netloom.api.client.ApiClient` in production). A failure removes what the run created
and re-raises the :class:`~netloom.errors.NetloomError`, naming the document.
"""

from netloom.plan.applier import Applier, Created, Progress
from netloom.plan.client import PlanClient
from netloom.plan.document import Document, creation_order, parse_documents
from netloom.plan.reconcile import Change
from netloom.plan.resolve import Resolver, infer_port_type

__all__ = [
    "Applier",
    "Change",
    "Created",
    "Document",
    "PlanClient",
    "Progress",
    "Resolver",
    "creation_order",
    "infer_port_type",
    "parse_documents",
]
