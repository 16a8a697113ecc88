"""The analytics marts of transform/ (issue 15), computed in Python from the emulator's own
data, independently of the SQL: what each mart must hold, row by row and cell by cell.

Everything starts from the objects the emulator serves (`expected_rows` walks them down the
stream registry, activity is read per pull request) and follows the definitions of the
README's "Analytics" section word for word; nothing here reads the warehouse.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from tests.harness.checks import SOURCE
from tests.harness.truth import expected_rows
from tests.meltano_helpers import as_utc

STREAMS = (
    "pull_requests",
    "pull_request_commits",
    "pull_request_comments",
    "commits",
    "deployments",
    "environments",
    "pipelines",
)
Key = tuple[Any, ...]
Row = dict[str, Any]


def _ts(value: Any) -> datetime | None:
    return as_utc(value) if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start is not None and end is not None else None


def _month(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(statistics.median(kept)) if kept else None


def _others(user_uuid: str | None, author_uuid: str | None) -> bool:
    """Someone other than the author; a deleted account (no uuid) counts as someone else."""
    return user_uuid is None or author_uuid is None or user_uuid != author_uuid


@dataclass
class Marts:
    pull_requests: dict[Key, Row]  # (repository_full_name, pull_request_id)
    deployments: dict[Key, Row]  # (deployment_uuid,)
    dora_monthly: dict[Key, Row]  # (repository_full_name, month ISO date)
    pipeline_health: dict[Key, Row]  # (repository_full_name, month ISO date)
    # Facts the edge-case checks need (what the marts hide).
    commits_per_pr: dict[Key, int]
    author_only_comments: set[Key]
    deleted_account_comments: dict[Key, datetime]  # PR -> its first such comment


def _full_name(keys: dict[str, Any]) -> str:
    return f"{keys['workspace_slug']}/{keys['repo_slug']}"


def _descendants(children: dict[str, set[str]], seeds: set[str]) -> set[str]:
    seen, todo = set(seeds), list(seeds)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def compute(dataset: Any) -> Marts:
    served = expected_rows(dataset, streams=STREAMS)
    envs = {r[SOURCE]["uuid"]: r[SOURCE] for r in served["environments"]}

    # ---- deployments (before pull requests: deployed_at picks one of them)
    deployments: dict[Key, Row] = {}
    for r in served["deployments"]:
        obj = r[SOURCE]
        env = envs.get(obj["environment"]["uuid"]) or {}
        env_type = (env.get("environment_type") or {}).get("name")
        state = obj.get("state") or {}
        status = (state.get("status") or {}).get("name")
        deployments[(obj["uuid"],)] = {
            "repository_full_name": _full_name(r),
            "deployment_uuid": obj["uuid"],
            "environment_name": env.get("name"),
            "environment_type": env_type,
            "is_production": env_type == "Production",
            "status": status,
            "started_at": _ts(state.get("start_date")),
            "completed_at": _ts(state.get("completion_date")),
            "commit_hash": ((obj.get("release") or {}).get("commit") or {}).get("hash"),
            "is_failure": status == "FAILED",
            "restored_at": None,
            "pull_requests_deployed": 0,
            "_environment_uuid": obj["environment"]["uuid"],
            "_repo_uuid": r["repo_uuid"],
        }
    for d in deployments.values():
        if d["status"] == "FAILED":
            later = [
                o["completed_at"]
                for o in deployments.values()
                if o["_environment_uuid"] == d["_environment_uuid"]
                and o["status"] == "SUCCESSFUL"
                and o["completed_at"] is not None
                and o["started_at"] is not None
                and d["started_at"] is not None
                and o["started_at"] > d["started_at"]
            ]
            d["restored_at"] = min(later, default=None)

    # ---- the commit graph, per repository
    children: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    hashes: dict[str, list[str]] = defaultdict(list)
    for r in served["commits"]:
        obj = r[SOURCE]
        hashes[r["repo_uuid"]].append(obj["hash"])
        for parent in obj.get("parents") or []:
            children[r["repo_uuid"]][parent["hash"]].add(obj["hash"])

    # ---- pull requests
    first_commit: dict[Key, datetime] = {}
    commits_per_pr: dict[Key, int] = defaultdict(int)
    for r in served["pull_request_commits"]:
        key = (r["repo_uuid"], r["pull_request_id"])
        at = as_utc(r[SOURCE]["date"])
        first_commit[key] = min(at, first_commit.get(key, at))
        commits_per_pr[(_full_name(r), r["pull_request_id"])] += 1
    comments: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in served["pull_request_comments"]:
        comments[(r["repo_uuid"], r["pull_request_id"])].append(r[SOURCE])

    pull_requests: dict[Key, Row] = {}
    author_only: set[Key] = set()
    deleted_account: dict[Key, datetime] = {}
    for r in served["pull_requests"]:
        pr = r[SOURCE]
        key = (r["repo_uuid"], pr["id"])
        out_key = (_full_name(r), pr["id"])
        author = (pr.get("author") or {}).get("uuid")
        created = as_utc(pr["created_on"])
        reviews: list[datetime] = []
        approvals: list[datetime] = []
        published = [c for c in comments[key] if not c.get("pending")]
        for c in published:
            commenter = (c.get("user") or {}).get("uuid")
            if _others(commenter, author):
                reviews.append(as_utc(c["created_on"]))
            if c.get("user") is None or c["user"].get("account_id", "") is None:
                at = as_utc(c["created_on"])
                deleted_account[out_key] = min(at, deleted_account.get(out_key, at))
        if (
            author is not None
            and published
            and all((c.get("user") or {}).get("uuid") == author for c in published)
        ):
            author_only.add(out_key)
        base = f"/repositories/{_full_name(r)}/pullrequests/{pr['id']}"
        merges: list[datetime] = []
        for entry in dataset.collection(f"{base}/activity") or []:
            for kind in ("approval", "changes_requested"):
                vote = entry.get(kind)
                if vote and _others((vote.get("user") or {}).get("uuid"), author):
                    reviews.append(as_utc(vote["date"]))
                    if kind == "approval":
                        approvals.append(as_utc(vote["date"]))
            update = entry.get("update")
            if update and update.get("state") == "MERGED":
                merges.append(as_utc(update["date"]))
        merged = min(merges) if merges and pr["state"] == "MERGED" else None

        shipped: dict[str, Any] | None = None
        short = ((pr.get("merge_commit") or {}).get("hash")) or ""
        if merged is not None and short:
            seeds = {h for h in hashes[r["repo_uuid"]] if h.startswith(short)}
            reach = _descendants(children[r["repo_uuid"]], seeds)
            candidates = [
                d
                for d in deployments.values()
                if d["_repo_uuid"] == r["repo_uuid"]
                and d["status"] == "SUCCESSFUL"
                and d["is_production"]
                and d["completed_at"] is not None
                and d["started_at"] is not None
                and d["started_at"] >= merged
                and d["commit_hash"]
                and any(h.startswith(d["commit_hash"]) for h in reach)
            ]
            if candidates:
                shipped = min(
                    candidates,
                    key=lambda d: (d["completed_at"], d["started_at"], d["deployment_uuid"]),
                )
                shipped["pull_requests_deployed"] += 1
        deployed = shipped["completed_at"] if shipped else None
        first_review = min(reviews, default=None)
        commit_at = first_commit.get(key)
        pull_requests[out_key] = {
            "repository_full_name": out_key[0],
            "pull_request_id": pr["id"],
            "author_uuid": author,
            "state": pr["state"],
            "created_at": created,
            "first_commit_at": commit_at,
            "first_review_at": first_review,
            "first_approval_at": min(approvals, default=None),
            "merged_at": merged,
            "deployed_at": deployed,
            "coding_seconds": _seconds(commit_at, created),
            "pickup_seconds": _seconds(created, first_review),
            "review_seconds": _seconds(first_review, merged),
            "deploy_seconds": _seconds(merged, deployed),
            "cycle_seconds": _seconds(created, merged),
            "lead_time_seconds": _seconds(commit_at, deployed),
        }

    for d in deployments.values():
        del d["_environment_uuid"], d["_repo_uuid"]
    return Marts(
        pull_requests=pull_requests,
        deployments=deployments,
        dora_monthly=_dora_monthly(pull_requests, deployments),
        pipeline_health=_pipeline_health(served["pipelines"]),
        commits_per_pr=dict(commits_per_pr),
        author_only_comments=author_only,
        deleted_account_comments=deleted_account,
    )


def _dora_monthly(pull_requests: dict[Key, Row], deployments: dict[Key, Row]) -> dict[Key, Row]:
    production: dict[Key, list[Row]] = defaultdict(list)
    for d in deployments.values():
        if d["is_production"] and d["completed_at"] is not None:
            production[(d["repository_full_name"], _month(d["completed_at"]))].append(d)
    merged: dict[Key, list[Row]] = defaultdict(list)
    shipped: dict[Key, list[Row]] = defaultdict(list)
    for p in pull_requests.values():
        if p["merged_at"] is not None:
            merged[(p["repository_full_name"], _month(p["merged_at"]))].append(p)
        if p["deployed_at"] is not None:
            shipped[(p["repository_full_name"], _month(p["deployed_at"]))].append(p)
    out: dict[Key, Row] = {}
    for key in set(production) | set(merged):
        deps, prs = production.get(key, []), merged.get(key, [])
        ok = [d for d in deps if d["status"] == "SUCCESSFUL"]
        failed = [d for d in deps if d["status"] == "FAILED"]
        out[(key[0], key[1].isoformat())] = {
            "repository_full_name": key[0],
            "month": key[1],
            "production_deployments": len(ok),
            "deployment_days": len({d["completed_at"].date() for d in ok}),
            "failed_deployments": len(failed),
            "change_failure_rate": len(failed) / (len(failed) + len(ok)) if failed or ok else None,
            "median_time_to_restore_seconds": _median(
                [_seconds(d["completed_at"], d["restored_at"]) for d in failed]
            ),
            "merged_pull_requests": len(prs),
            "median_cycle_seconds": _median([p["cycle_seconds"] for p in prs]),
            "median_pickup_seconds": _median([p["pickup_seconds"] for p in prs]),
            "median_review_seconds": _median([p["review_seconds"] for p in prs]),
            "median_lead_time_seconds": _median(
                [p["lead_time_seconds"] for p in shipped.get(key, [])]
            ),
        }
    return out


def _pipeline_health(pipelines: list[Row]) -> dict[Key, Row]:
    runs: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for r in pipelines:
        obj = r[SOURCE]
        runs[(_full_name(r), _month(as_utc(obj["created_on"])))].append(obj)
    out: dict[Key, Row] = {}
    for (name, month), objs in runs.items():
        completed = [o for o in objs if o["state"]["name"] == "COMPLETED"]
        results = [(o["state"].get("result") or {}).get("name") for o in completed]
        durations = [o.get("duration_in_seconds") for o in completed]
        ok = results.count("SUCCESSFUL")
        out[(name, month.isoformat())] = {
            "repository_full_name": name,
            "month": month,
            "runs": len(objs),
            "completed_runs": len(completed),
            "successful_runs": ok,
            "failed_runs": results.count("FAILED") + results.count("ERROR"),
            "success_rate": ok / len(completed) if completed else None,
            "median_duration_seconds": _median(durations),
            "total_duration_seconds": sum(d for d in durations if d is not None)
            if any(d is not None for d in durations)
            else None,
            "build_seconds_used": sum(o.get("build_seconds_used") or 0 for o in objs)
            if any(o.get("build_seconds_used") is not None for o in objs)
            else None,
        }
    return out
