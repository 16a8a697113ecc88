"""Builders: commit statuses, pipelines and their steps."""

from __future__ import annotations

import random
from typing import Any

from ._util import (
    _DATA_END_US,
    MINUTE,
    SECOND,
    _enc,
    _hex,
    _link,
    _ts,
    _ts_z,
    _uuid,
)
from ._vocab import (
    _IMAGES,
    _STATUS_KEYS,
    _STEP_NAMES,
)
from .records import _C, _Pipeline, _Repo


class _PipelinesMixin:
    """Commit statuses and pipelines."""

    # ----- statuses and pipelines

    def _status_dict(
        self,
        r: _Repo,
        c: _C,
        key: str,
        name: str,
        state: str,
        created: int,
        updated: int,
        rng: random.Random,
    ) -> dict:
        h12 = c.hash[:12]
        return {
            "type": "build",
            "key": key,
            "refname": c.branch,
            "url": f"https://ci.{r.ws.slug}.example.com/{r.info.slug}/{key}/{rng.randint(1, 9999)}",
            "state": state,
            "name": f"{name} #{rng.randint(1, 900)}",
            "description": {
                "SUCCESSFUL": "All checks passed ✅",
                "FAILED": "2 tests failed",
                "INPROGRESS": "Running…",
                "STOPPED": "Stopped by user",
            }[state],
            "created_on": _ts(created),
            "updated_on": _ts(updated),
            "commit": self._ref12(r, c.hash),
            "repository": r.ref,
            "links": {
                "self": _link(f"{r.api}/commit/{h12}/statuses/build/{_enc(key)}"),
                "commit": _link(f"{r.api}/commit/{h12}"),
            },
        }

    def _build_statuses(self, r: _Repo) -> None:
        rng = random.Random(f"bb-emu:{self.seed}:statuses:{r.full}")
        for c in r.commits:
            if c.tick is None or rng.random() > 0.35:
                continue
            out = []
            for key, name in rng.sample(_STATUS_KEYS, rng.randint(1, 2)):
                state = rng.choices(
                    ["SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"], [70, 15, 8, 7]
                )[0]
                created = c.us + rng.randint(1, 20) * MINUTE + rng.randrange(SECOND)
                updated = created + (0 if state == "INPROGRESS" else rng.randint(1, 25) * MINUTE)
                s = self._status_dict(r, c, key, name, state, created, updated, rng)
                out.append(s)
                self._objs[f"{r.path}/commit/{c.hash}/statuses/build/{key}"] = s
            self._cols[f"{r.path}/commit/{c.hash}/statuses"] = out

    def _pipeline_ts(self, pl: _Pipeline, us: int | None, salt: int) -> str | None:
        if us is None:
            return None
        if pl.nanos is None:
            return _ts_z(us)
        return _ts_z(us, (pl.nanos + salt * 37) % 1000)

    def _step_state(self, s: dict) -> dict:
        st = s["state"]
        if st == "COMPLETED":
            res = s["result"]
            out: dict[str, Any] = {
                "name": "COMPLETED",
                "type": "pipeline_step_state_completed",
                "result": {"name": res, "type": f"pipeline_step_state_completed_{res.lower()}"},
            }
            if res == "ERROR":
                out["result"]["error"] = {
                    "type": "pipeline_step_error",
                    "key": "agent.build.container.failed",
                    "message": "Container 'build' exceeded memory limit.",
                }
            return out
        return {"name": st, "type": f"pipeline_step_state_{st.lower()}"}

    def _pipeline_state(self, r: _Repo, pl: _Pipeline) -> dict:
        if pl.state == "PENDING":
            return {"name": "PENDING", "type": "pipeline_state_pending"}
        if pl.state == "IN_PROGRESS":
            return {
                "name": "IN_PROGRESS",
                "type": "pipeline_state_in_progress",
                "stage": {"name": "RUNNING", "type": "pipeline_state_in_progress_running"},
            }
        res = pl.result or "SUCCESSFUL"
        result: dict[str, Any] = {"name": res, "type": f"pipeline_state_completed_{res.lower()}"}
        if res == "ERROR":
            result["error"] = {
                "type": "pipeline_error",
                "key": "plan-service.parse.invalid-yaml",
                "message": "There is an error in your bitbucket-pipelines.yml ⚠",
            }
        if res == "STOPPED":
            result["terminator"] = pl.creator
        return {"name": "COMPLETED", "type": "pipeline_state_completed", "result": result}

    def _pipeline_dicts(self, r: _Repo, pl: _Pipeline) -> tuple[dict, list[dict]]:
        c = r.commits[pl.commit_idx]
        used = sum(
            (s["completed_us"] - s["started_us"]) // SECOND
            for s in pl.steps
            if s["started_us"] is not None and s["completed_us"] is not None
        )
        duration = (
            ((pl.completed_us - pl.created_us) // SECOND) if pl.completed_us is not None else None
        )
        obj = {
            "type": "pipeline",
            "uuid": pl.uuid,
            "build_number": pl.build,
            "run_number": 1,
            "creator": pl.creator,
            "repository": r.ref,
            "target": {
                "type": "pipeline_ref_target",
                "ref_type": "branch",
                "ref_name": pl.ref_name,
                "selector": {"type": "branches", "pattern": pl.ref_name}
                if pl.ref_name != r.mainbranch
                else {"type": "default"},
                "commit": {
                    "type": "commit",
                    "hash": c.hash,
                    "links": {
                        "self": _link(f"{r.api}/commit/{c.hash}"),
                        "html": _link(f"{r.web}/commits/{c.hash}"),
                    },
                },
            },
            "trigger": {"name": pl.trigger, "type": f"pipeline_trigger_{pl.trigger.lower()}"},
            "state": self._pipeline_state(r, pl),
            "created_on": self._pipeline_ts(pl, pl.created_us, 0),
            "completed_on": self._pipeline_ts(pl, pl.completed_us, 1),
            "duration_in_seconds": duration,
            "build_seconds_used": used,
            "first_successful": False,
            "expired": False,
            "has_variables": False,
        }
        steps = []
        for k, s in enumerate(pl.steps):
            sd: dict[str, Any] = {
                "type": "pipeline_step",
                "uuid": s["uuid"],
                "name": s["name"],
                "pipeline": {"type": "pipeline", "uuid": pl.uuid},
                "run_number": 1,
                "trigger": {"type": "pipeline_step_trigger_automatic"},
                "state": self._step_state(s),
                "image": s["image"],
                "maxTime": 120,
                "started_on": self._pipeline_ts(pl, s["started_us"], 2 + 2 * k),
                "completed_on": self._pipeline_ts(pl, s["completed_us"], 3 + 2 * k),
                "duration_in_seconds": ((s["completed_us"] - s["started_us"]) // SECOND)
                if s["completed_us"] is not None and s["started_us"] is not None
                else None,
                "build_seconds_used": ((s["completed_us"] - s["started_us"]) // SECOND)
                if s["completed_us"] is not None and s["started_us"] is not None
                else 0,
                "setup_commands": [
                    {"commandType": "user", "name": "umask 000", "command": "umask 000"},
                    {
                        "commandType": "user",
                        "name": "git reset",
                        "command": f"git reset --hard {c.hash}",
                    },
                ],
                "script_commands": [
                    {"commandType": "user", "name": cmd, "command": cmd} for cmd in s["script"]
                ],
                "teardown_commands": [
                    {
                        "commandType": "system",
                        "action": "PROCESS_TEST_REPORTS",
                        "name": "Process Test Reports",
                        "command": 'echo "Processing test reports"',
                    }
                ],
            }
            steps.append(sd)
        return obj, steps

    def _new_steps(
        self, r: _Repo, rng: random.Random, n: int, force_creds: bool = False
    ) -> list[dict]:
        steps = []
        for k in range(n):
            image: dict[str, Any] = {"name": rng.choice(_IMAGES)}
            if force_creds or rng.random() < 0.15:
                tag = f"{rng.randint(1, 9)}.{rng.randint(0, 9)}"
                image = {
                    "name": f"{r.ws.slug}.jfrog.io/ci/builder:{tag}",
                    "username": "ci-bot",
                    "password": f"s3cr3t-{_hex(rng, 24)}",
                    "email": f"ci-bot@{r.ws.slug}.example.com",
                }
                force_creds = False
            steps.append(
                {
                    "uuid": _uuid(rng),
                    "name": _STEP_NAMES[k % len(_STEP_NAMES)],
                    "image": image,
                    "script": ["make", "make test"]
                    if k % 2 == 0
                    else ["npm ci", "npm test -- --ci"],
                    "state": "PENDING",
                    "result": None,
                    "started_us": None,
                    "completed_us": None,
                }
            )
        return steps

    def _run_steps(self, pl: _Pipeline, rng: random.Random, start: int, outcome: str) -> int:
        """Complete the steps of a pipeline from ``start``; returns completion time."""
        t = start
        failed_at = rng.randrange(len(pl.steps)) if outcome != "SUCCESSFUL" else None
        for k, s in enumerate(pl.steps):
            if failed_at is not None and k > failed_at:
                s["state"], s["result"] = "COMPLETED", "NOT_RUN"
                s["started_us"] = s["completed_us"] = None
                continue
            if s["started_us"] is None:
                s["started_us"] = t + rng.randint(2, 30) * SECOND
            t = max(t, s["started_us"]) + rng.randint(20, 400) * SECOND + rng.randrange(SECOND)
            s["completed_us"] = t
            s["state"] = "COMPLETED"
            s["result"] = outcome if failed_at == k else "SUCCESSFUL"
        return t + rng.randint(1, 10) * SECOND

    def _build_pipelines(self, r: _Repo) -> None:
        p = r.path
        if r.info.empty or r.kind == "quiet":
            self._cols[f"{p}/pipelines"] = []
            self._cols[f"{p}/deployments"] = []
            self._cols[f"{p}/environments"] = []
            return
        rng = random.Random(f"bb-emu:{self.seed}:pipelines:{r.full}")
        n = 22 if r.kind == "big" else rng.randint(5, 20)
        own = [c for c in r.commits if c.tick is not None]
        chosen = sorted(rng.sample(own, k=min(n, len(own))), key=lambda c: c.us)
        creds_left = 1
        for c in chosen:
            pl = _Pipeline()
            pl.uuid = _uuid(rng)
            pl.build = len(r.pipelines) + 1
            pl.commit_idx = c.idx
            pl.ref_name = c.branch
            pl.created_us = c.us + rng.randint(1, 8) * MINUTE + rng.randrange(SECOND)
            pl.nanos = rng.randrange(1000) if (pl.build == 1 or rng.random() < 0.3) else None
            pl.trigger = "PUSH" if rng.random() < 0.85 else "MANUAL"
            pl.creator = c.author or rng.choice(r.contributors)
            pl.steps = self._new_steps(
                r, rng, rng.randint(1, 4), force_creds=creds_left > 0 and rng.random() < 0.3
            )
            if any("password" in s["image"] for s in pl.steps):
                creds_left = 0
            outcome = rng.choices(["SUCCESSFUL", "FAILED", "ERROR", "STOPPED"], [65, 20, 7, 8])[0]
            pl.state, pl.result = "COMPLETED", outcome
            pl.completed_us = self._run_steps(pl, rng, pl.created_us, outcome)
            r.pipelines.append(pl)
        if creds_left and r.pipelines:
            # Registry credentials on at least one step per repository.
            r.pipelines[0].steps[0]["image"] = self._new_steps(r, rng, 1, force_creds=True)[0][
                "image"
            ]
        self._add_release_pipelines(r)
        # Recent ones: one running, maybe one pending (mutate() completes running ones).
        head = r.heads[r.mainbranch]
        for k, state in enumerate(
            ["IN_PROGRESS", "PENDING"] if rng.random() < 0.5 else ["IN_PROGRESS"]
        ):
            pl = _Pipeline()
            pl.uuid = _uuid(rng)
            pl.build = len(r.pipelines) + 1
            pl.commit_idx = head
            pl.ref_name = r.mainbranch
            pl.created_us = _DATA_END_US - (90 - 30 * k) * MINUTE + rng.randrange(MINUTE)
            pl.nanos = rng.randrange(1000) if k == 0 else None
            pl.trigger = "MANUAL" if k else "PUSH"
            pl.creator = rng.choice(r.contributors)
            pl.steps = self._new_steps(r, rng, rng.randint(2, 3))
            pl.state, pl.result, pl.completed_us = state, None, None
            if state == "IN_PROGRESS":
                s0 = pl.steps[0]
                s0["started_us"] = pl.created_us + 20 * SECOND
                if len(pl.steps) > 2:
                    s0["completed_us"] = s0["started_us"] + 95 * SECOND
                    s0["state"], s0["result"] = "COMPLETED", "SUCCESSFUL"
                    pl.steps[1]["started_us"] = s0["completed_us"] + 3 * SECOND
                    pl.steps[1]["state"] = "IN_PROGRESS"
                    for s in pl.steps[2:]:
                        s["state"] = "READY"
                else:
                    s0["state"] = "IN_PROGRESS"
            r.pipelines.append(pl)
        for pl in r.pipelines:
            self._register_pipeline(r, pl)
        self._cols[f"{p}/pipelines"] = [
            self._objs[f"{p}/pipelines/{pl.uuid}"] for pl in r.pipelines
        ]
        self._build_deployments(r, rng)

    def _register_pipeline(self, r: _Repo, pl: _Pipeline) -> None:
        obj, steps = self._pipeline_dicts(r, pl)
        base = f"{r.path}/pipelines/{pl.uuid}"
        self._objs[base] = obj
        self._cols[f"{base}/steps"] = steps
        for s in steps:
            self._objs[f"{base}/steps/{s['uuid']}"] = s
