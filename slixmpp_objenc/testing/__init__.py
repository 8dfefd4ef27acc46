"""Test helpers shipped with the package: throwaway Prosody and ejabberd servers, client helpers.

Import only from tests, demos and benchmarks: nothing here is needed at run time.
"""

from slixmpp_objenc.testing.clients import ServerError
from slixmpp_objenc.testing.ejabberd import (
    EjabberdInstallation,
    EjabberdServer,
    ejabberd_available,
    find_ejabberd,
)
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
from slixmpp_objenc.testing.server import XmppServer

__all__ = [
    "DEFAULT_CLIENT_PLUGINS",
    "DEFAULT_DOMAIN",
    "DEFAULT_MODULES",
    "ClientFactory",
    "EjabberdInstallation",
    "EjabberdServer",
    "ProsodyError",
    "ProsodyServer",
    "RegistrationError",
    "ServerError",
    "XmppServer",
    "disconnect_client",
    "ejabberd_available",
    "find_ejabberd",
    "find_free_port",
    "find_prosody",
    "generate_certificate",
    "prosody_available",
]
