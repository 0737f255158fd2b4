"""Authentication: JWT issuers, JWKS, webhooks, claim bindings."""
