"""The one delivery rule (app.services.delivery): who receives an event, live and on replay."""

import msgspec

from app import events
from app.services import delivery
from roles.notify.window import ReplayWindow, WindowEntry

# chat -> members with a stream on this process
MEMBERS = {"c1": {"ada", "bob"}, "c2": {"bob", "cy"}, "c3": {"dee"}}
USERS = ["ada", "bob", "cy", "dee", "eve"]


def members_of(chat_id):
    return MEMBERS.get(chat_id, delivery.NOBODY)


def chats_of(user_id):
    return {chat for chat, members in MEMBERS.items() if user_id in members}


ENTRIES = {
    "message": WindowEntry(1, 0.0, events.MESSAGE_CREATED, b"m", chat_id="c1"),
    "member.left": WindowEntry(2, 0.0, events.MEMBER_LEFT, b"l", chat_id="c1", recipients=("eve",)),
    "chat.deleted": WindowEntry(3, 0.0, events.CHAT_DELETED, b"d", chat_id="c9", recipients=("cy", "dee")),
    "presence": WindowEntry(4, 0.0, events.PRESENCE, b"p", subject="bob", chat_ids=("c1", "c2")),
    "presence, no chats": WindowEntry(5, 0.0, events.PRESENCE, b"q", subject="eve", chat_ids=()),
    "unreadable": WindowEntry(6, 0.0, "", b""),
}


def test_who_receives_each_kind_of_event():
    received = {name: set(delivery.recipients(entry, members_of)) for name, entry in ENTRIES.items()}
    assert received == {
        "message": {"ada", "bob"},
        "member.left": {"ada", "bob", "eve"},  # the removed member too
        "chat.deleted": {"cy", "dee"},  # its recipients, though nobody is a member any more
        "presence": {"ada", "cy"},  # those sharing a chat with bob, not bob himself
        "presence, no chats": set(),
        "unreadable": set(),
    }


def test_one_user_view_agrees_with_the_fan_out_view():
    for entry in ENTRIES.values():
        live = delivery.recipients(entry, members_of)
        for user in USERS:
            assert delivery.is_for(entry, user, chats_of(user)) == (user in live), (entry.type, user)


def test_a_plain_chat_event_reuses_the_members_set():
    # The fan-out's common case: no set is built per event.
    assert delivery.recipients(ENTRIES["message"], members_of) is MEMBERS["c1"]


def test_membership_changes_and_when_they_apply():
    def changes(event_type, data, recipients=()):
        return delivery.membership_changes(event_type, "c1", msgspec.json.encode(data), recipients, members_of)

    assert changes(events.MEMBER_JOINED, {"user_id": "cy"}) == ((("cy", "c1", True),), True)
    assert changes(events.MEMBER_LEFT, {"user_id": "bob"}) == ((("bob", "c1", False),), False)
    assert changes(events.CHAT_CREATED, {"members": ["ada", "cy"]}) == (
        (("ada", "c1", True), ("cy", "c1", True)), True)
    # Every member this process knows leaves with the chat, even one `recipients` missed.
    assert changes(events.CHAT_DELETED, {}, recipients=("eve",)) == (
        (("ada", "c1", False), ("bob", "c1", False), ("eve", "c1", False)), False)
    assert changes(events.MESSAGE_CREATED, {"user_id": "cy"}) == ((), True)


def test_replay_applies_the_rule_with_membership_at_each_event():
    window = ReplayWindow(60, 100)
    window.start_at(0)
    window.append(WindowEntry(1, 0.0, events.MESSAGE_CREATED, b"before", chat_id="c2"))
    window.append(WindowEntry(2, 0.0, events.MEMBER_JOINED, b"joined", chat_id="c2",
                              changes=(("ada", "c2", True),), changes_first=True))
    window.append(WindowEntry(3, 0.0, events.MESSAGE_CREATED, b"member", chat_id="c2"))
    window.append(WindowEntry(4, 0.0, events.MEMBER_LEFT, b"left", chat_id="c1",
                              changes=(("ada", "c1", False),), changes_first=False))
    window.append(WindowEntry(5, 0.0, events.MESSAGE_CREATED, b"gone", chat_id="c1"))
    # ada now: in c2 (joined at 2), out of c1 (left at 4).
    assert window.replay("ada", {"c2"}, 0) == [b"joined", b"member", b"left"]
