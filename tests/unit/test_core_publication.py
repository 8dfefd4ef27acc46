"""core.publication with plain values: the node checks and the steps of an attempt."""

from __future__ import annotations

from datetime import UTC

import pytest

from slixmpp_objenc.core.publication import (
    NODE_CONFIGURATION,
    NODE_MAX_ITEMS,
    PUBLISH_OPTIONS,
    Answer,
    Publication,
    PublicationStatus,
    PublicationSteps,
    Step,
    node_problems,
    publication_record,
    read_publication_record,
)

GOOD = {"pubsub#access_model": "presence", "pubsub#max_items": "16", "pubsub#persist_items": "1"}


@pytest.mark.parametrize(
    ("configuration", "problem"),
    [
        (GOOD, None),
        ({"pubsub#access_model": "presence"}, None),  # unreported counts are no problem
        ({**GOOD, "pubsub#max_items": "max"}, None),
        ({**GOOD, "pubsub#max_items": "1000"}, None),
        ({**GOOD, "pubsub#access_model": "open"}, "'open'"),
        ({**GOOD, "pubsub#access_model": "whitelist"}, "'whitelist'"),  # contacts can't read
        ({**GOOD, "pubsub#access_model": "roster"}, "'roster'"),
        ({"pubsub#max_items": "16"}, "who may read"),
        ({**GOOD, "pubsub#max_items": "1"}, "only 1 item"),
        ({**GOOD, "pubsub#max_items": "many"}, "unreadable"),
        ({**GOOD, "pubsub#persist_items": "false"}, "does not keep"),
        ({**GOOD, "pubsub#persist_items": "0"}, "does not keep"),
        ({**GOOD, "pubsub#max_items": "0"}, "only 0 item"),
        ({**GOOD, "pubsub#max_items": "-5"}, "only -5 item"),
        ({**GOOD, "pubsub#publish_model": "open"}, "'open' may publish"),
        ({**GOOD, "pubsub#publish_model": "subscribers"}, "may publish"),
        ({**GOOD, "pubsub#publish_model": "publishers"}, None),
        ({**GOOD, "pubsub#purge_offline": "1"}, "emptied"),
        ({**GOOD, "pubsub#purge_offline": "0"}, None),
        ({**GOOD, "pubsub#item_expire": "60"}, "expire"),
        ({**GOOD, "pubsub#item_expire": ""}, None),
    ],
)
def test_node_problems(configuration: dict[str, str], problem: str | None) -> None:
    problems = node_problems(configuration)
    if problem is None:
        assert problems == ()
    else:
        assert any(problem in p for p in problems), problems


def test_what_we_ask_for_passes_our_own_check() -> None:
    assert node_problems(NODE_CONFIGURATION) == ()
    assert PUBLISH_OPTIONS["pubsub#access_model"] == "presence"
    assert int(NODE_CONFIGURATION["pubsub#max_items"]) == NODE_MAX_ITEMS


def run(answers: list[tuple[Step, Answer]]) -> PublicationSteps:
    steps = PublicationSteps("ab" * 32)
    for expected, answer in answers:
        assert steps.step is expected
        steps.answer(answer)
    assert steps.step is Step.DONE
    return steps


OK = Answer.success()


def config(**values: str) -> Answer:
    return Answer.success({f"pubsub#{k}": v for k, v in values.items()})


def test_publish_options_taken() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
        ]
    )
    assert steps.state == Publication(PublicationStatus.PUBLISHED, "ab" * 32, "publish-options")


def test_publish_options_taken_and_the_configuration_unreadable_is_still_published() -> None:
    steps = run(
        [(Step.PUBLISH_WITH_OPTIONS, OK), (Step.READ_CONFIGURATION, Answer.error("forbidden"))]
    )
    assert steps.state.published


def test_new_node_created_with_our_configuration() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, Answer.error("resource-constraint")),
            (Step.READ_CONFIGURATION, Answer.error("item-not-found")),
            (Step.CREATE_NODE, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence", max_items="16")),
            (Step.PUBLISH, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence", max_items="16")),
        ]
    )
    assert steps.state.published and steps.state.way == "node-configuration"


def test_node_created_meanwhile_by_another_device_is_configured() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, Answer.error("resource-constraint")),
            (Step.READ_CONFIGURATION, Answer.error("item-not-found")),
            (Step.CREATE_NODE, Answer.error("conflict")),
            (Step.CONFIGURE, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
            (Step.PUBLISH, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
        ]
    )
    assert steps.state.published


def test_a_node_still_item_not_found_after_creation_fails() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, Answer.error("bad-request")),
            (Step.READ_CONFIGURATION, Answer.error("item-not-found")),
            (Step.CREATE_NODE, OK),
            (Step.READ_CONFIGURATION, Answer.error("item-not-found")),
        ]
    )
    assert steps.state.status is PublicationStatus.FAILING
    assert steps.state.condition == "item-not-found"


def test_an_unanswered_publish_is_checked_and_kept_on_a_good_node() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, Answer.error("timeout", "no answer")),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
        ]
    )
    assert steps.state.published and steps.state.text == ""


