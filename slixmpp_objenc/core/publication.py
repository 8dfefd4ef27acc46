"""Publishing our certificate: the steps, what each answer leads to, and the
checks on the node configuration (XEP-0060 sections 7.1.5, 8.1.3 and 8.2).

Contacts find our certificate on our PEP node; if they find none, a
zero-configuration message to us goes in the clear. So publication must work
on the servers people run, and must never make the node more open than our
contacts (``presence``: the certificate names our JID and devices).

Two ways, in order:

1. **publish-options** (XEP-0060 section 7.1.5): one publish carrying the
   node configuration as preconditions. Prosody 0.12 honours all three.
   ejabberd 23.01 answers ``resource-constraint`` ("Unknown field
   'pubsub#max_items'"); others answer ``conflict`` + ``precondition-not-met``.
2. **node configuration** as the node's owner (section 8.2): read the node's
   configuration; create the node with ours if there is none (section 8.1.3),
   otherwise submit ours; read it back and check it; only then publish
   without options.

After either publish the configuration is read back once more: a node found
more open than ``presence`` has our item retracted and publication fails.
:class:`PublicationSteps` is the h11-style machine: the glue performs each
:class:`Step` and feeds back an :class:`Answer`; :attr:`PublicationSteps.state`
is the outcome (:class:`Publication`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from .certificates import MAX_CERTIFICATES_PER_JID
from .timestamps import format_timestamp

__all__ = [
    "ACCESS_MODEL",
    "NODE_CONFIGURATION",
    "PUBLICATION_SETTING",
    "PUBLISH_OPTIONS",
    "Answer",
    "Publication",
    "PublicationStatus",
    "PublicationSteps",
    "Step",
    "node_problems",
    "publication_record",
    "read_publication_record",
    "shown",
]

ACCESS_MODEL: Final = "presence"
"""Contacts with a presence subscription may read the node, no one else."""

NODE_MAX_ITEMS: Final = MAX_CERTIFICATES_PER_JID
"""One item per device: as many as a contact takes from one node (16)."""

PUBLISH_OPTIONS: Final[Mapping[str, str]] = {
    "pubsub#access_model": ACCESS_MODEL,
    "pubsub#persist_items": "true",
    "pubsub#max_items": "max",
}
"""The preconditions of the first way (``max``: XEP-0060 section 7.1.5 / 16.4.4)."""

NODE_CONFIGURATION: Final[Mapping[str, str]] = {
    "pubsub#access_model": ACCESS_MODEL,
    "pubsub#persist_items": "1",
    "pubsub#max_items": str(NODE_MAX_ITEMS),
    "pubsub#publish_model": "publishers",
}
"""What the second way submits as the node's owner (a number, not ``max``:
not every server's configuration form takes ``max``); see
:attr:`PublicationSteps.submission`."""

_FALSE: Final = frozenset({"0", "false"})


def node_problems(configuration: Mapping[str, str]) -> tuple[str, ...]:
    """Why a node with this configuration must not hold our certificate, or ``()``.

    ``configuration`` maps XEP-0060 field names (``pubsub#access_model``...)
    to their values as the server reports them (section 8.2.1). The access
    model must be exactly ``presence``: anything more open leaks our JID's
    devices to strangers, anything more closed hides the certificate from the
    contacts who need it (and then their messages go in the clear). A
    ``max_items`` below one per device means a second device replaces the
    first; unpersisted items vanish. Nor may anyone but us publish there
    (``publish_model``), nor may the items vanish (``purge_offline``,
    ``item_expire``): a password thief could leave the node so. A field the
    server does not report is not a problem (not every server reports every
    field), except the access model.
    """
    problems: list[str] = []
    model = configuration.get("pubsub#access_model")
    if model is None:
        problems.append("the server does not say who may read the node")
    elif model != ACCESS_MODEL:
        problems.append(f"the node's access model is {model!r}, not {ACCESS_MODEL!r}")
    max_items = configuration.get("pubsub#max_items", "max").strip().lower()
    if max_items != "max":
        try:
            kept = int(max_items)
        except ValueError:
            problems.append(f"the node keeps an unreadable number of items ({max_items!r})")
        else:
            if kept < NODE_MAX_ITEMS:  # 0 (XEP-0060: keep none) and below too
                problems.append(
                    f"the node keeps only {kept} item(s): another device's certificate "
                    "would replace this one"
                )
    if configuration.get("pubsub#persist_items", "true").strip().lower() in _FALSE:
        problems.append("the node does not keep its items")
    publish_model = configuration.get("pubsub#publish_model", "publishers").strip()
    if publish_model != "publishers":
        problems.append(f"{publish_model!r} may publish on the node beside our devices")
    if configuration.get("pubsub#purge_offline", "0").strip().lower() not in _FALSE:
        problems.append("the node is emptied whenever we go offline")
    if configuration.get("pubsub#item_expire", "").strip() not in ("", "0"):
        problems.append("the node's items expire")
    return tuple(problems)


class PublicationStatus(StrEnum):
    """Where our certificate stands on our PEP node."""

    PENDING = "pending"
    """Not tried yet in this session, or being published now."""
    PUBLISHED = "published"
    """On a contacts-only node: contacts find it and encrypt to us."""
    FAILING = "failing"
    """Not published: contacts find no certificate for this device, and a
    contact who does not require encryption writes to us in the clear."""
    OFF = "off"
    """PEP is turned off (``pep=False``): the application distributes certificates."""


@dataclass(frozen=True, slots=True)
class Publication:
    """``objenc_publication``: our certificate's publication state (and ``ObjEnc.publication``)."""

    status: PublicationStatus
    fingerprint: str = ""
    """Our certificate (SHA-256, lowercase hex)."""
    way: str = ""
    """``publish-options`` or ``node-configuration`` (section 7.1.5 or 8.2):
    the way that succeeded, or, when failing, the way tried last."""
    condition: str = ""
    """When failing: the server's error condition (RFC 6120 section 8.3.3),
    ``timeout``, or ``node-configuration`` (the node failed our checks)."""
    text: str = ""
    """When failing: the server's text, or the problems we found; when
    published: what could not be checked, if anything."""

    @property
    def published(self) -> bool:
        """Whether contacts can find our certificate."""
        return self.status is PublicationStatus.PUBLISHED

    @property
    def meaning(self) -> str:
        """One sentence for people: the state and what it means for contacts."""
        if self.status is PublicationStatus.PUBLISHED:
            note = f"; {self.text}" if self.text else ""
            return f"published ({self.way}): contacts find it and encrypt to this device{note}"
        if self.status is PublicationStatus.OFF:
            return "not published: PEP is off, so contacts only have what you gave them"
        if self.status is PublicationStatus.PENDING:
            return "not published yet: publishing at the next connection"
        why = f"{self.condition}: {self.text}" if self.text else self.condition
        if self.condition == "retract-failed":
            return (
                f"NOT published as it must be ({why}): it may be readable by more than "
                "contacts, and contacts who do not require encryption may write in the clear"
            )
        return (
            f"NOT published ({why}): contacts cannot encrypt to this device; unless "
            "they required encryption for you, what they send you goes in the clear "
            "(and into the server's archive); tried again at each connection"
        )


class Step(StrEnum):
    """What the glue does next, one request each."""

    PUBLISH_WITH_OPTIONS = "publish-with-options"
    READ_CONFIGURATION = "read-configuration"
    CREATE_NODE = "create-node"
    """Create the node with :data:`NODE_CONFIGURATION` (XEP-0060 section 8.1.3)."""
    CONFIGURE = "configure"
    """Submit :data:`NODE_CONFIGURATION` as the node's owner (section 8.2.4)."""
    PUBLISH = "publish"
    """Publish without options, on a node already checked."""
    RETRACT = "retract"
    """Take our item back off a node found more open than contacts."""
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Answer:
    """The server's answer to a step: success, or its error condition and text."""

    ok: bool
    condition: str = ""
    text: str = ""
    configuration: Mapping[str, str] | None = None
    """For :attr:`Step.READ_CONFIGURATION`: the fields the server reported."""

    @classmethod
    def success(cls, configuration: Mapping[str, str] | None = None) -> Answer:
        return cls(True, configuration=configuration)

    @classmethod
    def error(cls, condition: str, text: str = "") -> Answer:
        return cls(False, condition, text)


class PublicationSteps:
    """One publication attempt: ``step`` to perform, :meth:`answer` with the result.

    Starts at :attr:`Step.PUBLISH_WITH_OPTIONS`; ends at :attr:`Step.DONE`
    with :attr:`state` ``published`` or ``failing``. A node that took our
    publish-options but is then found wrong has our item retracted and gets
    the second way; a node still wrong after that fails. A publish left
    unanswered is checked like one accepted, and taken back if it cannot be.
    At most eleven requests, each step at most twice.
    """

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.step = Step.PUBLISH_WITH_OPTIONS
        self.state = Publication(PublicationStatus.PENDING, fingerprint)
        self._way = "publish-options"
        self._published: bool | None = False
        """``None``: a publish went unanswered; our item may be on the node."""
        self._configured = False
        self._unchecked = False
        """A publish went unanswered and the node could not be read: retracted, no retry."""
        self._problems = ""
        self._read: Mapping[str, str] = {}

    @property
    def submission(self) -> dict[str, str]:
        """The fields :attr:`Step.CREATE_NODE` / :attr:`Step.CONFIGURE` submit:
        :data:`NODE_CONFIGURATION`; ``purge_offline`` off and ``notify_config``
        on where the node reported them (a field not offered is not sent)."""
        fields = dict(NODE_CONFIGURATION)
        if "pubsub#purge_offline" in self._read:
            fields["pubsub#purge_offline"] = "0"
        if "pubsub#notify_config" in self._read:  # a change is then re-checked
            fields["pubsub#notify_config"] = "1"
        return fields

    def answer(self, answer: Answer) -> Step:
        """Feed the answer to :attr:`step`; returns the next step.

        Raises ``ValueError`` when the attempt is already done.
        """
        step = self.step
        if step is Step.PUBLISH_WITH_OPTIONS:
            if answer.ok or answer.condition == "timeout":
                # unanswered: the server may have stored it all the same
                self._published = True if answer.ok else None
                return self._next(Step.READ_CONFIGURATION)
            self._way = "node-configuration"  # any refusal: the second way
            return self._next(Step.READ_CONFIGURATION)
        if step is Step.READ_CONFIGURATION:
            return self._configuration_read(answer)
        if step in (Step.CREATE_NODE, Step.CONFIGURE):
            if step is Step.CREATE_NODE and answer.condition == "conflict":
                return self._next(Step.CONFIGURE)  # another device created it meanwhile
            if not answer.ok:
                return self._fail(answer.condition, answer.text)
            self._configured = True
            return self._next(Step.READ_CONFIGURATION)
        if step is Step.PUBLISH:
            if not answer.ok:
                return self._fail(answer.condition, answer.text)
            self._published = True
            return self._next(Step.READ_CONFIGURATION)
        if step is Step.RETRACT:
            self._published = False
            if not answer.ok:
                return self._fail(
                    "retract-failed", f"{self._problems}; our certificate may still be there"
                )
            if self._way == "publish-options" and not self._unchecked:
                self._way = "node-configuration"  # the options were not applied
                return self._next(Step.CONFIGURE)
            return self._fail("node-configuration", self._problems)
        raise ValueError(f"no answer is expected at {step.value}")

    def _configuration_read(self, answer: Answer) -> Step:
        checked = answer.ok and answer.configuration is not None
        if checked and answer.configuration is not None:
            self._read = answer.configuration
        if self._published is not False:
            if not checked:
                if self._published is None:  # neither known stored nor checked
                    self._unchecked = True
                    self._problems = _UNANSWERED
                    return self._next(Step.RETRACT)
                # The server accepted our preconditions (or we checked the node
                # before publishing): not showing the node now is no reason to
                # take the certificate back, which would leave contacts writing
                # in the clear. The state says it, though.
                return self._succeed(_UNCHECKED if self._way == "publish-options" else "")
            problems = node_problems(self._read)
            if not problems:
                return self._succeed()
            self._problems = "; ".join(problems)
            return self._next(Step.RETRACT)
        if not answer.ok:
            if answer.condition == "item-not-found" and not self._configured:
                return self._next(Step.CREATE_NODE)
            return self._fail(answer.condition, answer.text)
        problems = node_problems(answer.configuration or {})
        if not problems:
            return self._next(Step.PUBLISH)
        if self._configured:  # ours was submitted and the node still fails
            return self._fail("node-configuration", "; ".join(problems))
        return self._next(Step.CONFIGURE)

    def _next(self, step: Step) -> Step:
        self.step = step
        return step

    def _succeed(self, text: str = "") -> Step:
        self.state = Publication(
            PublicationStatus.PUBLISHED, self.fingerprint, self._way, text=text
        )
        return self._next(Step.DONE)

    def _fail(self, condition: str, text: str) -> Step:
        self.state = Publication(
            PublicationStatus.FAILING,
            self.fingerprint,
            self._way,
            shown(condition, 64),
            shown(text, MAX_SHOWN_TEXT),
        )
        return self._next(Step.DONE)


_UNANSWERED: Final = "the publish went unanswered and the node could not be checked"
_UNCHECKED: Final = (
    "the server took our publish-options but did not show the node's configuration: "
    "contacts-only on its word"
)


MAX_SHOWN_TEXT: Final = 300
"""Characters of a server's error text kept for people (the CLI, poezio, logs)."""


def shown(text: str, limit: int) -> str:
    """``text`` as safe to print in a terminal: control characters (escape
    sequences, newlines) become spaces, and it is cut at ``limit`` characters.
    The server writes error texts: it must not write on the user's screen."""
    clean = "".join(c if c.isprintable() else " " for c in text[: limit * 4])
    clean = " ".join(clean.split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


PUBLICATION_SETTING: Final = "publication"
"""Store setting holding the last outcome (:func:`publication_record`), so
``objenc show`` can tell it without a connection."""


def publication_record(state: Publication, at: datetime) -> str:
    """``state`` as recorded in the store (JSON), with when it was reached."""
    return json.dumps(
        {
            "status": state.status.value,
            "fingerprint": state.fingerprint,
            "way": state.way,
            "condition": state.condition,
            "text": state.text,
            "at": format_timestamp(at),
        }
    )


def read_publication_record(text: str | None) -> tuple[Publication, str] | None:
    """A recorded outcome (:func:`publication_record`) and when it was reached
    (RFC 3339 text), or ``None`` when there is none or it does not read."""
    if not text:
        return None
    try:
        record = json.loads(text)
        state = Publication(
            PublicationStatus(record["status"]),
            shown(str(record.get("fingerprint", "")), 64),
            shown(str(record.get("way", "")), 32),
            shown(str(record.get("condition", "")), 64),
            shown(str(record.get("text", "")), MAX_SHOWN_TEXT),
        )
        return state, str(record.get("at", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
