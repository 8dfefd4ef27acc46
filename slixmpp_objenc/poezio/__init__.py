"""The poezio plugin: ``pip install slixmpp-objenc[poezio]``, then ``/load objenc``.

poezio finds it through the ``poezio_plugins`` entry point, which names
:mod:`slixmpp_objenc.poezio.plugin` (the only module here that imports
poezio). :mod:`slixmpp_objenc.poezio.text` holds what it shows and how it
reads its commands, without poezio.
"""
