-- DORA metrics per repository and calendar month (UTC): deployment frequency, change
-- failure rate, time to restore and lead time, next to the pull-request medians.
-- Deployments count in the month they completed, merged pull requests in the month they
-- merged, lead times in the month the pull request reached production.
with production as (
  select
    repository_full_name,
    {{ month_of('completed_at') }} as month,
    {{ day_of('completed_at') }} as day,
    status,
    case when restored_at is not null
      then {{ seconds_between('completed_at', 'restored_at') }} end as restore_seconds
  from {{ ref('bitbucket__deployments') }}
  where is_production and completed_at is not null
),

deployment_months as (
  select
    repository_full_name,
    month,
    count(case when status = 'SUCCESSFUL' then 1 end) as production_deployments,
    count(distinct case when status = 'SUCCESSFUL' then day end) as deployment_days,
    count(case when status = 'FAILED' then 1 end) as failed_deployments,
    {{ median("case when status = 'FAILED' then restore_seconds end") }}
      as median_time_to_restore_seconds
  from production
  group by repository_full_name, month
),

merge_months as (
  select
    repository_full_name,
    {{ month_of('merged_at') }} as month,
    count(*) as merged_pull_requests,
    {{ median('cycle_seconds') }} as median_cycle_seconds,
    {{ median('pickup_seconds') }} as median_pickup_seconds,
    {{ median('review_seconds') }} as median_review_seconds
  from {{ ref('bitbucket__pull_requests') }}
  where merged_at is not null
  group by repository_full_name, {{ month_of('merged_at') }}
),

lead_months as (
  select
    repository_full_name,
    {{ month_of('deployed_at') }} as month,
    {{ median('lead_time_seconds') }} as median_lead_time_seconds
  from {{ ref('bitbucket__pull_requests') }}
  where deployed_at is not null
  group by repository_full_name, {{ month_of('deployed_at') }}
),

months as (
  select repository_full_name, month from deployment_months
  union
  select repository_full_name, month from merge_months
)

select
  m.repository_full_name,
  m.month,
  cast(coalesce(d.production_deployments, 0) as bigint) as production_deployments,
  cast(coalesce(d.deployment_days, 0) as bigint) as deployment_days,
  cast(coalesce(d.failed_deployments, 0) as bigint) as failed_deployments,
  case when coalesce(d.production_deployments, 0) + coalesce(d.failed_deployments, 0) > 0
    then {{ to_double('d.failed_deployments') }}
      / (d.failed_deployments + d.production_deployments)
  end as change_failure_rate,
  {{ to_double('d.median_time_to_restore_seconds') }} as median_time_to_restore_seconds,
  cast(coalesce(g.merged_pull_requests, 0) as bigint) as merged_pull_requests,
  {{ to_double('g.median_cycle_seconds') }} as median_cycle_seconds,
  {{ to_double('g.median_pickup_seconds') }} as median_pickup_seconds,
  {{ to_double('g.median_review_seconds') }} as median_review_seconds,
  {{ to_double('l.median_lead_time_seconds') }} as median_lead_time_seconds
from months as m
left join deployment_months as d
  on d.repository_full_name = m.repository_full_name and d.month = m.month
left join merge_months as g
  on g.repository_full_name = m.repository_full_name and g.month = m.month
left join lead_months as l
  on l.repository_full_name = m.repository_full_name and l.month = m.month
