"""``Dataset.mutate()``: one deterministic batch of copy-on-write changes, and its helpers."""

from __future__ import annotations

import random
from typing import Any

from ._util import (
    MINUTE,
    SECOND,
    _dt,
    _link,
    _to_us,
    _ts,
    _uuid,
    parse_timestamp,
)
from ._vocab import (
    _COMMENTS,
    _FILES,
    _THINGS,
    _VERBS,
)
from .records import _PR, MutationSummary, _Pipeline, _Repo


class _MutationsMixin:
    """Deterministic mutations (see ``MutationSummary``)."""

    # ------------------------------------------------------------------ mutation

    def mutate(self) -> MutationSummary:
        """Apply one deterministic batch of changes (see ``MutationSummary``)."""
        with self.lock:
            self._mutations += 1
            m = self._mutations
            rng = random.Random(f"bb-emu:{self.seed}:{self.scale}:mutation:{m}")
            prev = self._clock_us
            new_clock = prev + 5 * MINUTE
            cursor = [prev + SECOND]

            def now() -> int:
                cursor[0] += rng.randint(SECOND, 3 * SECOND) + rng.randrange(SECOND)
                return cursor[0]

            changed: dict[str, list[str]] = {
                k: []
                for k in (
                    "repositories",
                    "projects",
                    "pullrequests",
                    "pullrequest_comments",
                    "pullrequest_activity",
                    "commits",
                    "branches",
                    "branches_deleted",
                    "pipelines",
                    "pipeline_steps",
                    "collections",
                )
            }

            def mark(kind: str, path: str) -> None:
                if path not in changed[kind]:
                    changed[kind].append(path)

            live = [r for r in self._repo_list if not r.info.deleted and not r.info.empty and r.prs]
            touched_prs: dict[str, set[int]] = {}
            if live:
                chosen = rng.sample(live, k=min(3, len(live)))
                merged_once: set[str] = set()
                for r in chosen:
                    ids = sorted(r.prs)
                    open_ids = [i for i in ids if r.prs[i].state == "OPEN"]
                    pool = open_ids if len(open_ids) >= 2 else ids
                    for pid in rng.sample(pool, k=min(rng.randint(2, 3), len(pool))):
                        pr = r.prs[pid]
                        x = rng.random()
                        same_repo = pr.src_repo is r
                        if (
                            pr.state == "OPEN"
                            and same_repo
                            and r.full not in merged_once
                            and x < 0.3
                            and pr.src_branch in r.heads
                        ):
                            merged_once.add(r.full)
                            self._mut_merge(r, pr, now, rng, mark)
                        elif x < 0.55 and pr.reviewers:
                            u = rng.choice(pr.reviewers)
                            us = now()
                            kind = "approval" if rng.random() < 0.75 else "changes_requested"
                            pr.votes.append((us, kind, u))
                            self._add_activity(
                                r,
                                pr,
                                us,
                                {
                                    kind: {"date": _ts(us), "user": u, "pullrequest": pr.ref},
                                    "pull_request": pr.ref,
                                },
                            )
                            pr.updated_us = us
                        else:
                            for _ in range(rng.randint(1, 2)):
                                self._mut_comment(r, pr, now, rng, mark)
                        touched_prs.setdefault(r.full, set()).add(pid)
                # A new PR on a new branch.
                r = chosen[0]
                pr = self._mut_new_pr(r, m, now, rng, mark)
                touched_prs.setdefault(r.full, set()).add(pr.id)
                # New commits on top of a long-lived branch.
                r = chosen[-1]
                branch = r.develop if (r.develop and rng.random() < 0.4) else r.mainbranch
                for _ in range(rng.randint(1, 3)):
                    self._mut_commit(
                        r,
                        branch,
                        [r.heads[branch]],
                        self._pick_author(r) or r.contributors[0],
                        self._message(rng),
                        now(),
                        mark,
                    )
                self._mut_refresh_branch(r, branch, mark)
                self._mut_touch_repo(r, mark)
                # Refresh PR objects, their collections and the repository-level lists.
                for full, pids in touched_prs.items():
                    rr = self._repo_by_name[full]
                    for pid in sorted(pids):
                        self._mut_publish_pr(rr, rr.prs[pid], mark)
                    self._refresh_pr_collections(rr)
                    mark("collections", f"{rr.path}/pullrequests")
                    mark("collections", f"{rr.path}/pullrequests/activity")

            # Pipelines: a new running one, and completion of an older running one.
            enabled = [
                r
                for r in self._repo_list
                if not r.info.deleted and not r.info.empty and r.info.pipelines_enabled
            ]
            if enabled:
                r = rng.choice(enabled)
                running = [
                    (rr, pl) for rr in enabled for pl in rr.pipelines if pl.state == "IN_PROGRESS"
                ]
                pl = _Pipeline()
                pl.uuid = _uuid(rng)
                pl.build = len(r.pipelines) + 1
                pl.commit_idx = r.heads[r.mainbranch]
                pl.ref_name = r.mainbranch
                pl.created_us = now()
                pl.nanos = rng.randrange(1000) if rng.random() < 0.5 else None
                pl.trigger = "PUSH"
                pl.creator = rng.choice(r.contributors)
                pl.steps = self._new_steps(r, rng, rng.randint(2, 3))
                pl.state = "IN_PROGRESS"
                pl.result = None
                pl.steps[0]["state"] = "IN_PROGRESS"
                pl.steps[0]["started_us"] = now()
                r.pipelines.append(pl)
                self._mut_publish_pipeline(r, pl, mark)
                if running:
                    rr, old = running[0]
                    old.state, old.result = "COMPLETED", "SUCCESSFUL"
                    for s in old.steps:
                        if s["state"] == "IN_PROGRESS" and s["started_us"] is None:
                            s["started_us"] = now()
                    t = now()
                    for s in old.steps:
                        if s["completed_us"] is None:
                            if s["started_us"] is None:
                                s["started_us"] = t
                            t = max(t, s["started_us"]) + rng.randint(1, 5) * SECOND
                            s["completed_us"] = t
                            s["state"], s["result"] = "COMPLETED", "SUCCESSFUL"
                    old.completed_us = t + SECOND
                    cursor[0] = max(cursor[0], old.completed_us)
                    self._mut_publish_pipeline(rr, old, mark)

            # A project update.
            projects = [(ws, key) for ws in self._ws for key in ws.projects]
            if projects:
                ws, key = projects[rng.randrange(len(projects))]
                old = ws.projects[key]
                base = (old["description"] or "").split(" — révision ")[0]
                proj = dict(old)
                proj["description"] = f"{base} — révision {m}"
                proj["updated_on"] = _ts(now())
                ws.projects[key] = proj
                path = f"/workspaces/{ws.slug}/projects/{key}"
                self._objs[path] = proj
                self._cols[f"/workspaces/{ws.slug}/projects"] = list(ws.projects.values())
                mark("projects", path)
                mark("collections", f"/workspaces/{ws.slug}/projects")

            if cursor[0] >= new_clock:  # pragma: no cover - guarded by the small batch size
                raise RuntimeError("mutation batch overflowed the clock step")
            self._clock_us = new_clock
            return MutationSummary(
                changed={k: v for k, v in changed.items()},
                clock=_dt(new_clock),
                previous_clock=_dt(prev),
                number=m,
            )

    # ----- mutation helpers

    def _mut_commit(
        self,
        r: _Repo,
        branch: str,
        parents: list[int],
        author: dict,
        message: str,
        us: int,
        mark: Any,
    ) -> int:
        idx = self._commit(r, branch, parents, author, message, None)
        c = r.commits[idx]
        c.us = us
        c.date_us = us - us % SECOND  # still > previous clock: now() starts 1 s after it
        d = self._commit_dict(r, c)
        r.cdicts.append(d)
        path = f"{r.path}/commit/{c.hash}"
        self._objs[path] = d
        self._cols[f"{r.path}/commits"] = [d, *self._cols[f"{r.path}/commits"]]
        r.pushed_us = max(r.pushed_us, us)
        mark("commits", path)
        mark("collections", f"{r.path}/commits")
        return idx

    def _mut_refresh_branch(self, r: _Repo, name: str, mark: Any) -> None:
        path = f"{r.path}/refs/branches/{name}"
        if name in r.heads:
            b = self._branch_dict(r, name, r.heads[name])
            b["default_merge_strategy"] = (self._objs.get(path) or b)["default_merge_strategy"]
            self._objs[path] = b
            mark("branches", path)
        else:
            self._objs.pop(path, None)
            mark("branches_deleted", path)
        self._cols[f"{r.path}/refs/branches"] = [
            self._objs[f"{r.path}/refs/branches/{n}"] for n in sorted(r.heads)
        ]
        mark("collections", f"{r.path}/refs/branches")

    def _mut_touch_repo(self, r: _Repo, mark: Any) -> None:
        obj = dict(r.obj)
        obj["updated_on"] = _ts(r.pushed_us)
        r.obj = obj
        self._objs[r.path] = obj
        self._rebuild_repo_list(r.ws)
        mark("repositories", r.path)
        mark("collections", f"/repositories/{r.ws.slug}")

    def _mut_comment(self, r: _Repo, pr: _PR, now: Any, rng: random.Random, mark: Any) -> None:
        us = now()
        r.comment_seq += 1
        cid = 200_000_000 + r.idx * 100_000 + r.comment_seq
        parent = None
        live = [c for c in pr.comments if not c["deleted"]]
        if live and rng.random() < 0.4:
            parent = rng.choice(live)
        inline = parent.get("inline") if parent else None
        if parent is None and rng.random() < 0.3:
            inline = {
                "from": None,
                "to": rng.randint(1, 300),
                "path": rng.choice(_FILES[r.language]),
            }
        user = rng.choice(
            [u for u in [*pr.reviewers, pr.author] if u is not None] or r.contributors
        )
        d = self._comment_dict(
            r,
            pr,
            cid,
            us,
            us + rng.randint(100, 5000),
            user,
            rng.choice(_COMMENTS),
            False,
            inline,
            parent,
            None,
        )
        pr.comments.append(d)
        pr.comment_us[cid] = us
        self._add_activity(r, pr, us, {"comment": d, "pull_request": pr.ref})
        pr.updated_us = max(pr.updated_us, _to_us(parse_timestamp(d["updated_on"])))
        path = f"{r.path}/pullrequests/{pr.id}/comments/{cid}"
        self._objs[path] = d
        mark("pullrequest_comments", path)

    def _mut_merge(self, r: _Repo, pr: _PR, now: Any, rng: random.Random, mark: Any) -> None:
        closer = rng.choice(pr.reviewers or r.contributors)
        dst_before = r.heads[pr.dst_branch]
        src = r.heads[pr.src_branch]
        us = now()
        m = self._mut_commit(
            r,
            pr.dst_branch,
            [dst_before, src],
            closer,
            f"Merged in {pr.src_branch} (pull request #{pr.id})\n\n{pr.title}",
            us,
            mark,
        )
        pr.state = "MERGED"
        pr.merge_idx, pr.dst_idx, pr.src_idx = m, dst_before, src
        pr.closed_us = us
        pr.closed_by = closer
        pr.draft = False
        pr.queued = False
        pr.updated_us = us
        self._add_activity(r, pr, us, self._act_update(r, pr, "MERGED", us, closer, ""))
        self._mut_refresh_branch(r, pr.dst_branch, mark)
        if pr.close_source_branch:
            del r.heads[pr.src_branch]
            self._mut_refresh_branch(r, pr.src_branch, mark)
        self._mut_touch_repo(r, mark)

    def _mut_new_pr(self, r: _Repo, m: int, now: Any, rng: random.Random, mark: Any) -> _PR:
        name = f"feature/live-change-{m}"
        r.branch_names.add(name)
        author = rng.choice(r.contributors)
        parent = r.heads[r.mainbranch]
        for _ in range(rng.randint(1, 2)):
            parent = self._mut_commit(r, name, [parent], author, self._message(rng), now(), mark)
        self._mut_refresh_branch(r, name, mark)
        self._mut_touch_repo(r, mark)
        pr = _PR(max(r.prs) + 1)
        pr.title = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)} (live {m})"
        pr.description = "Opened during the sync 🔄\n\nSee the commits."
        pr.author = author
        pr.src_repo = r
        pr.src_branch = name
        pr.dst_branch = r.mainbranch
        pr.src_idx = r.heads[name]
        pr.dst_idx = r.heads[r.mainbranch]
        pr.created_us = now()
        pr.updated_us = pr.created_us
        pr.close_source_branch = True
        pr.reviewers = [u for u in r.contributors[:2] if u is not author]
        pr.ref = {
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "links": {
                "self": _link(f"{r.api}/pullrequests/{pr.id}"),
                "html": _link(f"{r.web}/pull-requests/{pr.id}"),
            },
        }
        r.prs[pr.id] = pr
        self._add_activity(
            r, pr, pr.created_us, self._act_update(r, pr, "OPEN", pr.created_us, author, "")
        )
        pr.commits = self._pr_commits(r, pr)
        return pr

    def _mut_publish_pr(self, r: _Repo, pr: _PR, mark: Any) -> None:
        p = f"{r.path}/pullrequests/{pr.id}"
        existed = p in self._objs
        rng = random.Random(f"bb-emu:{self.seed}:diffstat:{r.full}:{pr.id}")
        self._objs[p] = self._pr_dict(r, pr)
        mark("pullrequests", p)
        mark("pullrequest_activity", p)
        old_comments = self._cols.get(f"{p}/comments")
        if old_comments is None or len(old_comments) != len(pr.comments):
            self._cols[f"{p}/comments"] = list(pr.comments)
            mark("collections", f"{p}/comments")
        self._cols[f"{p}/activity"] = self._activity_list(pr)
        mark("collections", f"{p}/activity")
        if not existed:
            self._cols[f"{p}/tasks"] = []
            self._cols[f"{p}/commits"] = list(pr.commits)
            for suffix in ("/tasks", "/commits"):
                mark("collections", p + suffix)
        # A merge moves the destination commit, hence the diffstat spec: serve the new one too.
        key = self._diffstat_key(r, pr)
        if key not in self._cols:
            self._cols[key] = self._diffstat(r, pr, rng)
            mark("collections", key)
        pr.diffstat_key = key

    def _mut_publish_pipeline(self, r: _Repo, pl: _Pipeline, mark: Any) -> None:
        base = f"{r.path}/pipelines/{pl.uuid}"
        before = {s["uuid"]: s for s in self._cols.get(f"{base}/steps", [])}
        obj, steps = self._pipeline_dicts(r, pl)
        self._objs[base] = obj
        out = []
        for s in steps:
            old = before.get(s["uuid"])
            if old is not None and old == s:
                out.append(old)  # unchanged step: keep the very same object
                continue
            out.append(s)
            self._objs[f"{base}/steps/{s['uuid']}"] = s
            mark("pipeline_steps", f"{base}/steps/{s['uuid']}")
        self._cols[f"{base}/steps"] = out
        self._cols[f"{r.path}/pipelines"] = [
            self._objs[f"{r.path}/pipelines/{x.uuid}"] for x in r.pipelines
        ]
        mark("pipelines", base)
        mark("collections", f"{r.path}/pipelines")
        mark("collections", f"{base}/steps")
