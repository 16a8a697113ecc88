-- Per pull request: its first commit, first review, first approval and merge time.
--
-- A review is a published comment (any kind: inline, reply, later deleted; not a pending
-- draft) or an approval or changes-request, by someone other than the PR's author. A
-- deleted account (author or reviewer) counts as someone else: its uuid is unknown.
with pull_requests as (
  select repo_uuid, pull_request_id, author_uuid, state
  from {{ ref('stg_bitbucket__pull_requests') }}
),

first_commits as (
  select repo_uuid, pull_request_id, min(committed_at) as first_commit_at
  from {{ ref('stg_bitbucket__pull_request_commits') }}
  group by repo_uuid, pull_request_id
),

comment_reviews as (
  select c.repo_uuid, c.pull_request_id, c.created_at as reviewed_at, false as is_approval
  from {{ ref('stg_bitbucket__pull_request_comments') }} as c
  inner join pull_requests as p
    on p.repo_uuid = c.repo_uuid and p.pull_request_id = c.pull_request_id
  where not c.is_pending
    and (c.user_uuid is null or p.author_uuid is null or c.user_uuid <> p.author_uuid)
),

vote_reviews as (
  select
    a.repo_uuid,
    a.pull_request_id,
    a.vote_at as reviewed_at,
    a.activity_kind = 'approval' as is_approval
  from {{ ref('stg_bitbucket__pull_request_activity') }} as a
  inner join pull_requests as p
    on p.repo_uuid = a.repo_uuid and p.pull_request_id = a.pull_request_id
  where a.activity_kind in ('approval', 'changes_requested')
    and (a.vote_user_uuid is null or p.author_uuid is null or a.vote_user_uuid <> p.author_uuid)
),

reviews as (
  select
    repo_uuid,
    pull_request_id,
    min(reviewed_at) as first_review_at,
    min(case when is_approval then reviewed_at end) as first_approval_at
  from (
    select * from comment_reviews
    union all
    select * from vote_reviews
  ) as all_reviews
  group by repo_uuid, pull_request_id
),

merges as (
  select repo_uuid, pull_request_id, min(update_at) as merged_at
  from {{ ref('stg_bitbucket__pull_request_activity') }}
  where update_state = 'MERGED'
  group by repo_uuid, pull_request_id
)

select
  p.repo_uuid,
  p.pull_request_id,
  c.first_commit_at,
  r.first_review_at,
  r.first_approval_at,
  case when p.state = 'MERGED' then m.merged_at end as merged_at
from pull_requests as p
left join first_commits as c
  on c.repo_uuid = p.repo_uuid and c.pull_request_id = p.pull_request_id
left join reviews as r
  on r.repo_uuid = p.repo_uuid and r.pull_request_id = p.pull_request_id
left join merges as m
  on m.repo_uuid = p.repo_uuid and m.pull_request_id = p.pull_request_id
