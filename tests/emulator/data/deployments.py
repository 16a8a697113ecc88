"""Builders: environments and deployments of repositories with Pipelines enabled."""

from __future__ import annotations

import random
from typing import Any

from ._util import (
    MINUTE,
    _enc,
    _link,
    _ts,
    _uuid,
)
from .records import _Repo


class _DeploymentsMixin:
    """Environments and deployments."""

    def _build_deployments(self, r: _Repo, rng: random.Random) -> None:
        p = r.path
        envs = []
        for rank, (name, etype) in enumerate(
            [("Test", "Test"), ("Staging", "Staging"), ("Production", "Production")]
        ):
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
            self._objs[f"{p}/environments/{eu}"] = env
        self._cols[f"{p}/environments"] = envs
        ok = [pl for pl in r.pipelines if pl.state == "COMPLETED" and pl.result == "SUCCESSFUL"]
        deployments = []
        number = 0
        for pl in ok[-rng.randint(1, 4) :]:
            c = r.commits[pl.commit_idx]
            release = {
                "type": "deployment_release",
                "uuid": _uuid(rng),
                "name": f"#{pl.build}",
                "url": f"{r.web}/pipelines/results/{pl.build}",
                "commit": {
                    "type": "commit",
                    "hash": c.hash,
                    "links": {
                        "self": _link(f"{r.api}/commit/{c.hash}"),
                        "html": _link(f"{r.web}/commits/{c.hash}"),
                    },
                },
                "created_on": _ts(pl.created_us),
            }
            t = pl.completed_us or pl.created_us
            for k, env in enumerate(envs):
                number += 1
                du = _uuid(rng)
                step_uuid = pl.steps[-1]["uuid"]
                surl = f"{r.web}/pipelines/results/{pl.build}/steps/{_enc(step_uuid)}"
                x = rng.random()
                if k == 2 and x < 0.35:
                    state: dict[str, Any] = {
                        "type": "deployment_state_undeployed",
                        "name": "UNDEPLOYED",
                        "trigger_url": surl,
                    }
                else:
                    start = t + (k + 1) * rng.randint(2, 30) * MINUTE
                    t = start + rng.randint(1, 9) * MINUTE
                    status = "SUCCESSFUL" if rng.random() < 0.85 else "FAILED"
                    state = {
                        "type": "deployment_state_completed",
                        "name": "COMPLETED",
                        "url": surl,
                        "deployer": pl.creator,
                        "status": {
                            "type": f"deployment_state_completed_status_{status.lower()}",
                            "name": status,
                        },
                        "start_date": _ts(start),
                        "completion_date": _ts(t),
                    }
                dep = {
                    "type": "deployment",
                    "uuid": du,
                    "number": number,
                    "key": _uuid(rng),
                    "version": 1,
                    "state": state,
                    "environment": {"type": "deployment_environment", "uuid": env["uuid"]},
                    "release": release,
                    "step": {"type": "pipeline_step", "uuid": step_uuid},
                }
                deployments.append(dep)
                self._objs[f"{p}/deployments/{du}"] = dep
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
        self._cols[f"{p}/deployments"] = deployments
