-- Per merged pull request: the deployment that shipped it. That is the successful
-- production deployment, started at or after the merge, of the merge commit or a
-- descendant, that completed first (ties: earliest start, then uuid).
with deployments as (
  select d.*, e.environment_type
  from {{ ref('stg_bitbucket__deployments') }} as d
  left join {{ ref('stg_bitbucket__environments') }} as e
    on e.environment_uuid = d.environment_uuid
  where d.status = 'SUCCESSFUL' and e.environment_type = 'Production'
    and d.completed_at is not null
),

candidates as (
  select
    x.repo_uuid,
    x.pull_request_id,
    d.deployment_uuid,
    d.completed_at,
    row_number() over (
      partition by x.repo_uuid, x.pull_request_id
      order by d.completed_at, d.started_at, d.deployment_uuid
    ) as rank_in_pull_request
  from {{ ref('int_bitbucket__merge_descendants') }} as x
  inner join {{ ref('int_bitbucket__pull_request_events') }} as e
    on e.repo_uuid = x.repo_uuid and e.pull_request_id = x.pull_request_id
  inner join deployments as d
    on d.repo_uuid = x.repo_uuid
    and substr(d.commit_hash, 1, 12) = substr(x.commit_hash, 1, 12)
    and substr(x.commit_hash, 1, length(d.commit_hash)) = d.commit_hash
    and d.started_at >= e.merged_at
)

select repo_uuid, pull_request_id, deployment_uuid, completed_at as deployed_at
from candidates
where rank_in_pull_request = 1
