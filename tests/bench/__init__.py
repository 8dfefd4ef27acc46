"""Benchmarks of slixmpp-objenc beside OMEMO and OpenPGP.

``python -m tests.bench`` (or ``tox -e bench``) runs everything in one go and
writes ``bench-results/RESULTS.md``, ``results.json`` and ``throughput.png``:

1. per-stanza seal + open cost (this project's core and plugin path, the bare
   ``cryptography`` floor, OMEMO via python-omemo, OpenPGP via gpg and PGPy);
2. bytes on the wire for one and four recipient devices;
3. throughput and latency through a throwaway Prosody on loopback;
4. what first contact costs (stanzas, round trips).

Targets are reported, not asserted. Where one is missed the hot path is
profiled and the findings go into the report.

Nothing here is a pytest module: the normal test run ignores this folder.
"""
