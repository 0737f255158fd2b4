"""Data protection (issue 10): payload encryption at rest, retention by TTL, purge.

Everything here works on broker-side topic names (after any tenancy mount): that is
the name the broker stores, so it is the name a ciphertext is bound to.
"""
