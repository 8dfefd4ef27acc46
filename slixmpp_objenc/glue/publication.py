"""Publishing our certificate on our PEP node: performs the steps
:class:`~slixmpp_objenc.core.publication.PublicationSteps` decides (publish
with options, else configure the node as its owner, check, publish, check),
keeps the outcome as :attr:`Publisher.state`, tells the application
(``objenc_publication``, plus ``objenc_published`` / ``objenc_publish_failed``)
and records it in the store so ``objenc show`` can say it offline.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form

from ..core import Identity
from ..core.constants import NS_OBJENC, qname
from ..core.devices import vouch_for
from ..core.identities import DeviceKeys
from ..core.publication import (
    PUBLICATION_SETTING,
    PUBLISH_OPTIONS,
    Answer,
    Publication,
    PublicationStatus,
    PublicationSteps,
    Step,
    publication_record,
)
from ..events import PublishFailedEvent
from ..stanza import Certificate
from .persistence import Persistence

__all__ = ["NODE_CERTS", "Publisher"]

log = logging.getLogger(__name__)

NODE_CERTS: Final = NS_OBJENC + ":certs"
"""PEP node holding our certificates: one item per certificate, id = fingerprint."""

_NS_DATA: Final = "jabber:x:data"
_FORM_TYPE_OPTIONS: Final = "http://jabber.org/protocol/pubsub#publish-options"
_FORM_TYPE_CONFIG: Final = "http://jabber.org/protocol/pubsub#node_config"
_NS_OWNER: Final = "http://jabber.org/protocol/pubsub#owner"


class Publisher:
    """Our certificate on our node: one attempt at a time, its outcome kept."""

    def __init__(
        self,
        xmpp: Any,
        persistence: Persistence,
        identity: Callable[[], Identity],
        clock: Callable[[], datetime],
        timeout: float,
        *,
        enabled: bool,
        device: Callable[[], DeviceKeys | None] = lambda: None,
    ) -> None:
        self.xmpp = xmpp
        self._persistence = persistence
        self._identity = identity
        self._device = device
        self._clock = clock
        self.timeout = timeout
        self.state = Publication(PublicationStatus.PENDING if enabled else PublicationStatus.OFF)
        self._lock = asyncio.Lock()

    async def publish(self) -> bool:
        """Run one attempt (after any running one: they never interleave);
        returns whether our certificate is published."""
        async with self._lock:
            return await self._attempt()

    async def recheck(self) -> None:
        """After a notification that our node's configuration changed: a new
        attempt if we stand published and none is running (a running one reads
        the node anyway; our own configuring notifies us too, and a failing
        state is not retried here, so a server cannot make this loop)."""
        if self.state.published and not self._lock.locked():
            await self.publish()

    async def _attempt(self) -> bool:
        identity = self._identity()
        device = self._device()
        # Our <device/> item goes through the steps (it carries what contacts pin);
        # then, on the node they checked, the RSA one for draft-only peers.
        item_id, payload = _item(identity, device)
        steps = PublicationSteps(item_id)
        self._set(steps.state)
        step = steps.step
        while step is not Step.DONE:
            answer = await self._perform(step, identity, item_id, payload, steps.submission)
            step = steps.answer(answer)
        if device is not None and steps.state.published:
            # for peers of the draft's profile only (§9): a plain publish
            answer = await self._perform(
                Step.PUBLISH, identity, identity.fingerprint, _payload(identity), {}
            )
            if answer.condition:
                log.warning("objenc: our RSA certificate was not published: %s", answer.condition)
        self._set(steps.state)
        return steps.state.published

    def _set(self, state: Publication) -> None:
        changed = state != self.state
        self.state = state
        if not changed:
            return
        self.xmpp.event("objenc_publication", state)
        if state.status is PublicationStatus.PUBLISHED:
            self.xmpp.event("objenc_published", state.fingerprint)
        elif state.status is PublicationStatus.FAILING:
            log.warning("objenc: our certificate is %s", state.meaning)
            self.xmpp.event(
                "objenc_publish_failed", PublishFailedEvent(state.condition, state.text)
            )
        if state.status is not PublicationStatus.PENDING:
            record = publication_record(state, self._clock())
            self._persistence.set_setting(PUBLICATION_SETTING, record)

    async def _perform(
        self,
        step: Step,
        identity: Identity,
        item_id: str,
        payload: ET.Element | Certificate,
        submission: dict[str, str],
    ) -> Answer:
        pubsub = self.xmpp.plugin["xep_0060"]
        try:
            if step is Step.PUBLISH_WITH_OPTIONS or step is Step.PUBLISH:
                with_options = step is Step.PUBLISH_WITH_OPTIONS
                await pubsub.publish(
                    None,
                    NODE_CERTS,
                    id=item_id,
                    payload=payload,
                    options=_form(_FORM_TYPE_OPTIONS, PUBLISH_OPTIONS) if with_options else None,
                    timeout=self.timeout,
                )
            elif step is Step.READ_CONFIGURATION:
                result = await pubsub.get_node_config(None, NODE_CERTS, timeout=self.timeout)
                return Answer.success(_configuration(result.xml))
            elif step is Step.CREATE_NODE:
                config = _form(_FORM_TYPE_CONFIG, submission)
                await pubsub.create_node(None, NODE_CERTS, config=config, timeout=self.timeout)
            elif step is Step.CONFIGURE:
                config = _form(_FORM_TYPE_CONFIG, submission)
                await pubsub.set_node_config(None, NODE_CERTS, config, timeout=self.timeout)
            elif step is Step.RETRACT:  # every item of ours: never left on an open node
                for retracted in dict.fromkeys((item_id, identity.fingerprint)):
                    await pubsub.retract(
                        None, NODE_CERTS, retracted, notify=True, timeout=self.timeout
                    )
        except IqError as exc:
            log.info("objenc: %s refused: %s", step.value, exc.iq["error"]["condition"])
            return Answer.error(exc.iq["error"]["condition"], exc.iq["error"]["text"])
        except IqTimeout:
            return Answer.error("timeout", f"no answer to {step.value} in {self.timeout:g} s")
        return Answer.success()


def _item(identity: Identity, device: DeviceKeys | None) -> tuple[str, ET.Element | Certificate]:
    """The item the publication steps publish: our device's, or the RSA one."""
    if device is None:
        return identity.fingerprint, _payload(identity)
    return device.fingerprint, device_payload(identity, device)


