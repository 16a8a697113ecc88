"""Builders: forks, wall-clock times, phase 2's entry point and the git objects (commits, branches, tags)."""

from __future__ import annotations

from urllib.parse import quote

from ._util import (
    _DATA_END_US,
    HOUR,
    MINUTE,
    SECOND,
    _content,
    _link,
    _ts,
    _ts_s,
)
from ._vocab import (
    _BODIES,
)
from .records import _C, _PR, _Repo


class _GitMixin:
    """Forks, times, and commit/branch/tag API objects."""

    def _init_fork(self, r: _Repo, parent: _Repo) -> None:
        span = parent.t_end - parent.t_start
        fork_us = parent.t_start + span * 6 // 10
        base_idx = 0
        for _tick, idx in parent.main_history:
            if parent.commits[idx].us <= fork_us:
                base_idx = idx
        inherited = [i for i in range(len(parent.commits)) if (parent.anc[base_idx] >> i) & 1]
        remap: dict[int, int] = {}
        r.mainbranch = parent.mainbranch
        for i in inherited:
            pc = parent.commits[i]
            idx = len(r.commits)
            remap[i] = idx
            c = _C(
                idx, pc.hash, [remap[p] for p in pc.parents], pc.branch, pc.author, pc.message, None
            )
            c.us, c.date_us = pc.us, pc.date_us
            a = 1 << idx
            for p in c.parents:
                a |= r.anc[p]
            r.commits.append(c)
            r.anc.append(a)
            r.by_hash[c.hash] = idx
        r.heads[r.mainbranch] = remap[base_idx]
        r.fork_base_idx = remap[base_idx]
        r.info.parent_full_name = parent.full
        r.created_us = fork_us + 10 * MINUTE
        r.t_start = r.created_us + HOUR

    def _assign_times(self, r: _Repo) -> None:
        rng = r.rng
        total = r.tick + 1
        unit = max(2 * SECOND, (r.t_end - r.t_start) // total)

        def at(tick: int) -> int:
            return r.t_start + tick * unit + rng.randrange(unit // 2)

        for c in r.commits:
            if c.tick is None:
                continue
            c.us = at(c.tick)
            c.date_us = c.us - c.us % SECOND
            if len(c.parents) == 1 and (rng.random() < 0.05 or (r.kind == "big" and c.idx == 10)):
                # Authored earlier than pushed (rebases): dates are not monotonic.
                back = max(rng.randint(2, 120) * HOUR, c.us - r.commits[c.parents[0]].us + HOUR)
                c.date_us = max(r.created_us, c.date_us - back)
                c.date_us -= c.date_us % SECOND
        for pr in r.prs.values():
            pr.created_us = at(pr.created_tick)
            if pr.merge_idx is not None:
                pr.closed_us = r.commits[pr.merge_idx].us
            elif pr.closed_tick is not None:
                pr.closed_us = at(pr.closed_tick)
        r.pushed_us = max(c.us for c in r.commits)

    def _add_upstream_pr(self, fork: _Repo) -> None:
        parent = self._repo_by_name[fork.info.parent_full_name or ""]
        rng = fork.rng
        b = fork.upstream_branch or ""
        pr = _PR(len(parent.prs) + 1)
        pr.title = "Upstream fix from the fork 🍴"
        pr.description = "Contributed from " + fork.full + ".\n\nKeeps the fork in sync."
        pr.author = fork.contributors[1 % len(fork.contributors)]
        pr.src_repo = fork
        pr.src_branch = b
        pr.dst_branch = parent.mainbranch
        pr.src_idx = fork.heads[b]
        pr.dst_idx = parent.heads[parent.mainbranch]
        last_created = max(p.created_us for p in parent.prs.values())
        pr.created_us = (
            max(last_created, fork.commits[pr.src_idx].us) + 45 * MINUTE + rng.randrange(HOUR)
        )
        pr.created_us = min(pr.created_us, _DATA_END_US - 12 * HOUR)
        pr.reviewers = [u for u in parent.contributors[:2] if u is not pr.author]
        parent.prs[pr.id] = pr

    # ----- phase 2: API objects

    def _phase2(self, r: _Repo) -> None:
        rng = r.rng
        ws = r.ws
        p = r.path
        if not r.info.empty:
            self._cols[f"{p}/commits"] = [r.cdicts[i] for i in range(len(r.cdicts) - 1, -1, -1)]
            self._build_branches(r)
            self._build_tags(r)
        self._build_prs(r)
        if not r.info.empty:
            self._build_statuses(r)
        if r.info.pipelines_enabled:
            self._build_pipelines(r)
        self._build_repo_settings(r)

        # The repository object itself.
        lang = r.language
        obj = {
            "type": "repository",
            "full_name": r.full,
            "links": {
                "self": _link(r.api),
                "html": _link(r.web),
                "avatar": r.ref["links"]["avatar"],
                "pullrequests": _link(f"{r.api}/pullrequests"),
                "commits": _link(f"{r.api}/commits"),
                "forks": _link(f"{r.api}/forks"),
                "watchers": _link(f"{r.api}/watchers"),
                "branches": _link(f"{r.api}/refs/branches"),
                "tags": _link(f"{r.api}/refs/tags"),
                "downloads": _link(f"{r.api}/downloads"),
                "source": _link(f"{r.api}/src"),
                "clone": [
                    {
                        "name": "https",
                        "href": f"https://{self.users[0]['nickname']}@bitbucket.org/{r.full}.git",
                    },
                    {"name": "ssh", "href": f"git@bitbucket.org:{r.full}.git"},
                ],
                "hooks": _link(f"{r.api}/hooks"),
            },
            "name": r.info.slug,
            "slug": r.info.slug,
            "description": "" if r.info.empty else f"{r.info.slug} — {rng.choice(_BODIES)}",
            "scm": "git",
            "website": None
            if rng.random() < 0.6
            else f"https://{r.info.slug}.{ws.slug}.example.com",
            "owner": ws.team,
            "workspace": ws.ref,
            "is_private": True,
            "project": ws.project_refs[r.project_key],
            "fork_policy": "allow_forks"
            if r.kind in ("big", "fork")
            else rng.choice(["no_public_forks", "no_forks"]),
            "created_on": _ts(r.created_us),
            "updated_on": _ts(r.pushed_us),
            "size": 0 if r.info.empty else rng.randint(80_000, 60_000_000),
            "language": "" if r.info.empty else lang,
            "uuid": r.info.uuid,
            "mainbranch": None if r.info.empty else {"name": r.mainbranch, "type": "branch"},
            "has_issues": False,
            "has_wiki": False,
        }
        if r.kind == "fork":
            parent = self._repo_by_name[r.info.parent_full_name or ""]
            obj["parent"] = parent.ref
        r.obj = obj
        self._objs[p] = obj

    def _author_obj(self, r: _Repo, user: dict | None, nick_fallback: str = "build-bot") -> dict:
        key = user["uuid"] if user else nick_fallback
        a = r.author_cache.get(key)
        if a is None:
            if user is None:
                a = {"type": "author", "raw": f"{nick_fallback} <{nick_fallback}@example.invalid>"}
            else:
                a = {
                    "type": "author",
                    "raw": f"{user['display_name']} <{user['nickname']}@example.com>",
                    "user": user,
                }
            r.author_cache[key] = a
        return a

    def _commit_dict(self, r: _Repo, c: _C) -> dict:
        h = c.hash
        capi = f"{r.api}/commit/{h}"
        return {
            "type": "commit",
            "hash": h,
            "date": _ts_s(c.date_us),
            "author": self._author_obj(r, c.author),
            "message": c.message,
            "summary": _content(c.message),
            "links": {
                "self": _link(capi),
                "html": _link(f"{r.web}/commits/{h}"),
                "diff": _link(f"{r.api}/diff/{h}"),
                "approve": _link(f"{capi}/approve"),
                "comments": _link(f"{capi}/comments"),
                "statuses": _link(f"{capi}/statuses"),
                "patch": _link(f"{r.api}/patch/{h}"),
            },
            "parents": [self._parent_ref(r, r.commits[q].hash) for q in c.parents],
            "repository": r.ref,
        }

    @staticmethod
    def _parent_ref(r: _Repo, h: str) -> dict:
        return {
            "hash": h,
            "type": "commit",
            "links": {"self": _link(f"{r.api}/commit/{h}"), "html": _link(f"{r.web}/commits/{h}")},
        }

    @staticmethod
    def _ref12(r: _Repo, h: str) -> dict:
        a = h[:12]
        return {
            "hash": a,
            "type": "commit",
            "links": {"self": _link(f"{r.api}/commit/{a}"), "html": _link(f"{r.web}/commits/{a}")},
        }

    def _build_commit_dicts(self, r: _Repo) -> None:
        r.cdicts = []
        for c in r.commits:
            d = self._commit_dict(r, c)
            r.cdicts.append(d)
            self._objs[f"{r.path}/commit/{c.hash}"] = d

    def _branch_dict(self, r: _Repo, name: str, idx: int) -> dict:
        enc = quote(name, safe="/")
        return {
            "name": name,
            "target": r.cdicts[idx],
            "links": {
                "self": _link(f"{r.api}/refs/branches/{enc}"),
                "commits": _link(f"{r.api}/commits/{enc}"),
                "html": _link(f"{r.web}/branch/{enc}"),
            },
            "type": "branch",
            "merge_strategies": [
                "merge_commit",
                "squash",
                "fast_forward",
                "squash_fast_forward",
                "rebase_fast_forward",
                "rebase_merge",
            ],
            "default_merge_strategy": "merge_commit" if r.rng.random() < 0.8 else "squash",
        }

    def _build_branches(self, r: _Repo) -> None:
        out = []
        for name in sorted(r.heads):
            b = self._branch_dict(r, name, r.heads[name])
            out.append(b)
            self._objs[f"{r.path}/refs/branches/{name}"] = b
        self._cols[f"{r.path}/refs/branches"] = out

    def _build_tags(self, r: _Repo) -> None:
        rng = r.rng
        main_commits = [c for c in r.commits if c.branch == r.mainbranch and c.tick is not None]
        step = max(6, len(main_commits) // 8)
        tags = []
        for k, c in enumerate(main_commits[step::step]):
            name = f"v{1 if r.kind != 'fork' else 9}.{k}.{rng.randint(0, 3)}"
            enc = quote(name, safe="")
            annotated = rng.random() < 0.6
            t = {
                "name": name,
                "target": r.cdicts[c.idx],
                "message": f"Release {name} 🎉\n" if annotated else None,
                "date": _ts_s(c.us + rng.randint(1, 50) * MINUTE) if annotated else None,
                "tagger": self._author_obj(r, c.author) if annotated else None,
                "links": {
                    "self": _link(f"{r.api}/refs/tags/{enc}"),
                    "commits": _link(f"{r.api}/commits/{enc}"),
                    "html": _link(f"{r.web}/commits/tag/{enc}"),
                },
                "type": "tag",
            }
            tags.append(t)
        tags.sort(key=lambda t: t["name"])
        for t in tags:
            self._objs[f"{r.path}/refs/tags/{t['name']}"] = t
        self._cols[f"{r.path}/refs/tags"] = tags
