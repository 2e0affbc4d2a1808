"""Topology plans: a topology as data (a list of documents) and the one applier that creates it
through the REST API.

    from netloom.plan import Applier, parse_documents

    applier = Applier(client, parse_documents(body))  # body: decoded JSON, see document.py
    created = applier.run()  # [(Document, record)], in creation order
    applier.ids["web"]  # the id of the object whose "ref" (or name) is "web"

``client`` is anything with the methods of :class:`PlanClient`
(:class:`netloom.api.client.ApiClient` in production). A failure removes what the run created
and re-raises the :class:`~netloom.errors.NetloomError`, naming the document.
"""

from netloom.plan.applier import Applier, Created, Progress
from netloom.plan.client import PlanClient
from netloom.plan.document import Document, creation_order, parse_documents
from netloom.plan.resolve import Resolver, infer_port_type

__all__ = [
    "Applier",
    "Created",
    "Document",
    "PlanClient",
    "Progress",
    "Resolver",
    "creation_order",
    "infer_port_type",
    "parse_documents",
]