def _payload(identity: Identity) -> Certificate:
    payload = Certificate()
    der = identity.certificate.public_bytes(Encoding.DER)
    payload["value"] = base64.b64encode(der).decode("ascii")
    return payload


def device_payload(identity: Identity, device: DeviceKeys) -> ET.Element:
    """``<device><identity/><encryption/>[<kem/>]<vouch cert-sha256/></device>``:
    base64 DER of our certificates (the ML-KEM one when we have one), and the
    RSA identity's vouch for ours."""
    payload = ET.Element(qname(NS_OBJENC, "device"))
    certificates = [
        ("identity", device.identity_certificate),
        ("encryption", device.encryption_certificate),
    ]
    if device.kem_certificate is not None:
        certificates.append(("kem", device.kem_certificate))
    for name, certificate in certificates:
        child = ET.SubElement(payload, qname(NS_OBJENC, name))
        child.text = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")
    vouch = ET.SubElement(payload, qname(NS_OBJENC, "vouch"), {"cert-sha256": identity.fingerprint})
    vouch.text = base64.b64encode(vouch_for(identity, device.identity_certificate)).decode()
    return payload


def _form(form_type: str, values: Mapping[str, str]) -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return form


def _configuration(iq: ET.Element) -> dict[str, str] | None:
    """Our node's configuration from an answer (XEP-0060 section 8.2.1): var ->
    value (several values joined by a space, which no check accepts).

    ``None`` when the answer shows none at all. ``{}`` (which says nothing,
    so fails the checks) unless it is unambiguous: the ``pubsub#owner``
    ``<configure/>`` of our node holding exactly one form, of FORM_TYPE
    ``node_config`` (or none given), naming each field once.
    """
    configure = iq.find(f"{{{_NS_OWNER}}}pubsub/{{{_NS_OWNER}}}configure")
    if configure is None:
        return None
    forms = configure.findall(f"{{{_NS_DATA}}}x")
    if configure.get("node") != NODE_CERTS or len(forms) != 1:
        return {}
    fields: dict[str, str] = {}
    for field in forms[0].findall(f"{{{_NS_DATA}}}field"):
        var = field.get("var")
        if not var:
            continue
        if var in fields:
            return {}
        values = [v.text or "" for v in field.findall(f"{{{_NS_DATA}}}value")]
        fields[var] = " ".join(v.strip() for v in values)
    if fields.pop("FORM_TYPE", _FORM_TYPE_CONFIG) != _FORM_TYPE_CONFIG:
        return {}
    return fields
