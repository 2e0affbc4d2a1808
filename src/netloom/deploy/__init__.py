"""Running netloom on hosts: the config file, systemd readiness and units, the host packages
and the ``doctor`` checks."""
