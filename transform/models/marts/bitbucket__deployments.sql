-- One row per deployment, with its environment, whether it failed, when a failed one was
-- restored (the first successful deployment to the same environment started after it
-- started) and how many pull requests it shipped.
with deployments as (
  select
    d.*,
    e.environment_name,
    e.environment_type,
    coalesce(e.environment_type = 'Production', false) as is_production
  from {{ ref('stg_bitbucket__deployments') }} as d
  left join {{ ref('stg_bitbucket__environments') }} as e
    on e.environment_uuid = d.environment_uuid
),

restores as (
  select failed.deployment_uuid, min(later.completed_at) as restored_at
  from deployments as failed
  inner join deployments as later
    on later.environment_uuid = failed.environment_uuid
    and later.status = 'SUCCESSFUL'
    and later.started_at > failed.started_at
  where failed.status = 'FAILED'
  group by failed.deployment_uuid
),

shipped as (
  select deployment_uuid, count(*) as pull_requests_deployed
  from {{ ref('int_bitbucket__pull_request_deployments') }}
  group by deployment_uuid
)

select
  d.repository_full_name,
  d.deployment_uuid,
  d.environment_name,
  d.environment_type,
  d.is_production,
  d.status,
  d.started_at,
  d.completed_at,
  d.commit_hash,
  coalesce(d.status = 'FAILED', false) as is_failure,
  r.restored_at,
  cast(coalesce(s.pull_requests_deployed, 0) as bigint) as pull_requests_deployed
from deployments as d
left join restores as r on r.deployment_uuid = d.deployment_uuid
left join shipped as s on s.deployment_uuid = d.deployment_uuid
