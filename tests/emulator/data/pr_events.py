"""Builders: pull-request events (comments, votes, tasks) and the per-repository PR collections."""

from __future__ import annotations

import random
from typing import Any

from ._util import (
    _DATA_END_US,
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    _link,
    _to_us,
    _ts,
    parse_timestamp,
)
from ._vocab import (
    _COMMENTS,
    _FILES,
    _TASKS,
)
from .records import _PR, _Repo


class _PullRequestEventsMixin:
    """Pull-request events and the PR collections."""

    def _gen_pr_events(
        self, r: _Repo, pr: _PR, rng: random.Random, raw_comments: list, raw_tasks: list
    ) -> None:
        """Random comments, votes and tasks inside the PR's lifetime (times only; ids later)."""
        start = pr.created_us
        end = (
            pr.closed_us
            if pr.closed_us is not None
            else min(pr.created_us + 25 * DAY, _DATA_END_US - HOUR)
        )
        if end - start < 10 * MINUTE:
            return
        pool = [u for u in [*pr.reviewers, pr.author] if u is not None] or r.contributors
        n = rng.choice([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6])
        times = sorted(rng.randint(start + MINUTE, end - MINUTE) for _ in range(n))
        files = _FILES[r.language]
        mine: list[dict] = []
        for t in times:
            c: dict[str, Any] = {
                "pr": pr,
                "us": t,
                "user": rng.choice(pool if rng.random() < 0.8 else r.contributors),
                "raw": rng.choice(_COMMENTS),
                "deleted": rng.random() < 0.07,
                "inline": None,
                "parent": None,
                "resolution": None,
            }
            if mine and rng.random() < 0.3:
                c["parent"] = rng.choice(mine)
                c["inline"] = c["parent"]["inline"]
            elif rng.random() < 0.35:
                to = rng.randint(1, 400)
                c["inline"] = {
                    "from": None if rng.random() < 0.5 else max(1, to - rng.randint(0, 5)),
                    "to": to,
                    "path": rng.choice(files),
                }
            edited = rng.random() < 0.15
            c["updated"] = (
                min(end, t + rng.randint(MINUTE, 2 * DAY)) if edited else t + rng.randint(100, 5000)
            )
            if (
                c["inline"] is not None
                and c["parent"] is None
                and not c["deleted"]
                and rng.random() < 0.25
            ):
                c["resolution"] = (
                    min(end, c["updated"] + rng.randint(MINUTE, HOUR)),
                    rng.choice(pool),
                )
            mine.append(c)
            raw_comments.append(c)
        for u in pr.reviewers:
            x = rng.random()
            if x < 0.5:
                pr.votes.append((rng.randint(start + MINUTE, end - MINUTE), "approval", u))
            elif x < 0.65:
                pr.votes.append((rng.randint(start + MINUTE, end - MINUTE), "changes_requested", u))
        if rng.random() < 0.35:
            for _ in range(rng.randint(1, 2)):
                t = rng.randint(start + MINUTE, end - MINUTE)
                resolved = None
                if rng.random() < 0.5:
                    resolved = (rng.randint(t + SECOND, end), rng.choice(pool))
                raw_tasks.append(
                    {
                        "pr": pr,
                        "us": t,
                        "creator": rng.choice(pool),
                        "raw": rng.choice(_TASKS),
                        "resolved": resolved,
                        "comment": next((c for c in mine if c["us"] < t), None)
                        if rng.random() < 0.5
                        else None,
                    }
                )

    def _build_prs(self, r: _Repo) -> None:
        rng = random.Random(f"bb-emu:{self.seed}:prs:{r.full}")
        raw_comments: list[dict] = []
        raw_tasks: list[dict] = []
        if r.kind == "big":
            # Deterministic special values.
            if 7 in r.prs:
                r.prs[
                    7
                ].description = "Contains a NUL byte here: \u0000 (from a pasted binary log)."
            if 2 in r.prs and "🚀" not in r.prs[2].title:
                r.prs[2].title = r.prs[2].title.rstrip() + " 🚀"
            if 4 in r.prs:
                r.prs[4].author = None  # deleted account
        for pr in r.prs.values():
            pr.ref = {
                "type": "pullrequest",
                "id": pr.id,
                "title": pr.title,
                "links": {
                    "self": _link(f"{r.api}/pullrequests/{pr.id}"),
                    "html": _link(f"{r.web}/pull-requests/{pr.id}"),
                },
            }
            self._gen_pr_events(r, pr, rng, raw_comments, raw_tasks)
        if r.kind == "big":
            for c in raw_comments:
                if not c["deleted"]:
                    c["raw"] = "Pasted output:\n\n\u0000\u0000 ✔ done"
                    break
            self._deleted_account_comment(r, raw_comments)
        # Comment and task ids follow creation time across the repository.
        base_c = 200_000_000 + r.idx * 100_000
        raw_comments.sort(key=lambda c: c["us"])
        for c in raw_comments:
            r.comment_seq += 1
            pr = c["pr"]
            parent_d = c["parent"]["dict"] if c["parent"] is not None else None
            d = self._comment_dict(
                r,
                pr,
                base_c + r.comment_seq,
                c["us"],
                c["updated"],
                c["user"],
                c["raw"],
                c["deleted"],
                c["inline"],
                parent_d,
                c["resolution"],
            )
            c["dict"] = d
            pr.comments.append(d)
            pr.comment_us[d["id"]] = c["us"]
        base_t = 9_000_000 + r.idx * 100_000
        raw_tasks.sort(key=lambda t: t["us"])
        for t in raw_tasks:
            r.task_seq += 1
            pr = t["pr"]
            d = self._task_dict(
                r,
                pr,
                base_t + r.task_seq,
                t["us"],
                t["creator"],
                t["raw"],
                t["resolved"],
                t["comment"]["dict"] if t["comment"] is not None else None,
            )
            pr.tasks.append(d)
        comment_times = {id(c["dict"]): c for c in raw_comments}
        no_commits = next(
            (
                pr
                for pr in r.prs.values()
                if r.kind == "big"
                and pr.state == "MERGED"
                and pr.close_source_branch
                and pr.author is not None
                and pr.dst_branch == r.mainbranch
            ),
            None,
        )
        for pr in r.prs.values():
            # activity
            self._add_activity(
                r, pr, pr.created_us, self._act_update(r, pr, "OPEN", pr.created_us, pr.author, "")
            )
            latest = [pr.created_us]
            for d in pr.comments:
                c = comment_times[id(d)]
                self._add_activity(r, pr, c["us"], {"comment": d, "pull_request": pr.ref})
                latest.append(c["updated"])
                if c["resolution"] is not None:
                    latest.append(c["resolution"][0])
            for us, kind, u in pr.votes:
                self._add_activity(
                    r,
                    pr,
                    us,
                    {
                        kind: {"date": _ts(us), "user": u, "pullrequest": pr.ref},
                        "pull_request": pr.ref,
                    },
                )
                latest.append(us)
            for t in pr.tasks:
                latest.append(_to_us(parse_timestamp(t["updated_on"])))
            if pr.closed_us is not None:
                self._add_activity(
                    r,
                    pr,
                    pr.closed_us,
                    self._act_update(r, pr, pr.state, pr.closed_us, pr.closed_by, pr.reason),
                )
                latest.append(pr.closed_us)
            pr.updated_us = max(latest)
            # Bitbucket lists no commits for a pull request whose source branch was deleted
            # (notes §8.18). One merged pull request of the big repository (its branch
            # closed on merge) answers so; the others keep theirs, for coding times.
            pr.commits = [] if pr is no_commits else self._pr_commits(r, pr)
            self._register_pr(r, pr, rng)
        self._refresh_pr_collections(r)

    @staticmethod
    def _deleted_account_comment(r: _Repo, raw_comments: list[dict]) -> None:
        """A comment whose account was deleted since (``user: null``; the notes document no
        other shape), the first review of its merged pull request: a deleted account counts
        as someone other than the author (issue 15). No rng: the rest stays as it was."""
        for pr in r.prs.values():
            events = [c["us"] for c in raw_comments if c["pr"] is pr] + [v[0] for v in pr.votes]
            if pr.state != "MERGED" or pr.author is None or pr.closed_us is None or not events:
                continue
            first = min(events)
            if first - pr.created_us < 20 * MINUTE:
                continue
            us = pr.created_us + (first - pr.created_us) // 2
            raw_comments.append(
                {
                    "pr": pr,
                    "us": us,
                    "user": None,
                    "raw": "Could we log the retry count here? It would help on-call.",
                    "deleted": False,
                    "inline": None,
                    "parent": None,
                    "resolution": None,
                    "updated": us + 90 * SECOND,
                }
            )
            return

    def _register_pr(self, r: _Repo, pr: _PR, rng: random.Random) -> None:
        p = f"{r.path}/pullrequests/{pr.id}"
        self._objs[p] = self._pr_dict(r, pr)
        self._cols[f"{p}/comments"] = list(pr.comments)
        for d in pr.comments:
            self._objs[f"{p}/comments/{d['id']}"] = d
        self._cols[f"{p}/tasks"] = list(pr.tasks)
        for t in pr.tasks:
            self._objs[f"{p}/tasks/{t['id']}"] = t
        self._cols[f"{p}/activity"] = self._activity_list(pr)
        self._cols[f"{p}/commits"] = list(pr.commits)
        key = self._diffstat_key(r, pr)
        if key not in self._cols:
            self._cols[key] = self._diffstat(r, pr, rng)
        pr.diffstat_key = key

    @staticmethod
    def _diffstat_key(r: _Repo, pr: _PR) -> str:
        """Decoded collection path of a PR's diffstat (``%0D`` in the href is a CR here)."""
        src = pr.src_repo or r
        sh = src.commits[pr.src_idx].hash[:12]
        return f"{r.path}/diffstat/{src.full}:{sh}\r{r.commits[pr.dst_idx].hash[:12]}"

    def _refresh_pr_collections(self, r: _Repo) -> None:
        self._cols[f"{r.path}/pullrequests"] = [
            self._objs[f"{r.path}/pullrequests/{i}"] for i in sorted(r.prs, reverse=True)
        ]
        self._cols[f"{r.path}/pullrequests/activity"] = self._repo_activity(r)
