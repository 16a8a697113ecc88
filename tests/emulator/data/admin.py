"""Builders: settings-like collections (permissions, hooks, deploy keys, branch restrictions, default reviewers, downloads...)."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

from ._util import (
    DAY,
    _enc,
    _hex,
    _link,
    _ts,
    _uuid,
)
from ._vocab import (
    _HOOK_EVENTS,
)
from .records import _Repo


class _AdminMixin:
    """Settings-like per-repository collections."""

    # ----- settings-like collections

    def _build_repo_settings(self, r: _Repo) -> None:
        rng = random.Random(f"bb-emu:{self.seed}:settings:{r.full}")
        p = r.path
        ws = r.ws
        users = r.contributors
        uperms = []
        for u, perm in zip(
            rng.sample(users, k=min(len(users), rng.randint(2, 4))),
            ["admin", "write", "read", "write"],
            strict=False,
        ):
            item = {
                "type": "repository_user_permission",
                "permission": perm,
                "user": u,
                "repository": r.ref,
                "links": {
                    "self": _link(f"{r.api}/permissions-config/users/{_enc(u['account_id'])}")
                },
            }
            uperms.append(item)
            self._objs[f"{p}/permissions-config/users/{u['account_id']}"] = item
        self._cols[f"{p}/permissions-config/users"] = uperms
        gperms = []
        for gslug, perm in [
            ("developers", "write"),
            ("administrators", "admin"),
            ("qa-team", "read"),
        ][: rng.randint(1, 3)]:
            item = {
                "type": "repository_group_permission",
                "permission": perm,
                "group": ws.groups[gslug],
                "repository": r.ref,
                "links": {"self": _link(f"{r.api}/permissions-config/groups/{gslug}")},
            }
            gperms.append(item)
            self._objs[f"{p}/permissions-config/groups/{gslug}"] = item
        self._cols[f"{p}/permissions-config/groups"] = gperms

        restrictions = []
        base_id = 17_000_000 + r.idx * 100
        kinds = [
            ("push", "glob", r.mainbranch, None),
            ("force", "glob", "*", None),
            ("delete", "glob", r.mainbranch, None),
            ("require_approvals_to_merge", "glob", r.mainbranch, 2),
            ("require_passing_builds_to_merge", "branching_model", "", 1),
            ("restrict_merges", "branching_model", "", None),
        ]
        for k, (kind, match, pattern, value) in enumerate(kinds[: rng.randint(3, 6)]):
            rid = base_id + k
            item: dict[str, Any] = {
                "type": "branchrestriction",
                "id": rid,
                "kind": kind,
                "branch_match_kind": match,
                "pattern": pattern,
                "value": value,
                "users": rng.sample(users, k=1) if kind in ("push", "restrict_merges") else [],
                "groups": [ws.groups["administrators"]] if kind == "push" else [],
                "links": {"self": _link(f"{r.api}/branch-restrictions/{rid}")},
            }
            if match == "branching_model":
                item["branch_type"] = rng.choice(["production", "development"])
            restrictions.append(item)
            self._objs[f"{p}/branch-restrictions/{rid}"] = item
        restrictions.sort(key=lambda it: -it["id"])
        self._cols[f"{p}/branch-restrictions"] = restrictions

        reviewers = rng.sample(users, k=min(len(users), rng.randint(1, 2)))
        self._cols[f"{p}/default-reviewers"] = reviewers
        for u in reviewers:
            self._objs[f"{p}/default-reviewers/{u['uuid']}"] = u

        hooks = []
        for k in range(rng.randint(0, 2)):
            hu = _uuid(rng)
            hook = {
                "type": "webhook_subscription",
                "uuid": hu,
                "url": f"https://ci.{ws.slug}.example.com/hooks/{r.info.slug}/{k}",
                "description": ["Jenkins \u2013 build trigger", "Chat notifications 💬"][k % 2],
                "subject_type": "repository",
                "subject": r.ref,
                "active": rng.random() < 0.8,
                "events": sorted(rng.sample(_HOOK_EVENTS, rng.randint(1, 4))),
                "created_at": _ts(r.created_us + rng.randint(1, 40) * DAY + rng.randrange(DAY)),
                "secret_set": rng.random() < 0.5,
                "links": {"self": _link(f"{r.api}/hooks/{_enc(hu)}")},
            }
            hooks.append(hook)
            self._objs[f"{p}/hooks/{hu}"] = hook
        self._cols[f"{p}/hooks"] = hooks

        downloads = []
        if not r.info.empty:
            for k in range(rng.randint(0, 3)):
                name = (
                    f"{r.info.slug}-1.{k}.{rng.randint(0, 9)}.tar.gz"
                    if k != 1
                    else "release notes (français).pdf"
                )
                downloads.append(
                    {
                        "type": "download",
                        "name": name,
                        "size": rng.randint(1_000, 50_000_000),
                        "downloads": rng.randint(0, 500),
                        "created_on": _ts(r.created_us + (k + 1) * 20 * DAY + rng.randrange(DAY)),
                        "user": rng.choice(users),
                        "links": {"self": _link(f"{r.api}/downloads/{quote(name)}")},
                    }
                )
            downloads.sort(key=lambda d: d["created_on"], reverse=True)
        self._cols[f"{p}/downloads"] = downloads

        keys = []
        for k in range(rng.randint(0, 2)):
            kid = 4_000_000 + r.idx * 10 + k
            created = r.created_us + (k + 2) * DAY + rng.randrange(DAY)
            item = {
                "type": "deploy_key",
                "id": kid,
                "key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{_hex(rng, 40)}",
                "label": ["ci-deploy", "backup 🗄"][k % 2],
                "comment": f"deploy@{ws.slug}-ci-{k}",
                "created_on": _ts(created),
                "added_on": _ts(created),
                "last_used": _ts(created + rng.randint(1, 100) * DAY)
                if rng.random() < 0.6
                else None,
                "owner": rng.choice(users),
                "repository": r.ref,
                "links": {"self": _link(f"{r.api}/deploy-keys/{kid}")},
            }
            keys.append(item)
            self._objs[f"{p}/deploy-keys/{kid}"] = item
        self._cols[f"{p}/deploy-keys"] = keys
