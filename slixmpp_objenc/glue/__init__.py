"""The slixmpp side, one concern a module, behind :class:`~slixmpp_objenc.plugin.ObjEnc`.

- :mod:`.outbound`: the ``out``/``out_sce`` filters execute the core's send plan.
- :mod:`.inbound`: the ``in`` filter executes the core's receive verdict.
- :mod:`.directory`: PEP publication and discovery; the key ring as the send decision reads it.
- :mod:`.verification`: the 6-character exchange.
- :mod:`.persistence`: loading the account, the sending clock, writing behind.
- :mod:`.common`: helpers they share.

They decide nothing the core can: every rule lives in :mod:`slixmpp_objenc.core`.
"""
