"""The demo workspace `make run` seeds: three people, a channel and a direct chat to try at once."""

from __future__ import annotations

import time

from app.auth import Identity
from app.schemas.accounts import SignupIn
from app.schemas.chats import ChatCreateIn, ChatUpdateIn
from app.schemas.messages import MessageCreateIn
from app.schemas.people import ProfileIn
from app.services import ApiServices

DEMO_PASSWORD = "fechatter-demo"
DEMO_PEOPLE = (
    ("Alice Demo", "alice@demo.fechatter.dev"),
    ("Bob Demo", "bob@demo.fechatter.dev"),
    ("Carol Demo", "carol@demo.fechatter.dev"),
)
DEMO_WORKSPACE = "Fechatter Demo"


async def seed_demo(services: ApiServices) -> list[tuple[str, str]]:
    """Idempotent: a second start finds Alice and seeds nothing. Returns (email, password) pairs."""
    credentials = [(email, DEMO_PASSWORD) for _, email in DEMO_PEOPLE]
    if await services.accounts.store.users.find_one({"email": DEMO_PEOPLE[0][1]}, {"_id": 1}):
        return credentials
    (owner_name, owner_email), *others = DEMO_PEOPLE
    owner = await services.accounts.signup(
        SignupIn(fullname=owner_name, email=owner_email, password=DEMO_PASSWORD, workspace=DEMO_WORKSPACE),
        "seed",
    )
    invite = owner.workspace.invite_code
    people = [owner]
    for fullname, email in others:
        people.append(
            await services.accounts.signup(
                SignupIn(fullname=fullname, email=email, password=DEMO_PASSWORD, invite_code=invite), "seed"
            )
        )
    alice, bob, carol = (
        Identity(user_id=p.user.id, workspace_id=p.workspace.id, expires_at=time.time() + 60) for p in people
    )
    # Something for their profile cards: a status and a time zone each (the card shows the local time there).
    profiles = (("🚀", "Shipping the demo", "Europe/London"), ("☕", "Coffee first", "America/New_York"),
                ("🌏", "Working from Tokyo", "Asia/Tokyo"))
    for who, (emoji, status, zone) in zip((alice, bob, carol), profiles):
        await services.people.update_me(who, ProfileIn(status_emoji=emoji, status_text=status, timezone=zone))
    # The workspace's #general, which Bob and Carol joined with their invites (a default channel).
    found = await services.accounts.store.chats.find_one(
        {"workspace_id": {"$eq": alice.workspace_id}, "name_key": {"$eq": "general"}}, {"_id": 1})
    general = await services.chats.update(
        alice, found["_id"], ChatUpdateIn(description="Everyone in the demo workspace",
                                          topic="Say hello, and try a second browser as Bob"))
    await services.messages.send(
        alice, general.id, MessageCreateIn(content="Welcome to Fechatter! Open a second browser as Bob to chat live.")
    )
    direct, _ = await services.chats.create(bob, ChatCreateIn(type="direct", members=[carol.user_id]))
    await services.messages.send(bob, direct.id, MessageCreateIn(content="Hi Carol, this one is just us."))
    return credentials
