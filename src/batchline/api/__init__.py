"""HTTP surfaces: decode the wire, call services, encode the answer."""
