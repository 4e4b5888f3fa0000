"""Handlers for signup, signin, token refresh, logout, users and the workspace."""

from __future__ import annotations

from app.openapi import Operation
from app.schemas.accounts import (
    AuthOut,
    MeOut,
    RefreshIn,
    SigninIn,
    SignupIn,
    UserOut,
    UsersPage,
    UsersQuery,
    WorkspaceOut,
)
from app.schemas.people import ProfileIn
from app.web import authenticated, route
from roles.api.base import ApiHandler


class SignupHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "Create an account in a new workspace, or join one with an invite code",
            body=SignupIn, responses={201: AuthOut}, auth=False, errors=(409, 429), tags=("auth",),
        )
    }

    async def post(self) -> None:
        body = self.parse_body(SignupIn)
        self.write_json(await self.services.accounts.signup(body, self.request.remote_ip), status=201)


class SigninHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "Sign in with email and password",
            body=SigninIn, responses={200: AuthOut}, auth=False, errors=(401, 429), tags=("auth",),
        )
    }

    async def post(self) -> None:
        body = self.parse_body(SigninIn)
        self.write_json(await self.services.accounts.signin(body.email, body.password, self.request.remote_ip))


class RefreshHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "Trade a refresh token for a new pair; the old one stops working",
            body=RefreshIn, responses={200: AuthOut}, auth=False, errors=(401,), tags=("auth",),
        )
    }

    async def post(self) -> None:
        body = self.parse_body(RefreshIn)
        self.write_json(await self.services.accounts.refresh(body.refresh_token))


class LogoutHandler(ApiHandler):
    api_doc = {"post": Operation("Revoke one refresh token", body=RefreshIn, responses={204: None}, tags=("auth",))}

    @authenticated
    async def post(self) -> None:
        body = self.parse_body(RefreshIn)
        await self.services.accounts.logout(self.current_user.user_id, body.refresh_token)
        self.no_content()


class LogoutAllHandler(ApiHandler):
    api_doc = {
        "post": Operation(
            "End every session of the caller: its refresh tokens, the access tokens issued until now, their streams",
            responses={204: None}, tags=("auth",),
        )
    }

    @authenticated
    async def post(self) -> None:
        await self.services.accounts.logout_all(self.current_user.user_id)
        self.no_content()


class MeHandler(ApiHandler):
    api_doc = {
        "get": Operation("The caller", responses={200: MeOut}, tags=("users",)),
        "patch": Operation(
            "Change the caller's profile (only the fields given); 409 when the username is taken",
            body=ProfileIn, responses={200: MeOut}, errors=(409, 429), tags=("users",),
        ),
    }

    @authenticated
    async def get(self) -> None:
        self.write_json(await self.services.accounts.me(self.current_user.user_id))

    @authenticated
    async def patch(self) -> None:
        body = self.parse_body(ProfileIn)
        self.write_json(await self.services.people.update_me(self.current_user, body))


class UsersHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "Users of the caller's workspace, q a username or fullname prefix; with limit or cursor a page "
            "{users, next_cursor} "
            "by name, else the array (at most 1,000, a Link header to the rest)",
            query=UsersQuery, responses={200: list[UserOut] | UsersPage}, tags=("users",),
        )
    }

    @authenticated
    async def get(self) -> None:
        query = self.parse_query(UsersQuery)
        page = await self.services.people.users(self.current_user, query)
        self.write_page(query, page, UsersPage(users=page.items, next_cursor=page.next_cursor))


class WorkspaceHandler(ApiHandler):
    api_doc = {
        "get": Operation(
            "The caller's workspace; the invite code only for its owner", responses={200: WorkspaceOut},
            tags=("users",),
        )
    }

    @authenticated
    async def get(self) -> None:
        user = self.current_user
        self.write_json(await self.services.accounts.workspace(user.workspace_id, user.user_id))


routes = [
    route("/api/signup", SignupHandler),
    route("/api/signin", SigninHandler),
    route("/api/refresh", RefreshHandler),
    route("/api/logout", LogoutHandler),
    route("/api/logout-all", LogoutAllHandler),
    route("/api/users/me", MeHandler),
    route("/api/users", UsersHandler),
    route("/api/workspace", WorkspaceHandler),
]
