"""Builders, phase 1: each repository's commit DAG and PR lifecycles on symbolic ticks."""

from __future__ import annotations

import random

from ._util import (
    _DATA_END_US,
    _START_US,
    DAY,
    HOUR,
    _hex,
)
from ._vocab import (
    _BODIES,
    _DECLINE_REASONS,
    _LANGS,
    _SPECIAL_REPOS,
    _SUFFIXES,
    _THINGS,
    _TOPICS,
    _VERBS,
    _WORKSPACES,
)
from .records import _C, _PR, _Episode, _Repo


class _HistoryMixin:
    """Phase 1: simulated git history and pull-request episodes."""

    # ----- phase 1: DAG and PR lifecycles (symbolic ticks, then wall-clock times)

    def _phase1(self, r: _Repo) -> None:
        rng = r.rng
        r.language = rng.choice(_LANGS)
        r.created_us = _START_US + r.ws.repos.index(r) * 2 * DAY // self.scale + rng.randrange(DAY)
        if r.kind == "quiet":  # any day of the first year, however many there are
            r.created_us = _START_US + rng.randrange(365 * DAY)
        contributors = list(r.ws.members)
        outsider = self.users[(r.idx * 5 + 3) % len(self.users)]
        if outsider not in contributors:
            contributors.append(outsider)
        r.contributors = contributors
        r.t_start = r.created_us + HOUR
        r.t_end = _DATA_END_US - 3 * DAY
        if r.kind == "empty":
            r.mainbranch = "main"
            r.info.mainbranch = None
            r.pushed_us = r.created_us
            return
        if r.kind == "fork":
            parent = self._repo_by_name[self._fork_parent_name()]
            self._init_fork(r, parent)
            n_prs, min_commits = rng.randint(4, 7), len(r.commits) + 8
        elif r.kind == "quiet":
            r.mainbranch, r.develop = "main", None
            n_prs, min_commits = 0, 4
        else:
            r.mainbranch = "master" if (r.kind == "big" or rng.random() < 0.25) else "main"
            r.develop = "develop" if (r.kind == "big" or rng.random() < 0.4) else None
            n_prs = 58 if r.kind == "big" else rng.randint(15, 34)
            min_commits = 125 if r.kind == "big" else rng.randint(55, 90)
        r.info.mainbranch = r.mainbranch
        self._simulate(r, n_prs, min_commits)
        self._assign_times(r)
        if r.kind == "big" and len(r.commits) > 6:
            # Deterministic NUL byte in a commit message (before the fork copies the history).
            c = r.commits[5]
            c.message = c.message.split("\n", 1)[0] + "\n\nBinary junk: \u0000 end"

    def _fork_parent_name(self) -> str:
        return f"{_WORKSPACES[0][0]}/{_SPECIAL_REPOS[0][0][0]}"

    def _commit(
        self,
        r: _Repo,
        branch: str,
        parents: list[int],
        author: dict | None,
        message: str,
        tick: int | None,
    ) -> int:
        idx = len(r.commits)
        h = _hex(r.rng, 40)
        c = _C(idx, h, parents, branch, author, message, tick)
        a = 1 << idx
        for p in parents:
            a |= r.anc[p]
        r.commits.append(c)
        r.anc.append(a)
        r.by_hash[h] = idx
        r.heads[branch] = idx
        if branch == r.mainbranch:
            r.main_history.append((tick if tick is not None else -1, idx))
        return idx

    def _tick(self, r: _Repo) -> int:
        r.tick += 1
        return r.tick

    def _message(self, rng: random.Random) -> str:
        msg = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)}{rng.choice(_SUFFIXES)}"
        if rng.random() < 0.3:
            msg += "\n\n" + rng.choice(_BODIES)
        return msg

    def _pick_author(self, r: _Repo) -> dict | None:
        x = r.rng.random()
        if x < 0.05:
            return None
        return r.rng.choice(r.contributors)

    def _branch_name(self, r: _Repo) -> str:
        rng = r.rng
        while True:
            prefix = rng.choice(["feature", "feature", "feature", "bugfix", "hotfix"])
            name = f"{prefix}/{rng.choice(_TOPICS)}-{rng.randint(1, 999)}"
            if r.kind == "big" and "feature/ümlaut-support" not in r.branch_names:
                name = "feature/ümlaut-support"
            if name not in r.branch_names and name not in r.heads:
                r.branch_names.add(name)
                return name

    @staticmethod
    def _plans(rng: random.Random, n_prs: int) -> list[list[str]]:
        if n_prs == 0:  # a quiet repository: no pull request at all
            return []
        plans: list[list[str]] = [
            ["MERGED"],
            ["DECLINED"],
            ["SUPERSEDED", "MERGED"],
            ["OPEN"],
            ["OPEN"],
        ]
        total = sum(len(p) for p in plans)
        while total < n_prs:
            x = rng.random()
            if x < 0.58:
                p = ["MERGED"]
            elif x < 0.70:
                p = ["DECLINED"]
            elif x < 0.76:
                p = ["SUPERSEDED", "MERGED"]
            elif x < 0.79:
                p = ["SUPERSEDED", "OPEN"]
            elif x < 0.82:
                p = ["DECLINED", "MERGED"]
            else:
                p = ["OPEN"]
            plans.append(p)
            total += len(p)
        rng.shuffle(plans)
        return plans

    def _simulate(self, r: _Repo, n_prs: int, min_commits: int) -> None:
        rng = r.rng
        main = r.mainbranch
        if not r.commits:
            self._commit(r, main, [], rng.choice(r.contributors), "Initial commit", self._tick(r))
        if r.develop:
            r.heads[r.develop] = r.heads[main]
        if r.kind == "fork":
            # A branch meant for a PR into the parent repository.
            b = "feature/upstream-fix"
            r.branch_names.add(b)
            r.upstream_branch = b
            author = r.contributors[1 % len(r.contributors)]
            parent = r.heads[main]
            for k in range(2):
                parent = self._commit(
                    r, b, [parent], author, f"Upstream fix, part {k + 1} 🩹", self._tick(r)
                )
        plans = self._plans(rng, n_prs)
        active: list[_Episode] = []
        release_left = n_prs // 10 if r.develop else 0
        longlived = [main] + ([r.develop] if r.develop else [])
        guard = 0
        while plans or active or len(r.commits) < min_commits:
            guard += 1
            if guard > 20_000:
                break
            if not plans and not active:
                self._push(r, rng.choice(longlived))
                continue
            x = rng.random()
            if plans and len(active) < 4 and ((len(active) < 2 and x < 0.45) or x < 0.08):
                plan = plans.pop()
                dst = r.develop if (r.develop and rng.random() < 0.5) else main
                ep = _Episode(
                    self._branch_name(r), dst, plan, rng.randint(1, 2), self._pick_author(r)
                )
                self._commit(
                    r, ep.branch, [r.heads[dst]], ep.author, self._message(rng), self._tick(r)
                )
                ep.pushed = 1
                active.append(ep)
            elif x < 0.22:
                self._push(r, main if not r.develop or rng.random() < 0.4 else r.develop)
            elif (
                release_left
                and x < 0.26
                and r.develop
                and not any(e.release for e in active)
                and not (r.anc[r.heads[main]] >> r.heads[r.develop]) & 1
            ):
                release_left -= 1
                ep = _Episode(
                    r.develop, main, ["MERGED"], 0, rng.choice(r.contributors), release=True
                )
                active.append(ep)
            elif active:
                self._advance(r, rng.choice(active), active)

    def _push(self, r: _Repo, branch: str) -> None:
        author = self._pick_author(r) if r.rng.random() < 0.9 else None
        self._commit(r, branch, [r.heads[branch]], author, self._message(r.rng), self._tick(r))

    def _open_pr(self, r: _Repo, ep: _Episode) -> _PR:
        rng = r.rng
        pr = _PR(len(r.prs) + 1)
        if ep.release:
            pr.title = f"Release {len(r.prs) + 1}: merge {ep.branch} into {ep.dst}"
        elif ep.title:
            pr.title = ep.title + " (v2)" if not ep.title.endswith("(v2)") else ep.title
        else:
            pr.title = f"{rng.choice(_VERBS)} {rng.choice(_THINGS)}{rng.choice(_SUFFIXES)}"
        ep.title = pr.title
        x = rng.random()
        if x < 0.03:
            pr.description = None
        elif x < 0.13:
            pr.description = ""
        else:
            pr.description = "## Summary\n\n" + rng.choice(_BODIES) + "\n\n- [x] tests\n- [ ] docs"
        pr.author = ep.author
        pr.src_repo = r
        pr.src_branch = ep.branch
        pr.dst_branch = ep.dst
        pr.src_idx = r.heads[ep.branch]
        pr.dst_idx = r.heads[ep.dst]
        pr.created_tick = self._tick(r)
        # (the unicode branch of the big repository always survives, for path-encoding tests)
        pr.close_source_branch = (
            (not ep.release) and rng.random() < 0.7 and "ümlaut" not in ep.branch
        )
        pr.reviewers = rng.sample(
            [u for u in r.contributors if u is not ep.author],
            k=min(rng.randint(0, 3), len(r.contributors) - 1),
        )
        r.prs[pr.id] = pr
        ep.pr = pr
        return pr

    def _close_pr(self, r: _Repo, ep: _Episode, state: str) -> None:
        rng = r.rng
        pr = ep.pr
        assert pr is not None
        pr.state = state
        if state == "MERGED":
            closer = rng.choice(pr.reviewers or r.contributors)
            dst_before = r.heads[ep.dst]
            src = r.heads[ep.branch]
            tick = self._tick(r)
            m = self._commit(
                r,
                ep.dst,
                [dst_before, src],
                closer,
                f"Merged in {ep.branch} (pull request #{pr.id})\n\n{pr.title}",
                tick,
            )
            pr.merge_idx, pr.dst_idx, pr.src_idx = m, dst_before, src
            pr.closed_tick = tick
            pr.closed_by = closer
            if pr.close_source_branch and not ep.release:
                del r.heads[ep.branch]
        else:
            pr.closed_tick = self._tick(r)
            if state == "DECLINED":
                pr.closed_by = rng.choice(pr.reviewers or r.contributors)
                pr.reason = rng.choice(_DECLINE_REASONS)
            else:
                pr.closed_by = pr.author or rng.choice(r.contributors)
            pr.close_source_branch = False
            pr.src_idx = r.heads[ep.branch]
        ep.pr = None

    def _advance(self, r: _Repo, ep: _Episode, active: list[_Episode]) -> None:
        rng = r.rng
        if ep.pr is None:
            if ep.pushed < ep.need:
                self._commit(
                    r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
                )
                ep.pushed += 1
            else:
                self._open_pr(r, ep)
            return
        state = ep.plan[0]
        y = rng.random()
        pr = ep.pr
        if state == "OPEN":
            if y < 0.25 and ep.pushed < 5:
                self._commit(
                    r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
                )
                ep.pushed += 1
                pr.src_idx = r.heads[ep.branch]
            else:
                pr.draft = rng.random() < 0.25
                pr.queued = (not pr.draft) and rng.random() < 0.08
                ep.plan.pop(0)
                active.remove(ep)
            return
        if state == "SUPERSEDED":
            self._close_pr(r, ep, "SUPERSEDED")
            self._commit(
                r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
            )
            ep.pushed += 1
            ep.plan.pop(0)
            self._open_pr(r, ep)
            return
        if not ep.release and y < 0.22 and ep.pushed < 5:
            self._commit(
                r, ep.branch, [r.heads[ep.branch]], ep.author, self._message(rng), self._tick(r)
            )
            ep.pushed += 1
            pr.src_idx = r.heads[ep.branch]
        elif (
            not ep.release
            and not ep.synced
            and y < 0.30
            and not (r.anc[r.heads[ep.branch]] >> r.heads[ep.dst]) & 1
        ):
            ep.synced = True
            self._commit(
                r,
                ep.branch,
                [r.heads[ep.branch], r.heads[ep.dst]],
                ep.author,
                f"Merge branch '{ep.dst}' into {ep.branch}",
                self._tick(r),
            )
            pr.src_idx = r.heads[ep.branch]
            pr.dst_idx = r.heads[ep.dst]
        else:
            self._close_pr(r, ep, state)
            ep.plan.pop(0)
            if ep.plan:
                ep.need = ep.pushed + 1
            else:
                active.remove(ep)
