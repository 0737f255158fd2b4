"""The service-account authenticator now lives in the gateway; kept for the tests' import."""

from gateway.server.authn_factory import ServiceAwareAuthenticator

__all__ = ["ServiceAwareAuthenticator"]
