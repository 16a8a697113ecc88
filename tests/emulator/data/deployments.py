"""Builders: release pipelines, environments and deployments of repositories with Pipelines enabled.

The deployments follow a common Bitbucket setup (bitbucket-pipelines.yml with
``deployment: test|staging|production`` steps on the main branch): every successful
pipeline of the main branch deploys its commit to Test, then Staging, automatically; the
Production step is manual (``trigger: manual``), so it runs minutes to days later, or never
(the next release ships the change). A failed deployment blocks promotion. Production is
locked while a deployment runs (one at a time, in order). After a failed production
deployment, someone may redeploy the last good release (a rollback: a new deployment of
an older release), which restores the service. These give the analytics (issue 15)
months of production deployments, failures, restores and a failure never restored.
"""

from __future__ import annotations

import random

from ._util import (
    _DATA_END_US,
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    _enc,
    _link,
    _ts,
    _uuid,
)
from .records import _Pipeline, _Repo

ENVIRONMENTS = (("Test", "Test"), ("Staging", "Staging"), ("Production", "Production"))


class _DeploymentsMixin:
    """Release pipelines, environments and deployments."""

    def _add_release_pipelines(self, r: _Repo) -> None:
        """One pipeline per pull request merged into the main branch, on its merge commit
        (a push to the main branch runs the deployment pipeline). Their own rng: the other
        pipelines stay as they were; build numbers follow creation time."""
        rng = random.Random(f"bb-emu:{self.seed}:release-pipelines:{r.full}")
        merges = sorted(
            (
                pr
                for pr in r.prs.values()
                if pr.state == "MERGED"
                and pr.merge_idx is not None
                and pr.dst_branch == r.mainbranch
                and pr.closed_us is not None
            ),
            key=lambda pr: pr.closed_us or 0,
        )
        for pr in merges:
            c = r.commits[pr.merge_idx or 0]
            pl = _Pipeline()
            pl.uuid = _uuid(rng)
            pl.commit_idx = c.idx
            pl.ref_name = r.mainbranch
            pl.created_us = c.us + rng.randint(1, 5) * MINUTE + rng.randrange(SECOND)
            pl.nanos = rng.randrange(1000) if rng.random() < 0.3 else None
            pl.trigger = "PUSH"
            pl.creator = c.author or pr.closed_by or rng.choice(r.contributors)
            pl.steps = self._new_steps(r, rng, rng.randint(2, 3))
            outcome = rng.choices(["SUCCESSFUL", "FAILED", "ERROR"], [90, 8, 2])[0]
            pl.state, pl.result = "COMPLETED", outcome
            pl.completed_us = self._run_steps(pl, rng, pl.created_us, outcome)
            r.pipelines.append(pl)
        r.pipelines.sort(key=lambda pl: pl.created_us)
        for k, pl in enumerate(r.pipelines):
            pl.build = k + 1

    def _environments(self, r: _Repo, rng: random.Random) -> list[dict]:
        envs = []
        for rank, (name, etype) in enumerate(ENVIRONMENTS):
            eu = _uuid(rng)
            env = {
                "type": "deployment_environment",
                "uuid": eu,
                "name": name,
                "slug": name.lower(),
                "rank": rank,
                "environment_type": {
                    "type": "deployment_environment_type",
                    "name": etype,
                    "rank": rank,
                },
                "category": {"name": etype},
                "lock": {"type": "deployment_environment_lock_open", "name": "OPEN"},
                "restrictions": {
                    "type": "deployment_restrictions_configuration",
                    "admin_only": rank == 2,
                },
                "hidden": False,
                "environment_lock_enabled": True,
                "deployment_gate_enabled": rank == 2,
                "links": {"self": _link(f"{r.api}/environments/{_enc(eu)}")},
            }
            envs.append(env)
            self._objs[f"{r.path}/environments/{eu}"] = env
        self._cols[f"{r.path}/environments"] = envs
        return envs

    def _release(self, r: _Repo, pl: _Pipeline, rng: random.Random) -> dict:
        c = r.commits[pl.commit_idx]
        return {
            "type": "deployment_release",
            "uuid": _uuid(rng),
            "name": f"#{pl.build}",
            "url": f"{r.web}/pipelines/results/{pl.build}",
            "commit": self._parent_ref(r, c.hash),
            "created_on": _ts(pl.created_us),
        }

    @staticmethod
    def _completed(url: str, deployer: dict, status: str, start: int, end: int) -> dict:
        return {
            "type": "deployment_state_completed",
            "name": "COMPLETED",
            "url": url,
            "deployer": deployer,
            "status": {
                "type": f"deployment_state_completed_status_{status.lower()}",
                "name": status,
            },
            "start_date": _ts(start),
            "completion_date": _ts(end),
        }

    def _build_deployments(self, r: _Repo, rng: random.Random) -> None:
        p = r.path
        envs = self._environments(r, rng)
        deployments: list[dict] = []

        def add(state: dict, env: dict, release: dict, step_uuid: str) -> dict:
            du = _uuid(rng)
            dep = {
                "type": "deployment",
                "uuid": du,
                "number": len(deployments) + 1,
                "key": _uuid(rng),
                "version": 1,
                "state": state,
                "environment": {"type": "deployment_environment", "uuid": env["uuid"]},
                "release": release,
                "step": {"type": "pipeline_step", "uuid": step_uuid},
            }
            deployments.append(dep)
            self._objs[f"{p}/deployments/{du}"] = dep
            return dep

        # Production's lock (free from then on) and its last good release, for rollbacks.
        prod_free = 0
        last_good: tuple[dict, str, str] | None = None
        prod_done: list[tuple[dict, int, int]] = []  # (deployment, start, end)
        redeployed = False
        latest = _DATA_END_US - 2 * HOUR
        ok = [
            pl
            for pl in r.pipelines
            if pl.state == "COMPLETED" and pl.result == "SUCCESSFUL" and pl.ref_name == r.mainbranch
        ]
        for pl in ok:
            release = self._release(r, pl, rng)
            step_uuid = pl.steps[-1]["uuid"]
            surl = f"{r.web}/pipelines/results/{pl.build}/steps/{_enc(step_uuid)}"
            t = pl.completed_us or pl.created_us
            blocked = False
            for k, env in enumerate(envs):
                if k < 2:
                    start = t + rng.randint(1, 10) * MINUTE + rng.randrange(SECOND)
                else:
                    wait = rng.choice(
                        [
                            rng.randint(5, 90) * MINUTE,
                            rng.randint(5, 90) * MINUTE,
                            rng.randint(2, 20) * HOUR,
                            rng.randint(1, 4) * DAY,
                        ]
                    )
                    start = max(t + wait, prod_free + 2 * MINUTE) + rng.randrange(SECOND)
                    blocked = blocked or rng.random() < 0.12  # nobody promoted this one
                end = start + rng.randint(1, 9) * MINUTE + rng.randrange(SECOND)
                if blocked or end > latest:
                    add(
                        {
                            "type": "deployment_state_undeployed",
                            "name": "UNDEPLOYED",
                            "trigger_url": surl,
                        },
                        env,
                        release,
                        step_uuid,
                    )
                    blocked = True
                    continue
                good = rng.random() < (0.97 if k < 2 else 0.85)
                status = "SUCCESSFUL" if good else "FAILED"
                dep = add(
                    self._completed(surl, pl.creator, status, start, end), env, release, step_uuid
                )
                t = end
                blocked = not good
                if k < 2:
                    continue
                prod_free = end
                prod_done.append((dep, start, end))
                again = None  # a redeploy of a release (Bitbucket's "Redeploy")
                if good:
                    last_good = (release, step_uuid, surl)
                    # Now and then the same release again on the same UTC day (after a
                    # deployment variable changed); always once in the big repository.
                    if rng.random() < 0.06 or (r.kind == "big" and not redeployed):
                        start = end + rng.randint(20, 180) * MINUTE + rng.randrange(SECOND)
                        if start // DAY == end // DAY and start + 10 * MINUTE < latest:
                            again, redeployed = last_good, True
                elif last_good is not None and rng.random() < 0.6:
                    # Rollback: redeploy the last good release, which restores the service.
                    start = end + rng.randint(5, 60) * MINUTE + rng.randrange(SECOND)
                    again = last_good
                if again is not None:
                    end = start + rng.randint(1, 9) * MINUTE + rng.randrange(SECOND)
                    if end <= latest:
                        back, back_step, back_url = again
                        state = self._completed(back_url, pl.creator, "SUCCESSFUL", start, end)
                        prod_done.append((add(state, env, back, back_step), start, end))
                        prod_free = end
        if deployments and rng.random() < 0.5:
            # The newest deployment still running.
            last = deployments[-1]
            if last["state"]["name"] == "COMPLETED":
                st = last["state"]
                last["state"] = {
                    "type": "deployment_state_in_progress",
                    "name": "IN_PROGRESS",
                    "url": st["url"],
                    "deployer": st["deployer"],
                    "start_date": st["start_date"],
                }
        done = [x for x in prod_done if x[0]["state"]["name"] == "COMPLETED"]
        if r.kind == "big" and done and done[-1][0]["state"]["status"]["name"] == "SUCCESSFUL":
            # The big repository's last production deployment failed and was never restored.
            dep, start, end = done[-1]
            st = dep["state"]
            dep["state"] = self._completed(st["url"], st["deployer"], "FAILED", start, end)
        self._cols[f"{p}/deployments"] = deployments
