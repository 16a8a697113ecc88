"""Builders: pull-request objects and their children (participants, comments, tasks, activity, commits, diffstat)."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

from ._util import (
    _content,
    _link,
    _render,
    _ts,
)
from ._vocab import (
    _FILES,
)
from .records import _PR, _Repo


class _PullRequestMixin:
    """Pull-request API objects and their child records."""

    # ----- pull requests

    @staticmethod
    def _spec(r: _Repo, pr: _PR) -> str:
        """The percent-encoded ``{spec}`` of the PR's diff/diffstat links."""
        src = pr.src_repo or r
        return f"{src.full}:{src.commits[pr.src_idx].hash[:12]}%0D{r.commits[pr.dst_idx].hash[:12]}"

    def _pr_links(self, r: _Repo, pr: _PR) -> dict:
        a = f"{r.api}/pullrequests/{pr.id}"
        spec = self._spec(r, pr)
        q = f"?from_pullrequest_id={pr.id}&topic=true"
        return {
            "self": _link(a),
            "html": _link(f"{r.web}/pull-requests/{pr.id}"),
            "commits": _link(f"{a}/commits"),
            "approve": _link(f"{a}/approve"),
            "request-changes": _link(f"{a}/request-changes"),
            "diff": _link(f"{r.api}/diff/{spec}{q}"),
            "diffstat": _link(f"{r.api}/diffstat/{spec}{q}"),
            "comments": _link(f"{a}/comments"),
            "activity": _link(f"{a}/activity"),
            "merge": _link(f"{a}/merge"),
            "decline": _link(f"{a}/decline"),
            "statuses": _link(f"{a}/statuses"),
        }

    def _endpoint(self, repo: _Repo, branch: str, idx: int) -> dict:
        return {
            "branch": {"name": branch},
            "commit": self._ref12(repo, repo.commits[idx].hash),
            "repository": repo.ref,
        }

    def _participants(self, pr: _PR) -> list[dict]:
        entries: dict[str, dict] = {}

        def get(u: dict, role: str) -> dict:
            e = entries.get(u["uuid"])
            if e is None:
                e = {"user": u, "role": role, "approved": False, "state": None, "on": None}
                entries[u["uuid"]] = e
            return e

        for u in pr.reviewers:
            get(u, "REVIEWER")
        for us, kind, u in sorted(pr.votes, key=lambda v: v[0]):
            e = get(u, "PARTICIPANT")
            e["approved"] = kind == "approval"
            e["state"] = "approved" if kind == "approval" else "changes_requested"
            e["on"] = us if e["on"] is None else max(e["on"], us)
        for c in pr.comments:
            u = c["user"]
            if u is None or u.get("account_id") is None:
                continue
            e = get(u, "PARTICIPANT")
            us = pr.comment_us.get(c["id"], 0)
            e["on"] = us if e["on"] is None else max(e["on"], us)
        return [
            {
                "type": "participant",
                "user": e["user"],
                "role": e["role"],
                "approved": e["approved"],
                "state": e["state"],
                "participated_on": _ts(e["on"]) if e["on"] is not None else None,
            }
            for e in entries.values()
        ]

    def _pr_dict(self, r: _Repo, pr: _PR) -> dict:
        src = pr.src_repo or r
        return {
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "description": pr.description,
            "summary": _content(pr.description),
            "state": pr.state,
            "draft": pr.draft,
            "queued": pr.queued,
            "author": pr.author,
            "source": self._endpoint(src, pr.src_branch, pr.src_idx),
            "destination": self._endpoint(r, pr.dst_branch, pr.dst_idx),
            "merge_commit": self._ref12(r, r.commits[pr.merge_idx].hash)
            if pr.merge_idx is not None
            else None,
            "comment_count": sum(1 for c in pr.comments if not c["deleted"]),
            "task_count": sum(1 for t in pr.tasks if t["state"] == "UNRESOLVED"),
            "close_source_branch": pr.close_source_branch,
            "closed_by": pr.closed_by,
            "reason": pr.reason,
            "created_on": _ts(pr.created_us),
            "updated_on": _ts(pr.updated_us),
            "links": self._pr_links(r, pr),
            "reviewers": list(pr.reviewers),
            "participants": self._participants(pr),
        }

    def _comment_dict(
        self,
        r: _Repo,
        pr: _PR,
        cid: int,
        created: int,
        updated: int,
        user: dict | None,
        raw: str,
        deleted: bool,
        inline: dict | None,
        parent: dict | None,
        resolution: tuple[int, dict] | None,
    ) -> dict:
        a = f"{r.api}/pullrequests/{pr.id}/comments/{cid}"
        d: dict[str, Any] = {
            "id": cid,
            "type": "pullrequest_comment",
            "created_on": _ts(created),
            "updated_on": _ts(updated),
            "content": _content("" if deleted else raw),
            "user": user,
            "deleted": deleted,
            "pending": False,
            "links": {
                "self": _link(a),
                "html": _link(f"{r.web}/pull-requests/{pr.id}/_/diff#comment-{cid}"),
            },
            "pullrequest": pr.ref,
        }
        if inline is not None:
            d["inline"] = inline
            spec = self._spec(r, pr)
            d["links"]["code"] = _link(f"{r.api}/diff/{spec}?path={quote(inline['path'])}")
        if parent is not None:
            d["parent"] = {
                "id": parent["id"],
                "type": "pullrequest_comment",
                "links": parent["links"],
            }
        if resolution is not None:
            d["resolution"] = {
                "type": "comment_resolution",
                "user": resolution[1],
                "created_on": _ts(resolution[0]),
            }
        return d

    def _task_dict(
        self,
        r: _Repo,
        pr: _PR,
        tid: int,
        created: int,
        creator: dict,
        raw: str,
        resolved: tuple[int, dict] | None,
        comment: dict | None,
    ) -> dict:
        a = f"{r.api}/pullrequests/{pr.id}/tasks/{tid}"
        d: dict[str, Any] = {
            "id": tid,
            "created_on": _ts(created),
            "updated_on": _ts(resolved[0] if resolved else created + 81),
            "state": "RESOLVED" if resolved else "UNRESOLVED",
            "content": {"raw": raw, "markup": "markdown", "html": _render(raw)},
            "creator": creator,
            "pending": False,
            "resolved_on": _ts(resolved[0]) if resolved else None,
            "resolved_by": resolved[1] if resolved else None,
            "links": {
                "self": _link(a),
                "html": _link(f"{r.web}/pull-requests/{pr.id}/_/diff#task-{tid}"),
            },
        }
        if comment is not None:
            d["comment"] = {
                "id": comment["id"],
                "type": "pullrequest_comment",
                "links": comment["links"],
            }
        return d

    def _act_update(
        self, r: _Repo, pr: _PR, state: str, us: int, author: dict | None, reason: str
    ) -> dict:
        src = pr.src_repo or r
        upd: dict[str, Any] = {
            "state": state,
            "draft": pr.draft if state == "OPEN" else False,
            "title": pr.title,
            "description": pr.description,
            "reason": reason,
            "author": author,
            "date": _ts(us),
            "destination": self._endpoint(r, pr.dst_branch, pr.dst_idx),
            "source": self._endpoint(src, pr.src_branch, pr.src_idx),
        }
        if state != "OPEN":
            new = {"MERGED": "fulfilled", "DECLINED": "rejected", "SUPERSEDED": "superseded"}[state]
            upd["changes"] = {"status": {"old": "open", "new": new}}
        return {"update": upd, "pull_request": pr.ref}

    def _add_activity(self, r: _Repo, pr: _PR, us: int, entry: dict) -> None:
        r.act_seq += 1
        pr.activity.append((us, r.act_seq, entry))

    def _activity_list(self, pr: _PR) -> list[dict]:
        return [e for _, _, e in sorted(pr.activity, key=lambda t: (t[0], t[1]), reverse=True)]

    def _repo_activity(self, r: _Repo) -> list[dict]:
        allx = [t for pr in r.prs.values() for t in pr.activity]
        allx.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [e for _, _, e in allx]

    def _pr_commits(self, r: _Repo, pr: _PR) -> list[dict]:
        src = pr.src_repo or r
        if src is r:
            mask = r.anc[pr.src_idx] & ~r.anc[pr.dst_idx]
        else:
            base = src.fork_base_idx if src.fork_base_idx is not None else 0
            mask = src.anc[pr.src_idx] & ~src.anc[base]
        out = []
        i = mask.bit_length() - 1
        while i >= 0:
            if (mask >> i) & 1:
                out.append(src.cdicts[i])
            i -= 1
        return out

    def _diffstat(self, r: _Repo, pr: _PR, rng: random.Random) -> list[dict]:
        src = pr.src_repo or r
        sh = src.commits[pr.src_idx].hash
        dh = r.commits[pr.dst_idx].hash
        files = rng.sample(_FILES[r.language], k=min(len(_FILES[r.language]), rng.randint(1, 5)))
        out = []
        for f in files:
            x = rng.random()
            status = (
                "modified"
                if x < 0.6
                else "added"
                if x < 0.8
                else "removed"
                if x < 0.9
                else "renamed"
            )
            old_path = f if status != "renamed" else "legacy/" + f

            def cf(path: str, h: str, repo: _Repo) -> dict:
                return {
                    "path": path,
                    "type": "commit_file",
                    "escaped_path": path,
                    "links": {"self": _link(f"{repo.api}/src/{h}/{quote(path)}")},
                }

            out.append(
                {
                    "type": "diffstat",
                    "status": status,
                    "lines_added": 0 if status == "removed" else rng.randint(1, 120),
                    "lines_removed": 0 if status == "added" else rng.randint(0, 80),
                    "old": None if status == "added" else cf(old_path, dh, r),
                    "new": None if status == "removed" else cf(f, sh, src),
                }
            )
        return out
