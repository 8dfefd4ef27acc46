"""Test helpers shipped with the package (a throwaway Prosody server, client helpers).

Import only from tests, demos and benchmarks: nothing here is needed at run time.
"""

from slixmpp_objenc.testing.prosody import (
    DEFAULT_CLIENT_PLUGINS,
    DEFAULT_DOMAIN,
    DEFAULT_MODULES,
    ClientFactory,
    ProsodyError,
    ProsodyServer,
    RegistrationError,
    disconnect_client,
    find_free_port,
    find_prosody,
    generate_certificate,
    prosody_available,
)

__all__ = [
    "DEFAULT_CLIENT_PLUGINS",
    "DEFAULT_DOMAIN",
    "DEFAULT_MODULES",
    "ClientFactory",
    "ProsodyError",
    "ProsodyServer",
    "RegistrationError",
    "disconnect_client",
    "find_free_port",
    "find_prosody",
    "generate_certificate",
    "prosody_available",
]
