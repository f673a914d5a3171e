"""The service endpoint proxy (its own process; see :mod:`.server`)."""
