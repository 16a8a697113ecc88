-- Per merged pull request: its merge commit and every descendant of it in the commit graph
-- (the commit itself included), walking parent -> child edges. `merge_commit.hash` is
-- Bitbucket's 12-character short hash: it is resolved to a full hash of the repository's
-- commits by prefix. A merge commit that the commits stream does not have has no row.
with recursive merge_commits as (
  select p.repo_uuid, p.pull_request_id, c.commit_hash
  from {{ ref('stg_bitbucket__pull_requests') }} as p
  inner join {{ ref('int_bitbucket__pull_request_events') }} as e
    on e.repo_uuid = p.repo_uuid and e.pull_request_id = p.pull_request_id
  inner join {{ ref('stg_bitbucket__commits') }} as c
    on c.repo_uuid = p.repo_uuid
    and substr(c.commit_hash, 1, length(p.merge_commit_short_hash)) = p.merge_commit_short_hash
  where e.merged_at is not null and length(p.merge_commit_short_hash) > 0
),

descendants (repo_uuid, pull_request_id, commit_hash) as (
  select repo_uuid, pull_request_id, commit_hash from merge_commits
  union
  select d.repo_uuid, d.pull_request_id, edge.commit_hash
  from descendants as d
  inner join {{ ref('stg_bitbucket__commit_parents') }} as edge
    on edge.repo_uuid = d.repo_uuid and edge.parent_hash = d.commit_hash
)

select repo_uuid, pull_request_id, commit_hash from descendants
