"""Builders: accounts, the authenticated user, workspaces (members, groups, projects) and repositories."""

from __future__ import annotations

import random
import uuid as _uuidlib
from urllib.parse import quote

from ._util import (
    _AVATAR,
    _DATA_END_US,
    _START_US,
    API,
    DAY,
    WEB,
    _enc,
    _hex,
    _link,
    _ts,
    _uuid,
)
from ._vocab import (
    _EXTRA_REPOS,
    _GROUPS,
    _HOOK_EVENTS,
    _PROJECTS,
    _SPECIAL_REPOS,
    _USERS,
    _WORKSPACES,
)
from .records import RepoInfo, _Repo, _Workspace


class _AccountsMixin:
    """Accounts, workspaces and repository records (``_build`` is the whole build's entry point)."""

    # ------------------------------------------------------------------ builders: accounts

    def _build(self) -> None:
        rng = self._rng
        self.users = []
        for i, (name, nick) in enumerate(_USERS):
            u = _uuid(rng)
            prefix = "557058" if i % 3 else "712020"
            aid = f"{prefix}:{_uuidlib.UUID(int=rng.getrandbits(128), version=4)}"
            initials = "".join(w[0] for w in name.split()[:2]).upper()
            self.users.append(self._account(u, aid, name, nick, initials, rng))
        self.deleted_account = {
            "display_name": "Former user",
            "links": {"avatar": _link(f"{_AVATAR}/default-avatar.png")},
            "type": "user",
            "uuid": _uuid(rng),
            "account_id": None,
            "nickname": None,
        }
        me = self.users[0]
        self.email = "alex.kim@example.com"
        enc = _enc(me["uuid"])
        self.user = {
            "display_name": me["display_name"],
            "links": {
                "self": _link(f"{API}/users/{enc}"),
                "avatar": me["links"]["avatar"],
                "repositories": _link(f"{API}/repositories/{enc}"),
                "snippets": _link(f"{API}/snippets/{enc}"),
                "html": _link(f"{WEB}/{enc}/"),
                "hooks": _link(f"{API}/workspaces/{enc}/hooks"),
            },
            "created_on": _ts(_START_US - 400 * DAY + 12_345_678),
            "type": "user",
            "uuid": me["uuid"],
            "has_2fa_enabled": None,
            "is_staff": False,
            "account_id": me["account_id"],
            "nickname": me["nickname"],
            "account_status": "active",
            "location": None,
        }
        self._objs["/user"] = self.user
        for u in self.users:
            self._objs[f"/users/{u['uuid']}"] = u

        per_ws = 4 * self.scale
        for wi, (slug, name) in enumerate(_WORKSPACES):
            ws = self._build_workspace(wi, slug, name)
            self._ws.append(ws)
            self.workspaces.append(slug)
            specials = _SPECIAL_REPOS[wi]
            for j in range(per_ws):
                if j < len(specials):
                    rslug, kind, pkey = specials[j]
                else:
                    k = j - len(specials)
                    base = _EXTRA_REPOS[k % len(_EXTRA_REPOS)]
                    rslug = (
                        base if k < len(_EXTRA_REPOS) else f"{base}-{k // len(_EXTRA_REPOS) + 1}"
                    )
                    kind = "normal"
                    keys = list(ws.projects)
                    pkey = keys[k % len(keys)]
                self._new_repo(ws, rslug, kind, pkey)
        for q in range(self.quiet_repos):
            ws = self._ws[q % len(self._ws)]
            self._new_repo(ws, f"quiet-{q + 1:04d}", "quiet", next(iter(ws.projects)))

        # Phase 1: histories (DAG + PR lifecycles) for every repository, parents first.
        for r in self._repo_list:
            self._phase1(r)
        # Cross-repository PR: fork -> parent.
        for r in self._repo_list:
            if r.kind == "fork" and r.upstream_branch:
                self._add_upstream_pr(r)
        # Phase 2: every API object (commit dicts first: PRs from the fork list fork commits).
        for r in self._repo_list:
            self._build_commit_dicts(r)
        for r in self._repo_list:
            self._phase2(r)
        for ws in self._ws:
            self._rebuild_repo_list(ws)
        self._cols["/user/workspaces"] = [
            self._workspace_access(i, ws)
            for i, ws in sorted(enumerate(self._ws), key=lambda t: t[1].slug)
        ]

    @staticmethod
    def _account(u: str, aid: str, name: str, nick: str, initials: str, rng: random.Random) -> dict:
        enc = _enc(u)
        return {
            "display_name": name,
            "links": {
                "self": _link(f"{API}/users/{enc}"),
                "avatar": _link(
                    f"{_AVATAR}/{aid.partition(':')[0]}/{_hex(rng, 8)}"
                    f"/initials/{quote(initials)}-{rng.randint(0, 5)}.png"
                ),
                "html": _link(f"{WEB}/{enc}/"),
            },
            "type": "user",
            "uuid": u,
            "account_id": aid,
            "nickname": nick,
        }

    # ------------------------------------------------------------------ builders: workspaces

    def _build_workspace(self, wi: int, slug: str, name: str) -> _Workspace:
        rng = random.Random(f"bb-emu:{self.seed}:ws:{slug}")
        ws = _Workspace()
        ws.slug, ws.name, ws.uuid = slug, name, _uuid(rng)
        ws.created_us = _START_US - (300 - 40 * wi) * DAY + rng.randrange(DAY)
        api_ws = f"{API}/workspaces/{slug}"
        avatar = _link(f"{WEB}/workspaces/{slug}/avatar/?ts={1_700_000_000 + rng.randrange(10**7)}")
        ws.obj = {
            "type": "workspace",
            "uuid": ws.uuid,
            "name": name,
            "slug": slug,
            "is_private": True,
            "is_privacy_enforced": wi == 1,
            "forking_mode": "allow_forks" if wi == 0 else "internal_only",
            "created_on": _ts(ws.created_us),
            "updated_on": _ts(ws.created_us + 90 * DAY + rng.randrange(DAY)),
            "links": {
                "avatar": avatar,
                "html": _link(f"{WEB}/{slug}/"),
                "members": _link(f"{api_ws}/members"),
                "owners": _link(f"{api_ws}/members?q=permission%3D%22owner%22"),
                "projects": _link(f"{api_ws}/projects"),
                "repositories": _link(f"{API}/repositories/{slug}"),
                "snippets": _link(f"{API}/snippets/{slug}"),
                "self": _link(api_ws),
            },
        }
        ws.ref = {
            "type": "workspace",
            "uuid": ws.uuid,
            "name": name,
            "slug": slug,
            "links": {"avatar": avatar, "html": _link(f"{WEB}/{slug}/"), "self": _link(api_ws)},
        }
        ws.team = {
            "display_name": name,
            "links": {"avatar": avatar, "html": _link(f"{WEB}/{slug}/"), "self": _link(api_ws)},
            "type": "team",
            "uuid": ws.uuid,
            "username": slug,
        }
        self._objs[f"/workspaces/{slug}"] = ws.obj

        # Members: the authenticated user, 3-4 others, one deleted account.
        others = [u for u in self.users[1:]]
        rng.shuffle(others)
        picked = [self.users[0], *others[: 3 + wi]]
        ws.members = list(picked)
        members = []
        for k, u in enumerate([*picked, self.deleted_account]):
            deleted = u is self.deleted_account
            if k == 0:
                perm = "owner" if wi == 0 else "member"
            elif deleted:
                perm = "member"
            else:
                perm = rng.choice(["member", "member", "collaborator", "owner"])
            added = ws.created_us + rng.randrange(60 * DAY)
            managed = deleted or k == 2
            members.append(
                {
                    "type": "workspace_membership",
                    "user": u,
                    "workspace": ws.ref,
                    "permission": perm,
                    "added_on": None if managed else _ts(added),
                    "last_accessed": None
                    if managed
                    else _ts(_DATA_END_US - rng.randrange(1, 60) * DAY - rng.randrange(DAY)),
                    "links": {"self": _link(f"{api_ws}/members/{_enc(u['uuid'])}")},
                }
            )
            self._objs[f"/workspaces/{slug}/members/{u['uuid']}"] = members[-1]
        self._cols[f"/workspaces/{slug}/members"] = members
        me_perm = {
            "type": "workspace_membership",
            "permission": "owner" if wi == 0 else "member",
            "user": self.users[0],
            "workspace": ws.ref,
            "links": {"self": _link(f"{API}/user/workspaces/{slug}/permission")},
        }
        self._objs[f"/user/workspaces/{slug}/permission"] = me_perm

        for gslug, gname in _GROUPS:
            ws.groups[gslug] = {
                "type": "group",
                "name": gname,
                "slug": gslug,
                "full_slug": f"{slug}:{gslug}",
                "owner": ws.team,
                "workspace": ws.ref,
                "links": {
                    "self": _link(f"{API}/groups/{slug}/{gslug}"),
                    "html": _link(f"{WEB}/{slug}/workspace/settings/groups/{gslug}"),
                },
            }

        hooks = []
        for k in range(1 + wi):
            hu = _uuid(rng)
            hook = {
                "type": "webhook_subscription",
                "uuid": hu,
                "url": f"https://hooks.{slug}.example.com/bitbucket/{k}",
                "description": ["Slack notifications 🔔", "Audit trail → SIEM"][k % 2],
                "subject_type": "workspace",
                "subject": ws.ref,
                "active": k == 0,
                "events": sorted(rng.sample(_HOOK_EVENTS, 3)),
                "created_at": _ts(ws.created_us + (k + 1) * 7 * DAY + rng.randrange(DAY)),
                "secret_set": k == 0,
                "links": {"self": _link(f"{api_ws}/hooks/{_enc(hu)}")},
            }
            hooks.append(hook)
            self._objs[f"/workspaces/{slug}/hooks/{hu}"] = hook
        self._cols[f"/workspaces/{slug}/hooks"] = hooks

        projects = []
        for k, (key, pname, desc) in enumerate(_PROJECTS[wi]):
            pu = _uuid(rng)
            created = ws.created_us + (k + 1) * 3 * DAY + rng.randrange(DAY)
            plinks = {
                "html": _link(f"{WEB}/{slug}/workspace/projects/{key}"),
                "avatar": _link(
                    f"{WEB}/{slug}/workspace/projects/{key}/avatar/32?ts={1_700_000_000 + k}"
                ),
                "self": _link(f"{api_ws}/projects/{key}"),
            }
            proj = {
                "type": "project",
                "uuid": pu,
                "key": key,
                "name": pname,
                "description": desc,
                "is_private": k != 1,
                "has_publicly_visible_repos": k == 1,
                "owner": ws.team,
                "created_on": _ts(created),
                "updated_on": _ts(created + rng.randrange(30, 200) * DAY + rng.randrange(DAY)),
                "links": plinks,
            }
            projects.append(proj)
            ws.projects[key] = proj
            ws.project_refs[key] = {
                "type": "project",
                "key": key,
                "uuid": pu,
                "name": pname,
                "links": plinks,
            }
            pbase = f"/workspaces/{slug}/projects/{key}"
            self._objs[pbase] = proj
            pref = ws.project_refs[key]
            uperms = []
            for u, perm in zip(
                picked[: 2 + k % 2], ["admin", "write", "create-repo"], strict=False
            ):
                item = {
                    "type": "project_user_permission",
                    "permission": perm,
                    "user": u,
                    "project": pref,
                    "links": {
                        "self": _link(
                            f"{API}{pbase}/permissions-config/users/{_enc(u['account_id'])}"
                        )
                    },
                }
                uperms.append(item)
                self._objs[f"{pbase}/permissions-config/users/{u['account_id']}"] = item
            self._cols[f"{pbase}/permissions-config/users"] = uperms
            gperms = []
            for gslug, perm in [("developers", "write"), ("qa-team", "read")][: 1 + k % 2]:
                item = {
                    "type": "project_group_permission",
                    "permission": perm,
                    "group": ws.groups[gslug],
                    "project": pref,
                    "links": {"self": _link(f"{API}{pbase}/permissions-config/groups/{gslug}")},
                }
                gperms.append(item)
                self._objs[f"{pbase}/permissions-config/groups/{gslug}"] = item
            self._cols[f"{pbase}/permissions-config/groups"] = gperms
            self._cols[f"{pbase}/default-reviewers"] = [
                {"type": "default_reviewer_and_type", "reviewer_type": "project", "user": u}
                for u in picked[1 : 2 + k % 2]
            ]
        self._cols[f"/workspaces/{slug}/projects"] = projects
        return ws

    def _workspace_access(self, i: int, ws: _Workspace) -> dict:
        return {
            "type": "workspace_access",
            "administrator": i == 0,
            "workspace": {
                "type": "workspace_base",
                "uuid": ws.uuid,
                "slug": ws.slug,
                "links": {"avatar": ws.ref["links"]["avatar"], "self": ws.ref["links"]["self"]},
            },
            "links": {"self": _link(f"{API}/user/workspaces/{ws.slug}/permission")},
        }

    def _rebuild_repo_list(self, ws: _Workspace) -> None:
        self._cols[f"/repositories/{ws.slug}"] = [r.obj for r in ws.repos if not r.info.deleted]

    # ------------------------------------------------------------------ builders: repositories

    def _new_repo(self, ws: _Workspace, slug: str, kind: str, pkey: str) -> None:
        full = f"{ws.slug}/{slug}"
        tmp = random.Random(f"bb-emu:{self.seed}:repouuid:{full}")
        info = RepoInfo(
            workspace=ws.slug,
            slug=slug,
            full_name=full,
            uuid=_uuid(tmp),
            empty=kind == "empty",
            pipelines_enabled=kind != "nopipelines",
            is_fork=kind == "fork",
        )
        r = _Repo(info, ws, len(self._repo_list), kind, pkey, self.seed)
        r.ref = {
            "type": "repository",
            "full_name": full,
            "name": slug,
            "uuid": info.uuid,
            "links": {
                "self": _link(r.api),
                "html": _link(r.web),
                "avatar": _link(f"https://bytebucket.org/ravatar/{_enc(info.uuid)}?ts=default"),
            },
        }
        self._repo_list.append(r)
        self._repo_by_name[full] = r
        ws.repos.append(r)
        self.repos.append(info)
