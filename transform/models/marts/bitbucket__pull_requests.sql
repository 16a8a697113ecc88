-- One row per pull request, every state, with the times its cycle is cut into:
-- coding (first commit -> opened), pickup (opened -> first review), review (first review
-- -> merged), deploy (merged -> in production). Durations are seconds, null when either
-- end is null, kept as they are when negative.
select
  p.repository_full_name,
  p.pull_request_id,
  p.author_uuid,
  p.state,
  p.created_at,
  e.first_commit_at,
  e.first_review_at,
  e.first_approval_at,
  e.merged_at,
  d.deployed_at,
  {{ seconds_between('e.first_commit_at', 'p.created_at') }} as coding_seconds,
  {{ seconds_between('p.created_at', 'e.first_review_at') }} as pickup_seconds,
  {{ seconds_between('e.first_review_at', 'e.merged_at') }} as review_seconds,
  {{ seconds_between('e.merged_at', 'd.deployed_at') }} as deploy_seconds,
  {{ seconds_between('p.created_at', 'e.merged_at') }} as cycle_seconds,
  {{ seconds_between('e.first_commit_at', 'd.deployed_at') }} as lead_time_seconds
from {{ ref('stg_bitbucket__pull_requests') }} as p
inner join {{ ref('int_bitbucket__pull_request_events') }} as e
  on e.repo_uuid = p.repo_uuid and e.pull_request_id = p.pull_request_id
left join {{ ref('int_bitbucket__pull_request_deployments') }} as d
  on d.repo_uuid = p.repo_uuid and d.pull_request_id = p.pull_request_id
