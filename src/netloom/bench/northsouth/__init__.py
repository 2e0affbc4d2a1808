"""``netloom bench northsouth``: traffic through the gateways (:mod:`.run`)."""
