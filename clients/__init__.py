"""Client side of SHaRON: the client library and the ``sharon`` terminal client."""
