-- Pipeline health per repository and calendar month (UTC) of the run's creation: how many
-- runs, how many completed and how, the success rate of completed runs, and how long the
-- completed runs took.
select
  repository_full_name,
  {{ month_of('created_at') }} as month,
  cast(count(*) as bigint) as runs,
  cast(count(case when state_name = 'COMPLETED' then 1 end) as bigint) as completed_runs,
  cast(count(case when result = 'SUCCESSFUL' then 1 end) as bigint) as successful_runs,
  cast(count(case when result in ('FAILED', 'ERROR') then 1 end) as bigint) as failed_runs,
  case when count(case when state_name = 'COMPLETED' then 1 end) > 0
    then {{ to_double("count(case when result = 'SUCCESSFUL' then 1 end)") }}
      / count(case when state_name = 'COMPLETED' then 1 end)
  end as success_rate,
  {{ to_double(median("case when state_name = 'COMPLETED' then duration_seconds end")) }}
    as median_duration_seconds,
  cast(sum(case when state_name = 'COMPLETED' then duration_seconds end) as bigint)
    as total_duration_seconds,
  cast(sum(build_seconds_used) as bigint) as build_seconds_used
from {{ ref('stg_bitbucket__pipelines') }}
group by repository_full_name, {{ month_of('created_at') }}
