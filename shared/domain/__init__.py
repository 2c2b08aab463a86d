"""The environment domain: definitions, their hash, versions. No I/O, no Azure."""
