{{ config(materialized='table') }}
-- One row per (commit, parent) edge of the commit graph. A table, not a view: DuckDB 1.2.2
-- crashed (intermittently) on a recursive CTE whose recursive step joined a CTE that used
-- unnest(); reading the edges from a table is stable.
select distinct
  repo_uuid,
  commit_hash,
  parent_hash
from (
  select
    repo_uuid,
    commit_hash,
    {{ json_array_field('parents', 'hash') }} as parent_hash
  from (
    select repo_uuid, hash as commit_hash, parents
    from ({{ deduplicated(source('bitbucket', 'commits'), ['repo_uuid', 'hash']) }}) as latest
  ) as commits
) as edges
where parent_hash is not null