def test_an_unanswered_publish_that_cannot_be_checked_is_taken_back() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, Answer.error("timeout")),
            (Step.READ_CONFIGURATION, Answer.error("timeout")),
            (Step.RETRACT, OK),
        ]
    )
    assert (steps.state.status, steps.state.condition) == (
        PublicationStatus.FAILING,
        "node-configuration",
    )


def test_a_server_that_never_answers_is_said_to_maybe_hold_our_certificate() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, Answer.error("timeout")),
            (Step.READ_CONFIGURATION, Answer.error("timeout")),
            (Step.RETRACT, Answer.error("timeout")),
        ]
    )
    assert steps.state.condition == "retract-failed"
    assert "more than contacts" in steps.state.meaning


def test_options_taken_and_the_configuration_hidden_is_published_on_the_servers_word() -> None:
    steps = run([(Step.PUBLISH_WITH_OPTIONS, OK), (Step.READ_CONFIGURATION, Answer.success(None))])
    assert steps.state.published and "on its word" in steps.state.meaning


def test_a_form_that_says_nothing_after_publishing_is_taken_back() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, OK),
            (Step.READ_CONFIGURATION, Answer.success({})),  # ambiguous: glue gives {}
            (Step.RETRACT, OK),
            (Step.CONFIGURE, Answer.error("forbidden")),
        ]
    )
    assert steps.state.status is PublicationStatus.FAILING


def test_what_is_submitted_follows_what_the_node_offers() -> None:
    steps = PublicationSteps("ab" * 32)
    assert "pubsub#purge_offline" not in steps.submission  # not offered: not sent
    steps.answer(Answer.error("resource-constraint"))
    steps.answer(config(access_model="open", purge_offline="1", notify_config="0"))
    assert steps.step is Step.CONFIGURE
    submitted = steps.submission
    assert submitted["pubsub#purge_offline"] == "0"
    assert submitted["pubsub#notify_config"] == "1"
    assert submitted["pubsub#publish_model"] == "publishers"
    assert submitted["pubsub#access_model"] == "presence"


def test_options_ignored_then_configuration_fixed() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, OK),
            (Step.READ_CONFIGURATION, config(access_model="open")),
            (Step.RETRACT, OK),
            (Step.CONFIGURE, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
            (Step.PUBLISH, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
        ]
    )
    assert steps.state.published and steps.state.way == "node-configuration"


def test_a_node_found_open_after_our_checks_is_retracted_and_fails_for_good() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, Answer.error("not-acceptable")),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
            (Step.PUBLISH, OK),
            (Step.READ_CONFIGURATION, config(access_model="open")),
            (Step.RETRACT, OK),
        ]
    )
    assert steps.state.status is PublicationStatus.FAILING
    assert steps.state.condition == "node-configuration" and "'open'" in steps.state.text


def test_a_failed_retraction_still_fails() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, OK),
            (Step.READ_CONFIGURATION, config(access_model="open")),
            (Step.RETRACT, Answer.error("forbidden")),
        ]
    )
    assert steps.state.status is PublicationStatus.FAILING


def test_no_answer_is_taken_after_the_end() -> None:
    steps = run(
        [
            (Step.PUBLISH_WITH_OPTIONS, OK),
            (Step.READ_CONFIGURATION, config(access_model="presence")),
        ]
    )
    with pytest.raises(ValueError, match="no answer"):
        steps.answer(OK)


def test_record_round_trip() -> None:
    from datetime import datetime

    state = Publication(
        PublicationStatus.FAILING, "ab" * 32, "node-configuration", "forbidden", "x"
    )
    recorded = read_publication_record(
        publication_record(state, datetime(2026, 11, 30, tzinfo=UTC))
    )
    assert recorded is not None
    assert recorded[0] == state
    assert recorded[1].startswith("2026-11-30T00:00:00")
    for junk in ("not json", "[1]", '{"status": "bogus"}', "{}", None):
        assert read_publication_record(junk) is None


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (Publication(PublicationStatus.PUBLISHED, way="publish-options"), "encrypt to this"),
        (Publication(PublicationStatus.FAILING, condition="forbidden"), "in the clear"),
        (Publication(PublicationStatus.PENDING), "not published yet"),
        (Publication(PublicationStatus.OFF), "PEP is off"),
    ],
)
def test_meaning_says_what_it_means_for_contacts(state: Publication, words: str) -> None:
    assert words in state.meaning


def test_a_servers_error_text_cannot_write_on_the_users_screen() -> None:
    steps = PublicationSteps("ab" * 32)
    steps.answer(Answer.error("resource-constraint"))
    steps.answer(Answer.error("forbidden", "no\x1b[2J\x1b]0;owned\x07\nfake line\r" + "x" * 5000))
    assert steps.step is Step.DONE
    text = steps.state.text
    assert text.isprintable() and "\x1b" not in text and "\n" not in text
    assert len(text) <= 300 and text.endswith("…")
    assert text.startswith("no [2J ]0;owned fake line")
