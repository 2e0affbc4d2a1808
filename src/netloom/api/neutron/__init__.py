"""The Neutron v2.0 API: a translation layer over the native model, not a second model
(MidoNet's C3PO).

Each Neutron write is ONE plan of :meth:`netloom.api.service.ObjectService.transact`: it stores
the Neutron document (``_neutron_<resource>``, see :mod:`.docs`) and stages the native records
it becomes through the service's own staging methods, so validation, referential integrity and
unique indexes are the native ones and a crash never leaves half a translation. Native records
made this way carry an ``_owner`` document; the native API refuses to change them (409).
Reads are answered from the Neutron documents alone.
"""
