"""Use cases: what users do with environments, written against the ports."""
